/**
 * gc: removes what no image or snapshot references, as `docker image prune` / `podman
 * image prune` do after `rmi` (which removes the record only; shared layers stay).
 *
 * The rules (also in store/README.md, "gc"):
 *
 *   Roots     every image record: its target; for an index every manifest (and nested
 *             index) of it that is in the store; for each manifest its config and layers;
 *             and the chain ids of each image config (the committed snapshots that hold
 *             its layers, one per driver). And every active or view snapshot (a user's
 *             container, a mount) with its parent chain.
 *   Kept      blobs a root references; committed snapshots in a root's chain.
 *   Removed   every other blob; every other committed snapshot, children first (remove
 *             refuses a parent with children), round after round until none is left;
 *             temporary unpack snapshots whose process is gone (removeStaleUnpacks's
 *             rule); temporary commit snapshots (label tslayer.io/commit: no commit runs
 *             while gc holds its lock, so any left is a dead commit's); interrupted
 *             ingests (content/ingest/); dangling overlay short links (snapshots/overlay/l).
 *   Never     what tslayer did not make. `tslayer serve` keeps containerd's snapshots in
 *             tslayer namespaces named as containerd's (its `default` is ours): a snapshot
 *             in another namespace than `default`, one with a `containerd.io/` label, or
 *             one whose key containerd's metadata layer made (`default/<n>/<key>`, see
 *             src/serve/namespace.ts) is containerd's. gc leaves those (and their parent
 *             chains) alone; containerd collects them itself through the proxy.
 *
 * Safety against operations in progress: pull, import and commit write blobs and
 * snapshots before the record that references them exists, so they hold the store's gc
 * lock shared (src/care/gc-lock.ts) and gc holds it exclusive for its whole run.
 *
 * A document gc cannot read (corrupt, unparseable) stops it before anything is removed:
 * what that document references is unknown. A missing one is skipped (fsck reports it).
 *
 * Snapshots of every driver that has data under ROOT/snapshots/ are collected; a driver
 * that cannot be opened here (devmapper without its pool, btrfs not mounted) is left as it
 * is and reported. Blobs do not depend on snapshots, so they are collected regardless.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno, isFailedPrecondition, isNotFound, TslayerError } from '../errors.js';
import { chainIds as chainIdsOf } from '../image/chainid.js';
import { LABEL_COMMIT } from '../image/commit.js';
import type { Descriptor } from '../image/descriptor.js';
import type { Digest } from '../image/digest.js';
import { readConfig, readManifestOrIndex } from '../image/documents.js';
import { isIndexType, isManifestType } from '../image/mediatype.js';
import { ownerAlive } from '../image/owner.js';
import { LABEL_UNPACK, LABEL_UNPACK_OWNER } from '../image/unpack.js';
import { listImages, type ImageRecord } from '../metadata/index.js';
import { DRIVER_NAMES, openSnapshotter, type DriverName, type Info, type Kind, type Snapshotter } from '../snapshot/index.js';
import { ContainerdMounts } from '../serve/mounts.js';
import type { Store } from '../store.js';
import { withGcExclusive } from './gc-lock.js';

export { withGcShared, withGcExclusive, gcLockPath, GC_LOCK_FILE, type GcLockHost, type GcLockOptions } from './gc-lock.js';

export interface GcOptions {
  /** List what would be removed, remove nothing. */
  dryRun?: boolean;
  /**
   * Drivers whose snapshots are collected. Default: every driver with data under
   * ROOT/snapshots/, and one that fails to open is skipped (reported). A driver named here
   * that fails makes gc fail.
   */
  drivers?: DriverName[];
  /** Driver settings (devmapper's pool), as openSnapshotter takes them. */
  driverOptions?: Record<string, unknown>;
  signal?: AbortSignal;
  /** Called once when gc has waited more than a second for operations in progress. */
  onWait?: () => void;
  /** Told about what does not fail gc (a driver skipped, a missing document, storage left for cleanup). */
  warn?: (message: string) => void;
}

export interface GcBlob {
  digest: Digest;
  size: number;
}

export type GcSnapshotReason = 'unreferenced' | 'stale-unpack' | 'stale-commit';

export interface GcSnapshot {
  driver: string;
  name: string;
  kind: Kind;
  reason: GcSnapshotReason;
}

export interface GcReport {
  root: string;
  dryRun: boolean;
  /** Blobs removed (or, with dryRun, that would be). */
  blobs: GcBlob[];
  snapshots: GcSnapshot[];
  /** Total size of `blobs`. */
  bytes: number;
  /** Interrupted downloads (content ingests) removed; with dryRun, present. */
  ingests: number;
  /** Dangling overlay short links removed (0 with dryRun). */
  links: number;
  /** Drivers whose snapshots were left as they were, and why. */
  skipped: Array<{ driver: string; reason: string }>;
}

/** What the image records reference. */
export interface GcRoots {
  blobs: Set<Digest>;
  /** Names of the committed snapshots holding the images' layers (chain ids). */
  chainIds: Set<string>;
}

/** The namespace tslayer's own commands use; every other one is containerd's. */
const OWN_NAMESPACE = 'default';
/** Keys containerd's metadata layer gives backend snapshots (src/serve/namespace.ts keyNamespace). */
const CONTAINERD_KEY = /^default\/[0-9]+\/./;
/** How deep indexes may nest before gc stops following (a cycle cannot happen with digests, but a bomb can). */
const MAX_INDEX_DEPTH = 8;

export async function gc(store: Store, opts: GcOptions = {}): Promise<GcReport> {
  return withGcExclusive(store, () => collect(store, opts), { signal: opts.signal, onWait: opts.onWait });
}

async function collect(store: Store, opts: GcOptions): Promise<GcReport> {
  const dryRun = opts.dryRun === true;
  const warn = opts.warn ?? (() => undefined);
  const report: GcReport = { root: store.root, dryRun, blobs: [], snapshots: [], bytes: 0, ingests: 0, links: 0, skipped: [] };

  // Everything is read before anything is removed: a damaged document stops gc here.
  const roots = await imageRoots(store, warn);
  const explicit = opts.drivers !== undefined;
  const drivers = opts.drivers ?? (await presentDrivers(store));

  for (const driver of drivers) {
    opts.signal?.throwIfAborted();
    try {
      report.snapshots.push(...(await collectSnapshots(store, driver, roots, opts, warn)));
    } catch (e) {
      if (explicit || !(e instanceof Error) || e.name === 'AbortError') throw e;
      report.skipped.push({ driver, reason: e.message });
      warn(`snapshots of driver ${driver} were left as they are: ${e.message}`);
    }
  }
  if (!dryRun && drivers.includes('overlay')) {
    report.links = await new ContainerdMounts(store.snapshotsDir('overlay')).prune();
  }

  for await (const blob of store.content.walk()) {
    opts.signal?.throwIfAborted();
    if (roots.blobs.has(blob.digest)) continue;
    if (!dryRun) {
      try {
        await store.content.delete(blob.digest);
      } catch (e) {
        if (isNotFound(e)) continue; // removed meanwhile (fsck --repair)
        throw e;
      }
    }
    report.blobs.push(blob);
    report.bytes += blob.size;
  }

  // No writer runs while we hold the lock exclusively, so every ingest is an interrupted one.
  const before = await countIngests(store);
  if (dryRun) report.ingests = before;
  else {
    await store.content.cleanupIngests();
    report.ingests = before - (await countIngests(store));
  }
  return report;
}

// ------------------------------------------------------------------------ image roots

/** Blobs and chain ids the image records reference (see the file comment). */
export async function imageRoots(store: Store, warn: (message: string) => void = () => undefined): Promise<GcRoots> {
  const roots: GcRoots = { blobs: new Set(), chainIds: new Set() };
  const records = await store.metadata.read((tx) => listImages(tx));
  for (const record of records) {
    // The chosen platform manifest first, so that its absence is told (as an index's child it would not be).
    if (record.manifest) await markDocument(store, record, record.manifest, roots, warn, 0);
    await markDocument(store, record, record.target, roots, warn, 0);
  }
  return roots;
}

/** Marks a manifest or index and what it references, reading it when it is in the store. */
async function markDocument(
  store: Store,
  record: ImageRecord,
  desc: Descriptor,
  roots: GcRoots,
  warn: (message: string) => void,
  depth: number,
): Promise<void> {
  if (roots.blobs.has(desc.digest)) return; // already followed (shared by two records)
  roots.blobs.add(desc.digest);
  if (!(await store.content.has(desc.digest))) {
    // The record's own target or chosen manifest missing is damage (fsck reports it); an
    // index's other platforms were never pulled, which is normal.
    if (depth === 0) warn(`image ${record.name}: ${desc.digest} is not in the content store (see tslayer fsck)`);
    return;
  }
  const doc = await readOrRefuse(record, desc, () => readManifestOrIndex(store.content, desc));
  if (doc === undefined) return;
  if (doc.kind === 'index') {
    if (depth >= MAX_INDEX_DEPTH) throw refuse(record, `index ${desc.digest} nests more than ${MAX_INDEX_DEPTH} indexes deep`);
    for (const child of doc.index.manifests) {
      if (isIndexType(child.mediaType) || isManifestType(child.mediaType)) {
        await markDocument(store, record, child, roots, warn, depth + 1);
      } else {
        roots.blobs.add(child.digest); // something else an index may list: kept, not read
      }
    }
    return;
  }
  const { manifest } = doc;
  roots.blobs.add(manifest.config.digest);
  for (const layer of manifest.layers) roots.blobs.add(layer.digest);
  if (!(await store.content.has(manifest.config.digest))) {
    warn(`image ${record.name}: config ${manifest.config.digest} is not in the content store (see tslayer fsck)`);
    return;
  }
  let config;
  try {
    config = await readConfig(store.content, manifest.config);
  } catch (e) {
    // Not an image config (an artifact's, an attestation's): it has no layers to unpack.
    if (e instanceof TslayerError && e.code === 'INVALID_ARGUMENT') return;
    throw refuseWith(record, e);
  }
  for (const chainId of chainIdsOf(config.rootfs.diff_ids)) roots.chainIds.add(chainId);
}

async function readOrRefuse<T>(record: ImageRecord, desc: Descriptor, read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (e) {
    if (isNotFound(e)) return undefined; // removed meanwhile
    throw refuseWith(record, e);
  }
}

function refuseWith(record: ImageRecord, e: unknown): unknown {
  return e instanceof TslayerError ? refuse(record, e.message, e) : e;
}

function refuse(record: ImageRecord, why: string, cause?: unknown): TslayerError {
  return new TslayerError(
    'FAILED_PRECONDITION',
    `gc removed nothing: image ${record.name}: ${why}; what it references is unknown ` +
      '(run `tslayer fsck --repair`, then pull the image again or `tslayer rmi` it)',
    { cause },
  );
}

// ------------------------------------------------------------------------ snapshots

/** Drivers that have a data directory under ROOT/snapshots/. */
async function presentDrivers(store: Store): Promise<DriverName[]> {
  const names: string[] = await readdir(join(store.root, 'snapshots')).catch((e) => (isErrno(e, 'ENOENT') ? [] : Promise.reject(e)));
  return DRIVER_NAMES.filter((d) => names.includes(d));
}

/** containerd's, by the rules in the file comment (only the default namespace is ever walked here). */
export function isContainerdSnapshot(info: Info): boolean {
  return CONTAINERD_KEY.test(info.name) || Object.keys(info.labels).some((k) => k.startsWith('containerd.io/'));
}

async function collectSnapshots(
  store: Store,
  driver: DriverName,
  roots: GcRoots,
  opts: GcOptions,
  warn: (message: string) => void,
): Promise<GcSnapshot[]> {
  const dryRun = opts.dryRun === true;
  const sn = await openSnapshotter(store, driver, {
    namespace: OWN_NAMESPACE,
    driverOptions: opts.driverOptions,
    warn,
    cleanup: !dryRun, // the open's own debris cleanup removes things too
  });
  try {
    const infos: Info[] = [];
    await sn.walk((i) => void infos.push(i));
    const byName = new Map(infos.map((i) => [i.name, i]));

    const stale = new Map<string, GcSnapshotReason>();
    for (const info of infos) {
      const reason = await staleReason(info);
      if (reason) stale.set(info.name, reason);
    }

    const keep = new Set<string>();
    const keepChain = (name: string | undefined) => {
      while (name !== undefined && !keep.has(name)) {
        keep.add(name);
        name = byName.get(name)?.parent;
      }
    };
    for (const info of infos) {
      if (isContainerdSnapshot(info)) keepChain(info.name);
      else if (stale.has(info.name)) continue;
      else if (info.kind !== 'committed' || roots.chainIds.has(info.name)) keepChain(info.name);
    }

    // Temporaries first (active and view snapshots have no children), then committed
    // snapshots deepest first, so that each one's children are gone before it.
    const depths = new Map<string, number>();
    const depth = (i: Info): number => {
      let d = depths.get(i.name);
      if (d === undefined) {
        // Iterative for deep chains: walk up to a known depth, then fill in on the way down.
        const path: Info[] = [];
        let at: Info | undefined = i;
        while (at !== undefined && !depths.has(at.name)) {
          path.push(at);
          at = at.parent === undefined ? undefined : byName.get(at.parent);
        }
        let base = at === undefined ? 0 : depths.get(at.name)! + 1;
        for (const p of path.reverse()) depths.set(p.name, base++);
        d = depths.get(i.name)!;
      }
      return d;
    };
    const doomed = infos
      .filter((i) => !keep.has(i.name))
      .sort((a, b) => Number(stale.has(b.name)) - Number(stale.has(a.name)) || depth(b) - depth(a));
    const entry = (i: Info): GcSnapshot => ({ driver, name: i.name, kind: i.kind, reason: stale.get(i.name) ?? 'unreferenced' });
    if (dryRun) return doomed.map(entry);
    return await removeAll(sn, doomed, entry, opts.signal);
  } finally {
    await sn.close();
  }
}

/** Why a temporary snapshot is debris, or undefined when it is not (or may still be in use). */
async function staleReason(info: Info): Promise<GcSnapshotReason | undefined> {
  if (info.kind === 'committed' || isContainerdSnapshot(info)) return undefined;
  const owner = info.labels[LABEL_UNPACK_OWNER];
  if (info.labels[LABEL_UNPACK] !== undefined && owner !== undefined && !(await ownerAlive(owner))) return 'stale-unpack';
  if (info.labels[LABEL_COMMIT] !== undefined) return 'stale-commit';
  return undefined;
}

/** Removes in order, round after round, until a round removes nothing more. */
async function removeAll(
  sn: Snapshotter,
  doomed: Info[],
  entry: (i: Info) => GcSnapshot,
  signal: AbortSignal | undefined,
): Promise<GcSnapshot[]> {
  const removed: GcSnapshot[] = [];
  let left = doomed;
  while (left.length > 0) {
    const next: Info[] = [];
    for (const info of left) {
      signal?.throwIfAborted();
      try {
        await sn.remove(info.name);
        removed.push(entry(info));
      } catch (e) {
        if (isNotFound(e)) continue; // removed by someone else meanwhile
        if (!isFailedPrecondition(e)) throw e;
        next.push(info); // still has a child: try again after the others
      }
    }
    // A child gc does not know of (made since it listed) keeps its parent: stop there.
    if (next.length === left.length) break;
    left = next;
  }
  return removed;
}

async function countIngests(store: Store): Promise<number> {
  let n = 0;
  for await (const _ of store.content.ingests()) n++;
  return n;
}
