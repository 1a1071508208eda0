// Where results go: bench/results/ in the source tree (committed), and a scratch dir for
// raw per-run output (IOzone reports, .xls files, logs) that is not committed.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sh } from './sys.js';

/** The source tree's bench/results (this file runs from dist/bench/lib). */
export const RESULTS_DIR = process.env.TSLAYER_BENCH_RESULTS ?? fileURLToPath(new URL('../../../bench/results/', import.meta.url));

/** Raw output of the last run (not committed). */
export const RAW_DIR = process.env.TSLAYER_BENCH_RAW ?? '/var/tmp/tslayer-bench/raw';

/** The repository root (for bin/tslayer.js and the test helpers' paths). */
export const REPO_DIR = fileURLToPath(new URL('../../../', import.meta.url));

export const TSLAYER_BIN = join(REPO_DIR, 'bin', 'tslayer.js');

export async function writeResult(name: string, content: string): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, name);
  await writeFile(path, content);
  return path;
}

export async function rawDir(...parts: string[]): Promise<string> {
  const dir = join(RAW_DIR, ...parts);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function version(cmd: string, args: string[], pick = (s: string) => s.split('\n')[0]!.trim()): Promise<string> {
  try {
    return pick(await sh(cmd, args));
  } catch {
    return 'not installed';
  }
}

/** A short description of this machine and the tools' versions, as markdown lines. */
export async function describeMachine(): Promise<string[]> {
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  const disk = await version('sh', ['-c', "df -hT /tmp | awk 'NR==2 {print $1\" \"$2\", \"$3\" total\"}'"]);
  const rootOpts = await version('sh', ['-c', "findmnt -no OPTIONS /"]);
  const journal = await version('sh', ['-c', "dumpe2fs -h $(findmnt -no SOURCE /) 2>/dev/null | grep -q has_journal && echo journaled || echo 'no journal'"]);
  const la = loadavg().map((x) => x.toFixed(2)).join(', ');
  return [
    `- Date: ${new Date().toISOString().replace('T', ' ').slice(0, 16)} UTC`,
    `- Machine: ${cpus().length} × ${cpuModel}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${release()}`,
    `- Disk: loop files under /tmp on ${disk} (${journal}; mount options ${rootOpts})`,
    `- Load average (1, 5, 15 min) when this was written: ${la}`,
    `- Node ${process.version}; ${await version('iozone', ['-v'], (s) => `IOzone ${/Revision: ([\d.]+)/.exec(s)?.[1] ?? '?'}`)}; ` +
      `${await version('podman', ['--version'])}; ${await version('buildah', ['--version'], (s) => s.split('(')[0]!.trim())}; ` +
      `${await version('skopeo', ['--version'])}; ${await version('umoci', ['--version'])}; ` +
      `${await version('ctr', ['--version'])}; ${await version('gnuplot', ['--version'])}`,
  ];
}
