// Running commands and preparing the machine for a timed step: a command runner that
// fails with the command's stderr, the page-cache drop, a clock, the load average.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';

export interface ShOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the command after this long (default: none). */
  timeoutMs?: number;
}

/** Runs `cmd args`, resolves with its stdout; rejects with its exit status and stderr. */
export function sh(cmd: string, args: string[], opts: ShOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
      timeout: opts.timeoutMs,
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-8192)));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')}: ${signal ? `killed by ${signal}` : `exit ${code}`}: ${err.trim()}`));
    });
  });
}

/** Whether `cmd` can be run (found on PATH). */
export async function have(cmd: string): Promise<boolean> {
  try {
    await sh('sh', ['-c', `command -v '${cmd}'`]);
    return true;
  } catch {
    return false;
  }
}

/** Writes dirty pages back, then drops the clean page cache, dentries and inodes. */
export async function dropCaches(): Promise<void> {
  await sh('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

/** sync -f: flushes the filesystem holding `path` (a timed step ends when its writes are on disk). */
export async function syncFs(path: string): Promise<void> {
  await sh('sync', ['-f', path]);
}

/** Seconds `fn` takes, by the monotonic clock. */
export async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** The 1-minute load average, as text with two decimals. */
export function load1(): string {
  return loadavg()[0]!.toFixed(2);
}

/** Prints a progress line on stderr (stdout is for the tables). */
export function progress(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)} load ${load1()}] ${msg}\n`);
}
