/**
 * Key schema of the metadata store (format version 1). Values are JSON.
 * Every module builds its keys here so the whole schema can be read in one place
 * (and is documented in store/README.md).
 *
 *   meta/format                                   -> number (FORMAT_VERSION)
 *   images/<full ref name>                        -> ImageRecord
 *   snapshots/<driver>/<ns>/keys/<key>             -> snapshot record (src/snapshot/storage.ts)
 *   snapshots/<driver>/<ns>/ids/<id>               -> key (reverse index)
 *   snapshots/<driver>/seq                         -> last id handed out (ids are never reused)
 */
export const FORMAT_VERSION = 1;

export const keys = {
  format: 'meta/format',
  imagePrefix: 'images/',
  image: (name: string) => `images/${name}`,
  snapshotPrefix: (driver: string, ns: string) => `snapshots/${driver}/${ns}/keys/`,
  snapshot: (driver: string, ns: string, key: string) => `snapshots/${driver}/${ns}/keys/${key}`,
  snapshotIdPrefix: (driver: string, ns: string) => `snapshots/${driver}/${ns}/ids/`,
  snapshotId: (driver: string, ns: string, id: string) => `snapshots/${driver}/${ns}/ids/${id}`,
  snapshotSeq: (driver: string) => `snapshots/${driver}/seq`,
} as const;
