/**
 * The store-wide gc lock: ROOT/gc.lock, taken with flock(2).
 *
 * A pull, import or commit writes blobs and snapshots before the image record that makes
 * them referenced exists; a gc running meanwhile would see them as garbage. So those
 * operations hold the lock SHARED for their whole duration (any number at once), and gc
 * holds it EXCLUSIVE: it starts only when none is in progress, and none starts until it
 * is done. The kernel drops the lock of a process that dies (kill -9 included), so a
 * crash never leaves a stale lock; the lock file itself is never removed (a lock on an
 * unlinked inode would guard nothing).
 *
 * As in src/content/lock.ts we only ask for LOCK_NB and poll: a blocking flock would park
 * one of libuv's four pool threads per waiter. Linux flock has no writer preference, so a
 * gc waits while shared holders overlap without a gap; it gets its turn at the first one.
 */
import { constants, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isErrno } from '../errors.js';
import { flock, LOCK } from '../native/index.js';

export const GC_LOCK_FILE = 'gc.lock';

/** What the lock needs of a store: its root (which must exist, as Store.open makes it). */
export interface GcLockHost {
  readonly root: string;
}

export interface GcLockOptions {
  signal?: AbortSignal;
  /** Called once when the lock was not free within `noticeMs` (for a "waiting for ..." line). */
  onWait?: () => void;
  /** Default 1000 ms. */
  noticeMs?: number;
}

const MAX_POLL_MS = 100;

export function gcLockPath(store: GcLockHost): string {
  return join(store.root, GC_LOCK_FILE);
}

/** Runs `fn` while holding the gc lock shared: gc does not run meanwhile (waits for gc if one runs). */
export function withGcShared<T>(store: GcLockHost, fn: () => Promise<T>, opts: GcLockOptions = {}): Promise<T> {
  return withGcLock(store, LOCK.SH, fn, opts);
}

/** Runs `fn` while holding the gc lock exclusive: no pull, import or commit is in progress meanwhile. */
export function withGcExclusive<T>(store: GcLockHost, fn: () => Promise<T>, opts: GcLockOptions = {}): Promise<T> {
  return withGcLock(store, LOCK.EX, fn, opts);
}

async function withGcLock<T>(store: GcLockHost, mode: number, fn: () => Promise<T>, opts: GcLockOptions): Promise<T> {
  const fh = await acquire(gcLockPath(store), mode, opts);
  try {
    return await fn();
  } finally {
    await fh.close(); // closing the only fd of this open file description drops the flock
  }
}

async function acquire(path: string, mode: number, opts: GcLockOptions): Promise<FileHandle> {
  // libuv opens with O_CLOEXEC: a child process never inherits (and so never keeps) the lock.
  const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    const started = Date.now();
    let told = false;
    let delay = 2;
    for (;;) {
      opts.signal?.throwIfAborted();
      try {
        await flock(fh.fd, mode | LOCK.NB);
        return fh;
      } catch (e) {
        if (!isErrno(e, 'EAGAIN') && !isErrno(e, 'EWOULDBLOCK')) throw e;
      }
      if (!told && Date.now() - started >= (opts.noticeMs ?? 1000)) {
        told = true;
        opts.onWait?.();
      }
      await sleep(delay, undefined, { signal: opts.signal });
      delay = Math.min(delay * 2, MAX_POLL_MS);
    }
  } catch (e) {
    await fh.close();
    throw e;
  }
}
