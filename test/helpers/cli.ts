// Running the real, built CLI (node bin/tslayer.js) as a child process and collecting
// what it printed. Tests of any command use this instead of calling main() in-process,
// so exit statuses, stdout/stderr separation and process exit behaviour are real.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Absolute path of bin/tslayer.js (from dist/test/helpers/cli.js). */
export const TSLAYER_BIN = fileURLToPath(new URL('../../../bin/tslayer.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  /** Extra environment (merged over a copy of process.env without TSLAYER_* and colour variables). */
  env?: NodeJS.ProcessEnv;
  /** Kill the child after this many ms (default 60 s) so a hung CLI fails the test, not the suite. */
  timeoutMs?: number;
  input?: string;
}

function baseEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith('TSLAYER_') || k === 'NO_COLOR' || k === 'FORCE_COLOR') delete env[k];
  }
  return env;
}

/** Runs `tslayer ARGS...` and resolves with its exit status and output (never rejects on a non-zero exit). */
export function runCli(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSLAYER_BIN, ...args], {
      env: { ...baseEnv(), ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** The lines of `s` without the trailing empty one. */
export function lines(s: string): string[] {
  return s.split('\n').filter((l, i, a) => !(l === '' && i === a.length - 1));
}
