// Spawning ingest-child.js processes and reading their one-line JSON reports.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

const SCRIPT = new URL('./ingest-child.js', import.meta.url).pathname;

export interface Child<T> {
  proc: ChildProcess;
  /** Resolves when the child prints "ready" (children that wait on a start barrier do). */
  ready: Promise<void>;
  /** The child's JSON report (rejects if it exits without one). */
  report: Promise<T>;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

export function spawnChild<T>(args: string[]): Child<T> {
  const proc = spawn(process.execPath, [SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = once(proc, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  const lines = createInterface({ input: proc.stdout! });
  const died = () => exited.then((c) => Promise.reject(new Error(`child ${args[0]} exited ${c} early: ${stderr}`)));
  const ready = Promise.race([new Promise<void>((resolve) => lines.on('line', (l) => l === 'ready' && resolve())), died()]);
  const report = Promise.race([
    new Promise<T>((resolve) => lines.on('line', (l) => l !== 'ready' && resolve(JSON.parse(l) as T))),
    died(),
  ]);
  ready.catch(() => {}); // observed by the test when it cares
  report.catch(() => {});
  return { proc, ready, report, exited };
}

/** Kills and reaps a child if it is still running (for finally blocks). */
export async function reap(c: Child<unknown>): Promise<void> {
  if (c.proc.exitCode === null && c.proc.signalCode === null) {
    c.proc.kill('SIGKILL');
    await c.exited;
  }
}
