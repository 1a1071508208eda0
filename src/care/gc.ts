/**
 * gc: removes what no image or snapshot references, as `docker image prune` / `podman
 * image prune` do (`tslayer rmi` frees what only the image it removes used; gc also frees
 * what `rmi --no-prune` left, dead temporaries and interrupted downloads).
 *
 * The rules (also in store/README.md, "rmi and gc"):
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
 *
 * removeImage (`tslayer rmi`) is a targeted collection by the same rules, under the same
 * exclusive lock: it removes one image record and then, of what that image referenced,
 * the blobs and committed snapshots that no other root keeps (as `docker rmi` and `podman
 * rmi` delete the layers no other image uses). Everything else, unreferenced or not, is
 * left to gc. Order: the record first, then snapshot records, then data (see
 * src/care/free.ts), so a crash at any point leaves only what gc and cleanup remove.
 *
 * Removal of snapshots, for gc and rmi: src/care/free.ts (records in one transaction,
 * directory trees freed in parallel).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno, isNotFound, notFound, TslayerError } from '../errors.js';
import { chainIds as chainIdsOf } from '../image/chainid.js';
import type { Descriptor } from '../image/descriptor.js';
import type { Digest } from '../image/digest.js';
import { readConfig, readManifestOrIndex } from '../image/documents.js';
import { isIndexType, isManifestType } from '../image/mediatype.js';
import { ownerAlive } from '../image/owner.js';
import { LABEL_COMMIT, LABEL_UNPACK, LABEL_UNPACK_OWNER } from '../image/labels.js';
import { deleteImage, getImage, listImages, type ImageRecord } from '../metadata/index.js';
import { DRIVER_NAMES, openSnapshotter, type DriverName, type Info, type Kind, type StorageSnapshotter } from '../snapshot/index.js';
import { ContainerdMounts } from '../serve/mounts.js';
import type { Store } from '../store.js';
import { removeSnapshots } from './free.js';
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
  let roots: GcRoots;
  try {
    roots = await imageRoots(store, warn);
  } catch (e) {
    if (!(e instanceof DamagedDocument)) throw e;
    throw new TslayerError(
      'FAILED_PRECONDITION',
      `gc removed nothing: ${e.message} (run \`tslayer fsck --repair\`, then pull the image again or \`tslayer rmi\` it)`,
      { cause: e.cause },
    );
  }
  const explicit = opts.drivers !== undefined;
  const drivers = opts.drivers ?? (await presentDrivers(store));

  const freeing: Array<Promise<void>> = [];
  for (const driver of drivers) {
    opts.signal?.throwIfAborted();
    try {
      const r = await collectSnapshots(store, driver, roots, opts, warn);
      report.snapshots.push(...r.snapshots);
      freeing.push(r.freed);
    } catch (e) {
      if (explicit || !(e instanceof Error) || e.name === 'AbortError') throw e;
      report.skipped.push({ driver, reason: e.message });
      warn(`snapshots of driver ${driver} were left as they are: ${e.message}`);
    }
  }

  // While the snapshot trees are being freed (freeing never rejects).
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
  await Promise.all(freeing);

  // A short link dangles once its snapshot's storage is gone: after the freeing.
  if (!dryRun && drivers.includes('overlay')) {
    report.links = await new ContainerdMounts(store.snapshotsDir('overlay')).prune();
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

// ------------------------------------------------------------------------ rmi

export interface RmiOptions extends Pick<GcOptions, 'drivers' | 'driverOptions' | 'signal' | 'onWait' | 'warn'> {
  /** Remove the record only (`docker rmi --no-prune`): its blobs and snapshots stay until gc. */
  noPrune?: boolean;
  /** The image as the user named it, for messages (default: the full reference). */
  display?: string;
}

export interface RmiReport {
  /** The removed record's full reference. */
  ref: string;
  /** Its target's digest. */
  digest: Digest;
  /** False with noPrune: only the record was removed. */
  pruned: boolean;
  /** Blobs removed: what the image referenced (manifests, config, layers) and no other image does. */
  blobs: GcBlob[];
  /** Committed snapshots removed: the image's layers that no other image, no active or view snapshot and nothing of containerd's keeps. */
  snapshots: GcSnapshot[];
  /** Total size of `blobs`. */
  bytes: number;
  /** Drivers whose snapshots were left as they were, and why. */
  skipped: Array<{ driver: string; reason: string }>;
}

/**
 * `tslayer rmi`: removes image record `name` (a full reference) and then, unless
 * `noPrune`, what it referenced that nothing else keeps, by gc's rules and under gc's
 * exclusive lock (see the file comment). NOT_FOUND when there is no such record.
 */
export async function removeImage(store: Store, name: string, opts: RmiOptions = {}): Promise<RmiReport> {
  const missing = () => notFound(`image ${opts.display ?? name} not found in ${store.root}`);
  if (opts.noPrune) {
    const record = await store.metadata.transaction(async (tx) => {
      const r = await getImage(tx, name);
      if (!r) throw missing();
      deleteImage(tx, name);
      return r;
    });
    return { ref: record.name, digest: record.target.digest, pruned: false, blobs: [], snapshots: [], bytes: 0, skipped: [] };
  }
  // An image that is not there needs no lock, and no wait for a pull in progress.
  if (!(await store.metadata.read((tx) => getImage(tx, name)))) throw missing();
  return withGcExclusive(store, () => prune(store, name, opts, missing), { signal: opts.signal, onWait: opts.onWait });
}

async function prune(store: Store, name: string, opts: RmiOptions, missing: () => Error): Promise<RmiReport> {
  const warn = opts.warn ?? (() => undefined);
  const display = opts.display ?? name;

  // Read everything before removing anything. Under the lock nothing adds a reference
  // meanwhile: pull, import, commit and mount's unpack hold it shared.
  const records = await store.metadata.read((tx) => listImages(tx));
  const record = records.find((r) => r.name === name);
  if (!record) throw missing(); // an `rmi --no-prune` (which takes no lock) was first
  let roots: GcRoots;
  try {
    roots = await rootsOf(store, records.filter((r) => r !== record), warn);
  } catch (e) {
    if (!(e instanceof DamagedDocument)) throw e;
    throw new TslayerError(
      'FAILED_PRECONDITION',
      `rmi removed nothing: ${e.message}, so is what ${display} shares with it ` +
        `(run \`tslayer fsck --repair\`, then pull that image again or \`tslayer rmi\` it; ` +
        `or \`tslayer rmi --no-prune ${display}\` to remove the record only)`,
      { cause: e.cause },
    );
  }
  // What this image references, as far as its documents can be read: its own damage
  // only means that less is freed now (gc frees the rest, the record being gone).
  const mine: GcRoots = { blobs: new Set(), chainIds: new Set() };
  const unread: string[] = [];
  try {
    await markRecord(store, record, mine, (m) => unread.push(m));
  } catch (e) {
    if (!(e instanceof DamagedDocument)) throw e;
    unread.push(e.why);
  }
  if (unread.length > 0) warn(`${unread[0]}; what the image referenced beyond that is left for \`tslayer gc\``);

  const report: RmiReport = { ref: record.name, digest: record.target.digest, pruned: true, blobs: [], snapshots: [], bytes: 0, skipped: [] };

  // The record first: from here on a crash leaves only what gc and cleanup remove.
  await store.metadata.transaction(async (tx) => deleteImage(tx, name));

  const chainIds = new Set([...mine.chainIds].filter((c) => !roots.chainIds.has(c)));
  const explicit = opts.drivers !== undefined;
  const drivers = chainIds.size === 0 ? [] : (opts.drivers ?? (await presentDrivers(store)));
  const freeing: Array<Promise<void>> = [];
  for (const driver of drivers) {
    opts.signal?.throwIfAborted();
    try {
      const r = await pruneSnapshots(store, driver, chainIds, opts, warn);
      report.snapshots.push(...r.snapshots);
      freeing.push(r.freed);
    } catch (e) {
      if (explicit || !(e instanceof Error) || e.name === 'AbortError') throw e;
      report.skipped.push({ driver, reason: e.message });
      warn(`snapshots of driver ${driver} were left as they are: ${e.message}`);
    }
  }

  // While the snapshot trees are being freed (freeing never rejects).
  for (const digest of mine.blobs) {
    if (roots.blobs.has(digest)) continue;
    try {
      const blob = await store.content.stat(digest);
      await store.content.delete(digest);
      report.blobs.push(blob);
      report.bytes += blob.size;
    } catch (e) {
      if (!isNotFound(e)) throw e; // never stored (another platform of an index), or removed meanwhile
    }
  }
  await Promise.all(freeing);
  return report;
}

/** Removes the committed snapshots named in `chainIds` that nothing keeps, from one driver. */
async function pruneSnapshots(
  store: Store,
  driver: DriverName,
  chainIds: Set<string>,
  opts: RmiOptions,
  warn: (message: string) => void,
): Promise<{ snapshots: GcSnapshot[]; freed: Promise<void> }> {
  // No debris cleanup on open: that is gc's business, and rmi should be quick.
  const sn = await openSnapshotter(store, driver, { namespace: OWN_NAMESPACE, driverOptions: opts.driverOptions, warn, cleanup: false });
  try {
    const infos: Info[] = [];
    await sn.walk((i) => void infos.push(i));
    const byName = new Map(infos.map((i) => [i.name, i]));
    // Every temporary stays here, a dead one too (gc removes those): so do their parents.
    const keep = keptNames(infos, byName, new Map(), (name) => !chainIds.has(name));
    const doomed = infos.filter((i) => i.kind === 'committed' && chainIds.has(i.name) && !keep.has(i.name));
    return await removeInOrder(store, sn, driver, orderForRemoval(doomed, byName, new Map()), new Map(), opts.signal, warn);
  } finally {
    await sn.close();
  }
}

// ------------------------------------------------------------------------ image roots

/** Blobs and chain ids the image records reference (see the file comment). */
export async function imageRoots(store: Store, warn: (message: string) => void = () => undefined): Promise<GcRoots> {
  const records = await store.metadata.read((tx) => listImages(tx));
  return rootsOf(store, records, warn);
}

/**
 * Blobs and chain ids that `records` reference. A document that cannot be read (corrupt,
 * unparseable) throws a FAILED_PRECONDITION naming the image; a missing one is told to
 * `warn` and skipped.
 */
export async function rootsOf(store: Store, records: ImageRecord[], warn: (message: string) => void = () => undefined): Promise<GcRoots> {
  const roots: GcRoots = { blobs: new Set(), chainIds: new Set() };
  for (const record of records) await markRecord(store, record, roots, warn);
  return roots;
}

async function markRecord(store: Store, record: ImageRecord, roots: GcRoots, warn: (message: string) => void): Promise<void> {
  // The chosen platform manifest first, so that its absence is told (as an index's child it would not be).
  if (record.manifest) await markDocument(store, record, record.manifest, roots, warn, 0);
  await markDocument(store, record, record.target, roots, warn, 0);
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
  return new DamagedDocument(record, why, cause);
}

/** A document of `record` that cannot be read: what it references is unknown. gc and rmi say what to do. */
class DamagedDocument extends TslayerError {
  readonly why: string;
  constructor(record: ImageRecord, why: string, cause?: unknown) {
    super('FAILED_PRECONDITION', `image ${record.name}: ${why}; what it references is unknown`, { cause });
    this.why = `image ${record.name}: ${why}`;
  }
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

/**
 * The snapshots that stay, each with its parent chain: containerd's; every active or view
 * snapshot that is not in `stale`; and every committed one that `referenced` says an
 * image uses.
 */
function keptNames(
  infos: Info[],
  byName: Map<string, Info>,
  stale: ReadonlyMap<string, unknown>,
  referenced: (name: string) => boolean,
): Set<string> {
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
    else if (info.kind !== 'committed' || referenced(info.name)) keepChain(info.name);
  }
  return keep;
}

/**
 * Temporaries first (active and view snapshots have no children), then committed
 * snapshots deepest first, so that each one's children are gone before it.
 */
function orderForRemoval(doomed: Info[], byName: Map<string, Info>, stale: ReadonlyMap<string, unknown>): Info[] {
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
  return [...doomed].sort((a, b) => Number(stale.has(b.name)) - Number(stale.has(a.name)) || depth(b) - depth(a));
}

async function collectSnapshots(
  store: Store,
  driver: DriverName,
  roots: GcRoots,
  opts: GcOptions,
  warn: (message: string) => void,
): Promise<{ snapshots: GcSnapshot[]; freed: Promise<void> }> {
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
    const keep = keptNames(infos, byName, stale, (name) => roots.chainIds.has(name));
    const doomed = orderForRemoval(infos.filter((i) => !keep.has(i.name)), byName, stale);
    if (dryRun) return { snapshots: doomed.map((i) => gcEntry(driver, i, stale)), freed: Promise.resolve() };
    return await removeInOrder(store, sn, driver, doomed, stale, opts.signal, warn);
  } finally {
    await sn.close();
  }
}

function gcEntry(driver: string, i: Info, stale: ReadonlyMap<string, GcSnapshotReason>): GcSnapshot {
  return { driver, name: i.name, kind: i.kind, reason: stale.get(i.name) ?? 'unreferenced' };
}

/** Removes `doomed` (in removal order) with src/care/free.ts; reports what went. */
async function removeInOrder(
  store: Store,
  sn: StorageSnapshotter,
  driver: string,
  doomed: Info[],
  stale: ReadonlyMap<string, GcSnapshotReason>,
  signal: AbortSignal | undefined,
  warn: (message: string) => void,
): Promise<{ snapshots: GcSnapshot[]; freed: Promise<void> }> {
  const { removed, freed } = await removeSnapshots(store, sn, doomed, { signal, warn });
  return { snapshots: removed.map((i) => gcEntry(driver, i, stale)), freed };
}

/** Why a temporary snapshot is debris, or undefined when it is not (or may still be in use). */
async function staleReason(info: Info): Promise<GcSnapshotReason | undefined> {
  if (info.kind === 'committed' || isContainerdSnapshot(info)) return undefined;
  const owner = info.labels[LABEL_UNPACK_OWNER];
  if (info.labels[LABEL_UNPACK] !== undefined && owner !== undefined && !(await ownerAlive(owner))) return 'stale-unpack';
  if (info.labels[LABEL_COMMIT] !== undefined) return 'stale-commit';
  return undefined;
}

async function countIngests(store: Store): Promise<number> {
  let n = 0;
  for await (const _ of store.content.ingests()) n++;
  return n;
}
