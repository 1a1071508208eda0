/**
 * A cross-process lock (flock on a file in the driver root) around the few device
 * operations that must not interleave: suspend-snapshot-resume of an active origin (two
 * snapshots of one origin at once would resume it under the other's create_snap), making
 * a base device, and setting up the loopback pool. Held for device work, never for a
 * metadata transaction (which has its own lock).
 */
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LOCK, flock } from '../../../native/index.js';

export async function withFileLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const fh = await open(path, 'a', 0o600);
  try {
    await flock(fh.fd, LOCK.EX);
    try {
      return await fn();
    } finally {
      await flock(fh.fd, LOCK.UN);
    }
  } finally {
    await fh.close();
  }
}
