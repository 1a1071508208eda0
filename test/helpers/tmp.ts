// Temporary directories for tests, removed safely: never recursing into a mount
// a test left behind (rm -r would delete the mounted filesystem's files).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLeftovers, forceCleanup } from './leftovers.js';

/** A fresh, empty directory under $TMPDIR (or `parent`), named after `label`. */
export async function makeTmpDir(label = 'test', parent = tmpdir()): Promise<string> {
  return mkdtemp(join(parent, `tslayer-${label.replace(/[^A-Za-z0-9._-]/g, '_')}-`));
}

/**
 * Removes `dir`. Anything still mounted or attached under it is detached first, and
 * then reported by throwing: a leftover mount is a bug in the test, not something to hide.
 */
export async function removeTmpDir(dir: string): Promise<void> {
  const left = forceCleanup(dir);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  if (left.mounts.length > 0 || left.loops.length > 0) {
    throw new Error(`left behind under ${dir}: ${describeLeftovers(left)}`);
  }
}

/** Runs `fn` with a fresh directory and removes it afterwards, whatever happens. */
export async function withTmpDir<T>(label: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await makeTmpDir(label);
  let failed = false;
  try {
    return await fn(dir);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    try {
      await removeTmpDir(dir);
    } catch (cleanupErr) {
      if (!failed) throw cleanupErr; // keep fn's own error when both fail
    }
  }
}
