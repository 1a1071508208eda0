/**
 * Key schema of the metadata store (format version 1). Values are JSON.
 * Every module builds its keys here so the whole schema can be read in one place
 * (and is documented in store/README.md).
 *
 *   meta/format                                   -> number (FORMAT_VERSION)
 *   images/<full ref name>                        -> ImageRecord
 *   snapshots/<driver>/<ns>/keys/<key>             -> snapshot record (src/snapshot/storage.ts)
 *   snapshots/<driver>/<ns>/ids/<id>               -> key (reverse index)
 *   snapshots/<driver>/<ns>/children/<pid>/<cid>   -> child key (parent id -> child ids; remove refuses parents)
 *   snapshots/<driver>/seq                         -> last id handed out (ids are never reused)
 * Snapshot ids are unique per driver across namespaces: data lives in ROOT/snapshots/<driver>/<id>.
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
  snapshotChildPrefix: (driver: string, ns: string, parentId: string) =>
    `snapshots/${driver}/${ns}/children/${parentId}/`,
  snapshotChild: (driver: string, ns: string, parentId: string, childId: string) =>
    `snapshots/${driver}/${ns}/children/${parentId}/${childId}`,
  snapshotSeq: (driver: string) => `snapshots/${driver}/seq`,
  /** Everything of one driver, all namespaces (cleanup lists the live ids from it). */
  snapshotDriverPrefix: (driver: string) => `snapshots/${driver}/`,
} as const;
