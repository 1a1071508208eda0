/**
 * Removing many snapshots at once, fast: what gc and rmi free.
 *
 * StorageSnapshotter.remove is one transaction and then the driver's destroy, one snapshot
 * after the other. The overlay and native drivers destroy with fs.rm, which costs an lstat
 * and an unlink per file, each a trip through libuv's pool and back to the one JS thread:
 * the ~40k files of a 370 MB image took ~0.8-1 s with the page cache cold, one layer after
 * the other. Almost all of that is the kernel's unlink work (ext4: CPU, not I/O), so what
 * makes it faster is doing it on every CPU at once.
 *
 * So, for the drivers whose storage is nothing but the directory layout.dir(id) (overlay
 * and native: see their destroy(); PLAIN_DIRECTORY_DRIVERS below), removeSnapshots
 *   1. drops every record in ONE metadata transaction with the snapshotter's own
 *      bookkeeping (Storage.remove, which refuses a parent that still has children),
 *      children first, round after round within the transaction;
 *   2. then frees the directories in parallel: one rm(1) per directory (per few when
 *      there are many), up to one at a time per CPU (`rm -rf --one-file-system`: never
 *      follows a symlink and never descends into something mounted inside). Without an
 *      rm(1) that can, fs.rm. (A tree per process, not parts of one tree: two processes
 *      unlinking in one directory serialise on its lock, and splitting was slower.)
 *      The bench image's removal went from ~0.8-1 s to ~0.45-0.55 s this way on 2 CPUs.
 * The crash story is the snapshotter's own (see src/snapshot/snapshotter.ts): the records
 * go first, so a crash (kill -9 included) at any point after step 1 leaves only
 * directories that no record names, debris that the snapshotter's cleanup() removes on the
 * next open (ids are never reused, so it is never mistaken for a live snapshot); a crash
 * before leaves everything as it was. The rm(1)s of a killed process finish on their own.
 *
 * A native remove-tree in the addon (native/apply_fs.cc RemoveAll, exposed) run on the
 * thread pool would do the same without the processes; the drivers' destroy() should then
 * use it too, and PLAIN_DIRECTORY_DRIVERS could become a property of the Driver.
 *
 * Other drivers (btrfs subvolumes, devmapper thin devices) go through sn.remove, one
 * after the other, as before.
 */
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { isFailedPrecondition, isNotFound } from '../errors.js';
import type { Info, StorageSnapshotter } from '../snapshot/index.js';
import { Storage } from '../snapshot/storage.js';
import type { Store } from '../store.js';

/** Drivers whose destroy(dir) is exactly "remove the directory tree dir" (keep in step with them). */
export const PLAIN_DIRECTORY_DRIVERS: ReadonlySet<string> = new Set(['overlay', 'native']);

export interface RemoveSnapshotsOptions {
  signal?: AbortSignal;
  /** Told about storage that could not be freed (cleanup retries it). */
  warn?: (message: string) => void;
}

export interface RemovedSnapshots {
  /** The snapshots whose records are gone, in the order they went. */
  removed: Info[];
  /**
   * Settles when their storage is freed (or left for cleanup, with a warning); never
   * rejects. Already settled for drivers that free storage one snapshot at a time.
   */
  freed: Promise<void>;
}

/**
 * Removes `doomed` (ordered children first) from `sn`: records, then storage. A snapshot
 * that has a child not in `doomed` (made since it was listed) stays, and so do its
 * ancestors; one removed meanwhile by someone else is skipped. Await `freed` before
 * saying the data is gone.
 */
export async function removeSnapshots(
  store: Store,
  sn: StorageSnapshotter,
  doomed: Info[],
  opts: RemoveSnapshotsOptions = {},
): Promise<RemovedSnapshots> {
  const warn = opts.warn ?? (() => undefined);
  if (doomed.length === 0) return { removed: [], freed: Promise.resolve() };
  if (!PLAIN_DIRECTORY_DRIVERS.has(sn.driver)) return { removed: await removeOneByOne(sn, doomed, opts.signal), freed: Promise.resolve() };

  opts.signal?.throwIfAborted();
  const storage = new Storage(sn.driver, sn.namespace);
  const gone = await store.metadata.transaction(async (tx) => {
    const out: Array<{ info: Info; id: string }> = [];
    let left = doomed;
    while (left.length > 0) {
      const next: Info[] = [];
      for (const info of left) {
        try {
          // Throws before it writes anything, so a refusal leaves the transaction clean.
          out.push({ info, id: (await storage.remove(tx, info.name)).id });
        } catch (e) {
          if (isNotFound(e)) continue; // removed by someone else meanwhile
          if (!isFailedPrecondition(e)) throw e;
          next.push(info); // still has a child: again after the others
        }
      }
      // A child we do not know of (made since the listing) keeps its parent: stop there.
      if (next.length === left.length) break;
      left = next;
    }
    return out;
  });
  const freed = freeTrees(gone.map((g) => sn.layout.dir(g.id)), warn);
  return { removed: gone.map((g) => g.info), freed };
}

/** sn.remove, in order, round after round until a round removes nothing more. */
async function removeOneByOne(sn: StorageSnapshotter, doomed: Info[], signal: AbortSignal | undefined): Promise<Info[]> {
  const removed: Info[] = [];
  let left = doomed;
  while (left.length > 0) {
    const next: Info[] = [];
    for (const info of left) {
      signal?.throwIfAborted();
      try {
        await sn.remove(info.name);
        removed.push(info);
      } catch (e) {
        if (isNotFound(e)) continue;
        if (!isFailedPrecondition(e)) throw e;
        next.push(info);
      }
    }
    if (next.length === left.length) break;
    left = next;
  }
  return removed;
}

// ------------------------------------------------------------------------ freeing trees

let rmUsable = true; // false once rm(1) turned out to be missing or to lack --one-file-system

/** rm(1)s at a time at most: the kernel's unlink work spreads over CPUs, not much further. */
const MAX_WORKERS = 8;

/**
 * Removes each directory tree in `dirs` (none of which any record names any more), in
 * parallel: up to one rm(1) per CPU, each given one tree, or a few when there are many
 * (a 100-layer image is mostly small trees, and a process per tree would cost more than
 * the trees). Never rejects: what cannot be removed is told to `warn` and left for cleanup.
 */
export async function freeTrees(dirs: string[], warn: (message: string) => void = () => undefined): Promise<void> {
  const workers = Math.min(dirs.length, MAX_WORKERS, Math.max(2, availableParallelism()));
  const per = Math.max(1, Math.ceil(dirs.length / (workers * 4)));
  const queue: string[][] = [];
  for (let i = 0; i < dirs.length; i += per) queue.push(dirs.slice(i, i + per));
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let batch = queue.shift(); batch !== undefined; batch = queue.shift()) {
        try {
          await freeBatch(batch);
        } catch (e) {
          warn(`could not free snapshot storage ${batch.join(', ')} (cleanup will retry): ${(e as Error).message}`);
        }
      }
    }),
  );
}

async function freeBatch(dirs: string[]): Promise<void> {
  if (rmUsable) {
    const r = await runRm(dirs);
    if (r === 'ok') return;
    if (r !== 'unusable') throw new Error(r);
    rmUsable = false;
  }
  for (const dir of dirs) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** `rm -rf --one-file-system -- dirs...`: 'ok', 'unusable' (no such rm), or what it said. */
function runRm(dirs: string[]): Promise<'ok' | 'unusable' | string> {
  return new Promise((resolve) => {
    const child = spawn('rm', ['-rf', '--one-file-system', '--', ...dirs], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-2000)));
    child.on('error', () => resolve('unusable')); // not found, not executable
    child.on('close', (code, signal) => {
      if (code === 0) resolve('ok');
      else if (/unrecognized option|invalid option|unknown option/i.test(err)) resolve('unusable'); // not GNU rm
      else resolve(`rm: ${signal ? `killed by ${signal}` : `exit ${code}`}: ${err.trim().split('\n').slice(-3).join('; ')}`);
    });
  });
}
