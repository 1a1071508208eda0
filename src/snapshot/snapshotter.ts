/**
 * The one Snapshotter implementation: containerd's semantics over the metadata store
 * (src/snapshot/storage.ts) and a Driver that turns ids into storage.
 *
 * Transactions are short (LevelDB is locked per transaction across processes), so no
 * file work happens inside one except a single rename:
 *
 *   prepare/view  tx 1: key free? parent committed? take an id
 *                 build the storage in new-<pid>-<id> (may copy a whole tree)
 *                 tx 2: check again, rename new-<pid>-<id> -> <id>, record the key
 *                 (a driver whose create is a few mkdirs (quickCreate) does it all in tx 1)
 *   commit        tx: active key -> committed name (same id, no data moves)
 *   remove        tx: drop the record (refused while children exist); then free <id>
 *
 * A crash leaves only debris that is never mistaken for a snapshot: a build dir of a dead
 * process or an <id> no record names (ids are never reused). cleanup() removes both.
 */
import { mkdir, readdir, rename } from 'node:fs/promises';
import type { MetadataStore, Tx } from '../metadata/index.js';
import { failedPrecondition, isErrno } from '../errors.js';
import { Layout, type Driver } from './driver.js';
import { parseFilters } from './filter.js';
import { Storage, checkKey, checkLabels, checkNamespace, toInfo, type SnapshotRef } from './storage.js';
import type { Cleaner, Info, Kind, Mount, Snapshotter, SnapshotOpts, Usage, WalkFn } from './types.js';

export interface SnapshotterOptions {
  /** Keys are scoped to a namespace. Default 'default'. */
  namespace?: string;
  /** Told about problems that do not fail the call (storage left for cleanup). */
  warn?: (message: string) => void;
}

export class StorageSnapshotter implements Snapshotter, Cleaner {
  readonly driver: string;
  readonly namespace: string;
  readonly layout: Layout;
  private readonly storage: Storage;
  private readonly warn: (message: string) => void;
  private closed = false;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly impl: Driver,
    root: string,
    opts: SnapshotterOptions = {},
  ) {
    this.driver = impl.name;
    this.namespace = checkNamespace(opts.namespace ?? 'default');
    this.layout = new Layout(root);
    this.storage = new Storage(impl.name, this.namespace);
    this.warn = opts.warn ?? (() => undefined);
  }

  /** Creates the driver root. Called by openSnapshotter. */
  async init(): Promise<void> {
    await mkdir(this.layout.root, { recursive: true, mode: 0o700 });
  }

  private tx<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(failedPrecondition(`snapshotter ${this.driver} is closed`));
    return this.metadata.transaction(fn);
  }

  async stat(key: string): Promise<Info> {
    checkKey(key);
    return this.tx(async (tx) => toInfo(key, await this.storage.mustGet(tx, key)));
  }

  async update(info: Pick<Info, 'name'> & Partial<Info>, fieldpaths: string[] = []): Promise<Info> {
    checkKey(info.name);
    return this.tx((tx) => this.storage.update(tx, info, fieldpaths));
  }

  async usage(key: string): Promise<Usage> {
    checkKey(key);
    const { ref, cached } = await this.tx(async (tx) => {
      const r = await this.storage.mustGet(tx, key);
      return { ref: { id: r.id, kind: r.kind, parentIds: await this.storage.parentIdsOf(tx, r) }, cached: r.usage };
    });
    if (cached) return cached;
    const usage = await this.impl.usage(ref); // walks the tree: outside any transaction
    // Committed data never changes: measure once, remember.
    if (ref.kind === 'committed') await this.tx((tx) => this.storage.putUsage(tx, key, ref.id, usage));
    return usage;
  }

  async mounts(key: string): Promise<Mount[]> {
    checkKey(key);
    const ref = await this.tx(async (tx) => {
      const r = await this.storage.mustGet(tx, key);
      if (r.kind === 'committed') {
        throw failedPrecondition(`snapshot ${JSON.stringify(key)} is committed: only active and view snapshots have mounts`);
      }
      return { id: r.id, kind: r.kind, parentIds: await this.storage.parentIdsOf(tx, r) };
    });
    return this.impl.mounts(ref);
  }

  prepare(key: string, parent?: string, opts?: SnapshotOpts): Promise<Mount[]> {
    return this.create('active', key, parent, opts);
  }

  view(key: string, parent?: string, opts?: SnapshotOpts): Promise<Mount[]> {
    return this.create('view', key, parent, opts);
  }

  private async create(kind: Kind, key: string, parent: string | undefined, opts?: SnapshotOpts): Promise<Mount[]> {
    checkKey(key);
    if (parent === '') parent = undefined;
    if (parent !== undefined) checkKey(parent, 'parent');
    const labels = checkLabels(opts?.labels);

    let building: string | undefined;
    const check = async (tx: Tx): Promise<string[]> => {
      await this.storage.checkFree(tx, key);
      return this.storage.checkParent(tx, parent);
    };
    const record = async (tx: Tx, ref: SnapshotRef): Promise<void> => {
      // The one file operation inside a transaction: atomic, and what makes the snapshot real.
      await rename(building!, this.layout.dir(ref.id));
      await this.storage.create(tx, key, ref.id, kind, parent, ref.parentIds, labels);
    };
    try {
      if (this.impl.quickCreate) {
        // A few mkdirs: cheaper than a second transaction.
        return this.impl.mounts(
          await this.tx(async (tx) => {
            const ref: SnapshotRef = { parentIds: await check(tx), id: await this.storage.nextId(tx), kind };
            building = this.layout.buildDir(ref.id);
            await this.impl.create(building, ref);
            await record(tx, ref);
            return ref;
          }),
        );
      }
      const ref: SnapshotRef = await this.tx(async (tx) => ({
        parentIds: await check(tx),
        id: await this.storage.nextId(tx),
        kind,
      }));
      building = this.layout.buildDir(ref.id);
      await this.impl.create(building, ref); // may copy a whole tree: outside any transaction
      await this.tx(async (tx) => {
        if ((await check(tx)).join('/') !== ref.parentIds.join('/')) {
          throw failedPrecondition(`parent snapshot ${JSON.stringify(parent)} was replaced while ${JSON.stringify(key)} was made`);
        }
        await record(tx, ref);
      });
      return this.impl.mounts(ref);
    } catch (e) {
      if (building !== undefined) await this.destroyQuietly(building);
      throw e;
    }
  }

  async commit(name: string, key: string, opts?: SnapshotOpts): Promise<void> {
    checkKey(name, 'snapshot name');
    checkKey(key);
    const labels = checkLabels(opts?.labels);
    // No data moves: the active snapshot's storage becomes the committed one's. Its usage
    // is measured on first request (usage()), not here, to keep commit one transaction.
    const ref = await this.tx((tx) => this.storage.commit(tx, name, key, labels));
    await this.impl.seal?.(ref);
  }

  async remove(key: string): Promise<void> {
    checkKey(key);
    const removed = await this.tx((tx) => this.storage.remove(tx, key));
    // The record is gone, so the id is dead for good; freeing its storage can take a while
    // and happens outside the transaction. If it fails, cleanup() retries later.
    await this.destroyQuietly(this.layout.dir(removed.id));
  }

  async walk(fn: WalkFn, ...filters: string[]): Promise<void> {
    const match = parseFilters(filters);
    // Read everything first, call fn after: fn may call back into the snapshotter (stat).
    const all = await this.tx((tx) => this.storage.list(tx));
    for (const [name, rec] of all) {
      const info = toInfo(name, rec);
      if (match(info)) await fn(info);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.impl.close?.();
  }

  /** Removes storage that no record names and build dirs of processes that are gone. */
  async cleanup(): Promise<void> {
    const { live, entries } = await this.tx(async (tx) => ({
      live: await Storage.liveIds(tx, this.driver),
      entries: await readdir(this.layout.root).catch((e) => (isErrno(e, 'ENOENT') ? [] : Promise.reject(e))),
    }));
    for (const name of entries) {
      const c = Layout.classify(name);
      if (!c) continue;
      const dead = 'id' in c ? !live.has(c.id) : c.pid !== process.pid && !processAlive(c.pid);
      if (dead) await this.destroyQuietly(`${this.layout.root}/${name}`);
    }
    await this.impl.cleanup?.(live);
  }

  private async destroyQuietly(dir: string): Promise<void> {
    try {
      await this.impl.destroy(dir);
    } catch (e) {
      this.warn(`could not free snapshot storage ${dir} (cleanup will retry): ${(e as Error).message}`);
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return isErrno(e, 'EPERM');
  }
}
