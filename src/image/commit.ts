/**
 * `tslayer commit KEY REF`: the changes of active snapshot KEY become one new layer on top
 * of the image KEY was made from, stored as image REF. KEY stays mounted and usable.
 *
 *   1. The differ of the driver turns the change into a tar (overlay: the upper dir only;
 *      other drivers: a comparison with a view of the parent).
 *   2. One pass over that tar (src/image/layer-writer.ts): sha256 = diff id; compressed
 *      (gzip by default, on both cores) into the content store, which hashes it = digest;
 *      and the same bytes applied to a new snapshot on KEY's parent.
 *   3. That snapshot is committed under the new chain id; the config (rootfs.diff_ids +
 *      a history entry) and an OCI manifest are stored; REF is recorded last.
 *
 * Why a new snapshot filled from the tar, rather than handing KEY's own upper dir over
 * (containerd's overlay commit renames the active's fs/ into the committed layer): KEY
 * stays mounted and in use. Its overlay mount holds that upper dir as its upperdir, so a
 * committed layer made of it would keep changing under the running container, and
 * re-basing a live mount onto the new layer would need a remount every open file and
 * working directory in it would escape. Applying the tar instead costs one more write of
 * the changed bytes, done in the same pass as compression (no second read), and it makes
 * the snapshot exactly what the blob says, whatever the container writes meanwhile. The
 * same path works for every driver.
 *
 * A commit with no changes is not refused: it produces a valid empty layer (a tar of
 * just the end-of-archive blocks), as `docker commit` does, so scripts that commit
 * unconditionally get a new image every time.
 *
 * The base image: the active snapshot's label tslayer.io/image (set by `tslayer mount
 * REF`) names it; without the label, the first image (by name) whose top chain id is
 * KEY's parent is used. A snapshot without a parent commits onto an empty image.
 */
import { randomUUID } from 'node:crypto';
import { arch } from 'node:os';
import { finished } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { differFor } from '../archive/diff/index.js';
import { withGcShared } from '../care/gc-lock.js';
import type { TarStats } from '../archive/diff/index.js';
import { TslayerError, failedPrecondition, isAlreadyExists, isNotFound } from '../errors.js';
import { listImages } from '../metadata/index.js';
import { applyToMounts } from '../snapshot/apply.js';
import type { Info, Mount, Snapshotter } from '../snapshot/types.js';
import type { Store } from '../store.js';
import { chainIds as chainIdsOf } from './chainid.js';
import type { Descriptor, HistoryEntry, ImageConfig, Manifest } from './descriptor.js';
import type { Digest } from './digest.js';
import { putDocument } from './documents.js';
import { loadImage, type LocalImage } from './local.js';
import { MediaType, type Compression } from './mediatype.js';
import { recordImage } from './record.js';
import { formatReference, parseReference, type Reference } from './reference.js';
import { LABEL_COMMIT, LABEL_DIFF_ID, LABEL_IMAGE } from './labels.js';
import { writeLayer } from './layer-writer.js';

export { LABEL_COMMIT, LABEL_IMAGE };

export const COMMITTED_BY = 'tslayer commit';

export interface CommitOptions {
  store: Store;
  snapshotter: Snapshotter;
  /** The active snapshot holding the change. */
  key: string;
  /** Name for the new image. */
  ref: string | Reference;
  /** History comment for the new layer. */
  message?: string;
  /** Layer compression (default gzip). */
  compression?: Compression;
  /** Compression level (gzip 0-9, default 6; zstd 1-19, default 3). */
  level?: number;
  author?: string;
  /** Time recorded as the image's and the history entry's `created` (default: now). */
  created?: Date;
  signal?: AbortSignal;
}

export interface CommitResult {
  /** Full name the image is recorded under. */
  name: string;
  /** Digest of the new image manifest. */
  digest: Digest;
  manifest: Descriptor;
  config: Descriptor;
  /** The new layer blob. */
  layer: Descriptor;
  diffId: Digest;
  /** Name of the committed snapshot holding the new image's layers. */
  chainId: Digest;
  /** The image the layer was put on top of (undefined: none, a first layer). */
  base?: string;
  /** Entries in the layer; 0 when nothing changed (an empty layer). */
  entries: number;
  /** Uncompressed size of the layer tar. */
  tarSize: number;
  seconds: number;
}

/** Commits under the shared gc lock (src/care/gc-lock.ts): the layer and its snapshot exist before the record does. */
export function commitSnapshot(opts: CommitOptions): Promise<CommitResult> {
  return withGcShared(opts.store, () => commitSnapshotLocked(opts), { signal: opts.signal });
}

async function commitSnapshotLocked(opts: CommitOptions): Promise<CommitResult> {
  const started = process.hrtime.bigint();
  const { store, snapshotter: sn, key } = opts;
  const name = formatReference(typeof opts.ref === 'string' ? parseReference(opts.ref) : opts.ref);
  const compression = opts.compression ?? 'gzip';
  const created = (opts.created ?? new Date()).toISOString();

  const info = await sn.stat(key);
  if (info.kind !== 'active') {
    throw failedPrecondition(`cannot commit ${key}: it is a ${info.kind} snapshot; commit takes an active one (made by \`tslayer mount\`)`);
  }
  const base = await baseImage(store, info);

  const differ = differFor(sn.driver);
  const upper = await sn.mounts(key);
  const temp: string[] = [];
  try {
    let lower: Mount[] | undefined;
    if (differ.needsParentView && info.parent !== undefined) {
      const viewKey = `commit-view-${randomUUID()}`;
      lower = await sn.view(viewKey, info.parent, { labels: { [LABEL_COMMIT]: key } });
      temp.push(viewKey);
    }
    const newKey = `commit-${randomUUID()}`;
    const target = await sn.prepare(newKey, info.parent, { labels: { [LABEL_COMMIT]: key } });
    temp.push(newKey);

    const stats: TarStats = { entries: 0, contentBytes: 0 };
    const tar = differ.diff({ upper, ...(lower && { lower }), tmpDir: store.tmpDir, stats });
    const layer = await writeLayer(store.content, tar, {
      compression,
      level: opts.level,
      signal: opts.signal,
      side: (bytes) => applyAndDrain(bytes, target, store.tmpDir),
    });

    const diffIds = [...(base?.config.rootfs.diff_ids ?? []), layer.diffId];
    const chainId = chainIdsOf(diffIds).at(-1)!;
    try {
      await sn.commit(chainId, newKey, { labels: { [LABEL_DIFF_ID]: layer.diffId } });
      temp.splice(temp.indexOf(newKey), 1);
    } catch (e) {
      // The same change committed before (same diff id on the same parent): that snapshot
      // is byte for byte this one; ours is removed below.
      if (!isAlreadyExists(e)) throw e;
    }

    const config = newConfig(base?.config, layer.diffId, created, opts);
    const configDesc = await putDocument(store.content, Buffer.from(JSON.stringify(config)), MediaType.OciConfig);
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: configDesc,
      layers: [...(base?.manifest.layers ?? []).map(ociLayer), layer.descriptor],
    };
    const manifestDesc = await putDocument(store.content, Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest);
    await recordImage(store, name, manifestDesc);
    return {
      name,
      digest: manifestDesc.digest,
      manifest: manifestDesc,
      config: configDesc,
      layer: layer.descriptor,
      diffId: layer.diffId,
      chainId,
      ...(base && { base: base.name }),
      entries: stats.entries,
      tarSize: layer.tarSize,
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
    };
  } finally {
    for (const k of temp.reverse()) await sn.remove(k).catch(() => undefined);
  }
}

/** Applies the tar to the new snapshot, then reads what the applier left (the end-of-archive blocks). */
async function applyAndDrain(tar: Readable, mounts: Mount[], tmpDir: string): Promise<void> {
  await applyToMounts(tar, mounts, { tmpDir, layer: 'commit' });
  if (!tar.readableEnded && !tar.destroyed) {
    tar.resume();
    await finished(tar);
  }
}

/** The image the active snapshot was made from (see the file comment). */
export async function baseImage(store: Store, info: Info): Promise<LocalImage | undefined> {
  const top = (img: LocalImage) => img.chainIds.at(-1);
  const labelled = info.labels[LABEL_IMAGE];
  const records = await store.metadata.read((tx) => listImages(tx));
  if (labelled !== undefined) {
    const record = records.find((r) => r.name === labelled);
    if (record) {
      const img = await loadImage(store, record);
      if (top(img) === info.parent) return img;
    }
  }
  if (info.parent === undefined) return undefined;
  for (const record of records) {
    let img: LocalImage;
    try {
      img = await loadImage(store, record);
    } catch (e) {
      if (isNotFound(e) || (e instanceof TslayerError && e.code === 'INVALID_ARGUMENT')) continue; // a damaged record is not ours
      throw e;
    }
    if (top(img) === info.parent) return img;
  }
  throw new TslayerError(
    'NOT_FOUND',
    `cannot commit ${info.name}: no image in the store has its parent ${info.parent} as its top layer ` +
      '(the image it was mounted from was removed?)',
  );
}

/**
 * The base config with the new layer: diff id appended, a history entry for it (with
 * the message as comment), and `created` set. Everything else (architecture, os, the
 * runtime config) is kept. A base without history gets one entry per existing layer
 * first, so history keeps matching rootfs.diff_ids as the spec asks.
 */
export function newConfig(
  base: ImageConfig | undefined,
  diffId: Digest,
  created: string,
  opts: Pick<CommitOptions, 'message' | 'author'>,
): ImageConfig {
  const history: HistoryEntry[] = [...(base?.history ?? [])];
  const layered = history.filter((h) => !h.empty_layer).length;
  const baseLayers = base?.rootfs.diff_ids.length ?? 0;
  for (let i = layered; i < baseLayers; i++) history.push({ ...(base?.created && { created: base.created }) });
  history.push({
    created,
    created_by: COMMITTED_BY,
    ...(opts.author !== undefined && { author: opts.author }),
    ...(opts.message !== undefined && { comment: opts.message }),
  });
  const config: ImageConfig = {
    ...(base ?? { architecture: goArch(), os: 'linux' }),
    created,
    rootfs: { type: 'layers', diff_ids: [...(base?.rootfs.diff_ids ?? []), diffId] },
    history,
  };
  if (opts.author !== undefined) config.author = opts.author;
  return config;
}

/**
 * Base layers keep their bytes; a Docker media type becomes its OCI twin so the new
 * manifest is all OCI (the same gzip tar, under the name the OCI spec gives it).
 */
function ociLayer(d: Descriptor): Descriptor {
  const mediaType =
    d.mediaType === MediaType.DockerLayerGzip
      ? MediaType.OciLayerGzip
      : d.mediaType === MediaType.DockerLayerForeignGzip
        ? MediaType.OciLayerNondistributableGzip
        : d.mediaType;
  return { mediaType, digest: d.digest, size: d.size, ...(d.urls && { urls: d.urls }) };
}

/** Node's arch names to Go's (what image configs use). */
function goArch(): string {
  const a = arch();
  return ({ x64: 'amd64', ia32: '386', arm: 'arm', arm64: 'arm64', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[a] ?? a;
}
