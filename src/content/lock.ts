// Cross-process exclusive locks on a lock file, for ingests. flock(2) is released by
// the kernel when the holder dies (kill -9 included), so a crash never leaves a lock
// behind. We only ever ask for LOCK_NB and poll: a blocking flock would park one of
// libuv's four pool threads per waiter, and a few waiters could starve the very
// writer they wait for.
import { constants, open, stat, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { isErrno, TslayerError } from '../errors.js';
import { flock, LOCK } from '../native/index.js';

export interface LockOptions {
  /** Wait for another holder (default) or fail at once with UNAVAILABLE. */
  wait?: boolean;
  signal?: AbortSignal;
  /** What to name in errors (an ingest ref). */
  what?: string;
}

const MAX_POLL_MS = 100;

export class FileLock {
  private constructor(
    readonly path: string,
    private fh: FileHandle | null,
  ) {}

  /**
   * Takes the lock on `path`, creating the file (its directory must exist; ENOENT is
   * passed up so the caller can recreate it). The previous holder may unlink the lock
   * file as it leaves (commit and abort remove the whole ingest); a lock on an unlinked
   * inode guards nothing, so after locking we check that the path still names our
   * inode, and start over when it does not.
   */
  static async acquire(path: string, opts: LockOptions = {}): Promise<FileLock> {
    let delay = 2;
    for (;;) {
      opts.signal?.throwIfAborted();
      const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
      try {
        for (;;) {
          try {
            await flock(fh.fd, LOCK.EX | LOCK.NB);
            break;
          } catch (e) {
            if (!isErrno(e, 'EAGAIN') && !isErrno(e, 'EWOULDBLOCK')) throw e;
            if (opts.wait === false) {
              throw new TslayerError('UNAVAILABLE', `ingest ${opts.what ?? path} is locked by another writer`);
            }
            await sleep(delay, undefined, { signal: opts.signal });
            delay = Math.min(delay * 2, MAX_POLL_MS);
          }
        }
        const [mine, named] = await Promise.all([fh.stat(), stat(path).catch(() => null)]);
        if (named && named.ino === mine.ino && named.dev === mine.dev) return new FileLock(path, fh);
      } catch (e) {
        await fh.close();
        throw e;
      }
      await fh.close(); // lost the race with a remover: try again on the new file
    }
  }

  get held(): boolean {
    return this.fh !== null;
  }

  /** Releases the lock (closing the fd drops the flock). Idempotent. */
  async release(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}
