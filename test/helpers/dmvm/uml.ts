// The user-mode Linux backend: Debian's linux.uml (6.1, package user-mode-linux) runs as
// an ordinary process with the host's root as its root (hostfs), so the guest sees the
// host's files at the same paths with no copying, and boots in ~1-2 s. Its dm modules
// live under /usr/lib/uml/modules/<version>; ext4, xfs and btrfs are built in.
//
// On hosts with AMX, linux.uml needs the LD_PRELOAD shim in uml-xstate-shim.c (see there):
// it is compiled once with the host's cc (present anyway for node-gyp) and cached.
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { Backend, VmLaunch, VmSpec } from './backend.js';
import { moduleLoadOrder } from './modules.js';
import { exists, onPath } from './util.js';

const run = promisify(execFile);
const UML = 'linux.uml';
const MODULE_ROOT = '/usr/lib/uml/modules';
const SHIM_SRC = new URL('../../../../test/helpers/dmvm/uml-xstate-shim.c', import.meta.url).pathname;
const SHIM_CACHE = process.env.TSLAYER_DMVM_CACHE ?? '/var/cache/tslayer-dmvm';

let version: Promise<string> | undefined;
const umlVersion = () =>
  (version ??= onPath(UML).then(async (bin) => {
    if (!bin) throw new Error(`${UML} not found`);
    return (await run(bin, ['--version'])).stdout.trim();
  }));

let shim: Promise<string> | undefined;
/** Path of the compiled shim, built on first use into a cache keyed by the source's hash. */
function umlShim(): Promise<string> {
  shim ??= (async () => {
    const src = await readFile(SHIM_SRC);
    const hash = createHash('sha256').update(src).digest('hex').slice(0, 16);
    for (const dir of [SHIM_CACHE, tmpdir()]) {
      const so = join(dir, `uml-xstate-shim-${hash}.so`);
      if (await exists(so)) return so;
      try {
        await mkdir(dir, { recursive: true });
        const tmp = `${so}.${process.pid}.tmp`;
        await run('cc', ['-O2', '-shared', '-fPIC', '-o', tmp, SHIM_SRC, '-ldl']);
        await rename(tmp, so); // atomic: concurrent builders agree on one file
        return so;
      } catch (e) {
        if (dir !== SHIM_CACHE) throw new Error(`cannot build ${SHIM_SRC}: ${(e as Error).message}`);
      }
    }
    throw new Error('unreachable');
  })();
  return shim;
}

export const uml: Backend = {
  name: 'uml',
  dataDev: '/dev/ubda',
  metaDev: '/dev/ubdb',

  async unavailable() {
    if (!(await onPath(UML))) return `${UML} not found (package user-mode-linux)`;
    const v = await umlVersion().catch((e: Error) => e);
    if (v instanceof Error) return `${UML} --version failed: ${v.message}`;
    if (!(await exists(join(MODULE_ROOT, v, 'modules.dep')))) return `no UML modules in ${MODULE_ROOT}/${v}`;
    if (!(await onPath('cc'))) return 'no C compiler (cc) to build the UML xstate shim';
    return undefined;
  },

  async prepare(spec: VmSpec): Promise<VmLaunch> {
    const v = await umlVersion();
    const moduleDir = join(MODULE_ROOT, v);
    const mods = await moduleLoadOrder(moduleDir, ['dm_thin_pool', ...spec.modules]);
    const init = join(spec.job, 'init.sh');
    // Runs as the guest's pid 1, with the host's /bin/sh. Powering off ends linux.uml.
    await writeFile(init, `#!/bin/sh\n/bin/bash ${spec.runScript}\nexec halt -f -p\n`, { mode: 0o755 });
    const args = [
      `mem=${spec.memory}`,
      `ubda=${spec.data}`, `ubdb=${spec.meta}`,
      'root=/dev/root', 'rootfstype=hostfs', 'rootflags=/', 'rw',
      `init=${init}`,
      'con0=fd:0,fd:1', 'con=null', 'quiet',
      // UML keeps a pid file and an mconsole socket under uml_dir/umid: keep them in the job.
      `uml_dir=${spec.job}`, `umid=${basename(spec.job)}`,
    ];
    return {
      command: (await onPath(UML))!,
      args,
      // UML backs guest RAM with an unlinked file in $TMPDIR: keep it in RAM, not on disk.
      env: { LD_PRELOAD: await umlShim(), ...((await exists('/dev/shm')) ? { TMPDIR: '/dev/shm' } : {}) },
      console: { stdout: true },
      insmod: mods.map((p) => join(moduleDir, p)),
    };
  },
};
