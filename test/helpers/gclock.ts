// Another process holding a store's gc lock (test/cli/gc-lock-child.ts), for tests of
// what waits for whom; the kernel drops the lock when it is killed.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const LOCK_CHILD = fileURLToPath(new URL('../cli/gc-lock-child.js', import.meta.url));

/** A process holding ROOT/gc.lock until killed; resolves once it holds it. */
export async function holdGcLock(root: string, mode: 'shared' | 'exclusive'): Promise<ChildProcess> {
  const child = spawn(process.execPath, [LOCK_CHILD, mode, root], { stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout!.setEncoding('utf8');
  const [line] = (await Promise.race([once(child.stdout!, 'data'), once(child, 'exit')])) as [string];
  assert.equal(typeof line === 'string' && line.trim(), 'locked', 'the lock holder did not start');
  return child;
}

/** SIGKILL, and wait for the exit; nothing when it has exited already. */
export async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}
