// podman as a peer in tests and benchmarks: its own storage under a temporary directory
// (never the host's), the vfs driver by default, no network for containers, plain HTTP
// to the local test registry.
//
// Needs the Debian packages: podman runc.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTmpDir } from './tmp.js';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface Podman {
  /** Runs `podman --root … --runroot … --storage-driver … ARGS`; resolves with stdout. */
  run(args: string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** `podman pull --tls-verify=false REF` (quiet). */
  pull(ref: string): Promise<void>;
  /** `podman run --rm` of IMAGE with CMD, no network; resolves with its stdout. */
  exec(image: string, cmd: string[]): Promise<string>;
  /** Removes podman's run directory (its storage goes with the caller's `dir`). */
  dispose(): Promise<void>;
}

/**
 * What it takes to run a container on these VMs: crun refuses the hybrid cgroup layout
 * ("cgroups in hybrid mode not supported") so runc runs it; and podman's default rlimits
 * for root (nofile 1048576, nproc 4194304) cannot be set here (EPERM), so small ones are asked.
 */
const RUN_FLAGS = ['--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

/**
 * A podman whose storage lives in `dir` (which the caller removes). Its run directory is
 * a short path of its own under /tmp (podman refuses a runroot longer than 50 characters);
 * dispose() removes it.
 */
export async function makePodman(dir: string, driver: 'vfs' | 'overlay' = 'vfs'): Promise<Podman> {
  const root = join(dir, 'root');
  await mkdir(root, { recursive: true });
  const runroot = await mkdtemp('/tmp/tslayer-pm-');
  const run = async (args: string[], opts: { timeoutMs?: number } = {}): Promise<string> => {
    const all = ['--root', root, '--runroot', runroot, '--storage-driver', driver, ...args];
    try {
      const { stdout } = await execFileP('podman', all, { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20 });
      return stdout;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`podman ${args.join(' ')} failed: ${err.stderr || err.message}`);
    }
  };
  return {
    run,
    pull: async (ref) => void (await run(['pull', '--quiet', '--tls-verify=false', ref])),
    exec: (image, cmd) => run(['run', '--rm', '--network', 'none', ...RUN_FLAGS, image, ...cmd]),
    dispose: () => removeTmpDir(runroot),
  };
}

