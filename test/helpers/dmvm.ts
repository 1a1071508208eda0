// A real device-mapper thin pool for tests and benchmarks, although the host kernel has
// no device-mapper: boot a throwaway Linux guest that sees the host's root filesystem
// read-write at the same paths (so node, dmsetup, mkfs and the project tree are all
// there), with two block devices for the pool; run one bash command as root inside; power
// off. Mounts and dm devices made inside exist only in the guest; files written inside
// are written on the host.
//
// Two backends (test/helpers/dmvm/): 'uml', Debian's user-mode Linux 6.1, the default (boots
// in ~1-2 s, no virtualisation needed, one CPU, every guest syscall goes through ptrace);
// and 'qemu', Debian's 6.1 kernel under qemu (KVM when the host has real KVM, else TCG
// emulation, which is what this project's machines give: ~10 s boots). Pick with
// opts.backend or $TSLAYER_DMVM_BACKEND. Install what they need with
// `bash test/helpers/dmvm/install.sh [--qemu]`.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from './dmvm/backend.js';
import { qemu } from './dmvm/qemu.js';
import { uml } from './dmvm/uml.js';
import { exists, onPath } from './dmvm/util.js';
import { makeTmpDir, removeTmpDir } from './tmp.js';

export type DmVmBackend = 'uml' | 'qemu';

export interface DmVmOptions {
  /** Size of the pool's data device when it is made here (truncate(1) syntax, default '2G'). */
  dataSize?: string;
  /** Size of the pool's metadata device when it is made here (default '128M'). */
  metaSize?: string;
  /** Guest RAM ('512M', '2G'; default '2G'). */
  memory?: string;
  /** Guest CPUs, qemu only (UML has one; default 2). */
  cpus?: number;
  /**
   * Backing files for the data and metadata devices, kept by the caller so a later boot
   * sees the same pool (restart tests). Missing files are created sparse with
   * dataSize/metaSize; existing ones are used as they are.
   */
  images?: { data: string; meta: string };
  /** Whole run, boot included (default 180 000 ms). The VM is killed when it passes. */
  timeoutMs?: number;
  /** Extra environment for the command. */
  env?: Record<string, string>;
  /** Working directory of the command inside (default: this process's cwd). */
  cwd?: string;
  /**
   * 'clean' (default): after the command, sync, unmount what it left mounted and
   * `dmsetup remove_all`, which commits pool metadata as an orderly shutdown would.
   * 'hard': power off right after the command: the pool sees a crash, and only what the
   * command itself flushed is on the disks.
   */
  shutdown?: 'clean' | 'hard';
  /** Extra kernel modules to load, by name (e.g. 'loop', 'overlay', 'dm_snapshot'). */
  modules?: string[];
  /** qemu's cache mode for the two disks (default 'writeback': guest flushes reach the host). */
  diskCache?: 'writeback' | 'none' | 'unsafe' | 'directsync';
  /** Default: $TSLAYER_DMVM_BACKEND, else 'uml'. */
  backend?: DmVmBackend;
}

export interface DmVmResult {
  /** The command's exit status (128+N when killed by signal N). */
  status: number;
  stdout: string;
  stderr: string;
  /** The guest's console: kernel messages and the harness's "dmvm:" progress lines. */
  console: string;
  /** Host wall-clock time from starting the VM to its exit. */
  totalMs: number;
  /** Guest uptime when the command started (kernel boot, modules, mounts). */
  bootMs: number;
  /** How long the command ran, measured inside the guest. */
  commandMs: number;
}

const BACKENDS: Record<DmVmBackend, Backend> = { uml, qemu };
const DEFAULT_TIMEOUT_MS = 180_000;

function pickBackend(name = process.env.TSLAYER_DMVM_BACKEND || 'uml'): Backend {
  const b = BACKENDS[name as DmVmBackend];
  if (!b) throw new Error(`dmvm: unknown backend ${JSON.stringify(name)} (uml or qemu)`);
  return b;
}

const availability = new Map<string, Promise<{ ok: boolean; why?: string }>>();

/** Whether runInDmVm can work here; `why` says what is missing, for a clear skip message. */
export function dmVmAvailable(backend?: DmVmBackend): Promise<{ ok: boolean; why?: string }> {
  const b = pickBackend(backend);
  let p = availability.get(b.name);
  if (!p) {
    p = (async () => {
      const fix = `; run \`bash test/helpers/dmvm/install.sh${b.name === 'qemu' ? ' --qemu' : ''}\` as root`;
      if (process.getuid?.() !== 0) return { ok: false, why: 'the dm VM needs root' };
      const why = await b.unavailable();
      if (why) return { ok: false, why: `${b.name}: ${why}${fix}` };
      for (const tool of ['dmsetup', 'insmod', 'mkfs.ext4']) {
        if (!(await onPath(tool))) return { ok: false, why: `${tool} not found${fix}` };
      }
      return { ok: true };
    })();
    availability.set(b.name, p);
  }
  return p;
}

// --- the job -----------------------------------------------------------------------

const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * run.sh runs in the guest as root, at the guest's root = the host's root, with the
 * host's own bash and tools: it gives the guest its own proc/sys/dev/run, loads modules,
 * runs the command with its output in files, cleans up, and writes the status file
 * last (its presence is how the host knows the command ran to the end).
 */
function runScript(job: string, cwd: string, env: Record<string, string>, insmod: string[], shutdown: string): string {
  const exports = Object.entries(env).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`runInDmVm: bad env name ${JSON.stringify(k)}`);
    return `export ${k}=${shQuote(v)}`;
  });
  const j = shQuote(job);
  return `export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# What udev would add to a devtmpfs /dev (bash's <(...) needs /dev/fd).
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
for m in ${insmod.map(shQuote).join(' ')}; do
  insmod "$m" || echo "dmvm: insmod $m failed"
done
read -r t0 _ < /proc/uptime
echo "dmvm: boot done at $t0"
(
${exports.join('\n')}
cd ${shQuote(cwd)} && exec bash ${j}/command.sh
) > ${j}/stdout 2> ${j}/stderr < /dev/null
rc=$?
read -r t1 _ < /proc/uptime
echo "dmvm: command exited $rc at $t1"
if [ ${shQuote(shutdown)} = clean ]; then
  sync
  # Unmount what the command left mounted, newest first, then remove the dm devices:
  # removing a pool commits its metadata.
  for pass in 1 2; do
    awk '$2 != "/" && $2 !~ "^/(proc|sys|dev|run)(/|$)" {print $2}' /proc/self/mounts | tac |
      while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp"; done
  done
  dmsetup remove_all 2>&1 | sed 's/^/dmvm: remove_all: /'
  sync
fi
echo "$t0 $t1" > ${j}/times
echo "$rc" > ${j}/status.tmp && mv ${j}/status.tmp ${j}/status
sync -f ${j}/status
`;
}

const SIZE_RE = /^(\d+)([KMGT]?)$/i;

function parseSize(s: string): number {
  const m = SIZE_RE.exec(s.trim());
  if (!m) throw new Error(`runInDmVm: bad size ${JSON.stringify(s)} (want e.g. 128M, 2G)`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

/** Creates `path` sparse with `size` bytes unless it exists already. */
async function ensureImage(path: string, size: string): Promise<void> {
  if (await exists(path)) {
    if (!(await stat(path)).isFile()) throw new Error(`runInDmVm: ${path} is not a regular file`);
    return;
  }
  const fh = await open(path, 'wx', 0o600);
  try {
    await fh.truncate(parseSize(size));
  } finally {
    await fh.close();
  }
}

// --- the VM process ----------------------------------------------------------------

// VMs run in their own process group (UML is several host processes). Groups still
// running when this process exits are killed; setpriv --pdeathsig covers this process
// dying without exiting.
const live = new Set<number>();
process.on('exit', () => {
  for (const pgid of live) killGroup(pgid);
});

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function waitExit(p: ChildProcess, timeoutMs: number): Promise<{ timedOut: boolean; code: number | null }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup(p.pid!);
      resolve({ timedOut: true, code: null });
    }, timeoutMs);
    p.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ timedOut: false, code });
    });
  });
}

const readOr = (path: string, fallback = '') => readFile(path, 'utf8').catch(() => fallback);
const tail = (s: string, lines = 40) => s.split('\n').slice(-lines).join('\n');

/**
 * Boots a VM that has device-mapper, with the host's root visible at the same paths,
 * runs `command` (bash -c) inside as root, returns its exit status and output. Always
 * kills the VM and removes temp files on failure/timeout. Inside, env DM_DATA_DEV and
 * DM_META_DEV name the two block devices for the pool. Throws when the VM cannot run the
 * command to its end (not available, timeout, guest crash); a failing command is a
 * result with status != 0.
 */
export async function runInDmVm(command: string, opts: DmVmOptions = {}): Promise<DmVmResult> {
  const backend = pickBackend(opts.backend);
  const avail = await dmVmAvailable(backend.name);
  if (!avail.ok) throw new Error(`runInDmVm: not available: ${avail.why}`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const job = await makeTmpDir('dmvm');
  let pgid: number | undefined;
  let failed = true;
  try {
    const data = opts.images?.data ?? join(job, 'data.img');
    const meta = opts.images?.meta ?? join(job, 'meta.img');
    await ensureImage(data, opts.dataSize ?? '2G');
    await ensureImage(meta, opts.metaSize ?? '128M');
    const runPath = join(job, 'run.sh');
    const launch = await backend.prepare({
      job,
      runScript: runPath,
      data,
      meta,
      memory: opts.memory ?? '2G',
      cpus: opts.cpus ?? 2,
      modules: opts.modules ?? [],
      diskCache: opts.diskCache ?? 'writeback',
    });
    const env: Record<string, string> = {
      PATH: [...new Set([...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'])].filter(Boolean).join(':'),
      HOME: '/root',
      LANG: 'C.UTF-8',
      TMPDIR: process.env.TMPDIR ?? '/tmp',
      DM_DATA_DEV: backend.dataDev,
      DM_META_DEV: backend.metaDev,
      DM_DISABLE_UDEV: '1', // no udev in the guest: dmsetup makes the /dev/mapper nodes itself
      ...opts.env,
    };
    await writeFile(join(job, 'command.sh'), command);
    await writeFile(runPath, runScript(job, opts.cwd ?? process.cwd(), env, launch.insmod, opts.shutdown ?? 'clean'));

    const consoleFile = 'file' in launch.console ? launch.console.file : join(job, 'console.log');
    const setpriv = await onPath('setpriv');
    const [cmd, args] = setpriv
      ? [setpriv, ['--pdeathsig', 'KILL', '--', launch.command, ...launch.args]]
      : [launch.command, launch.args];
    const consoleFd = 'stdout' in launch.console ? openSync(consoleFile, 'w', 0o600) : 'ignore';
    const t0 = performance.now();
    let vm: ChildProcess;
    try {
      vm = spawn(cmd, args, {
        stdio: ['ignore', consoleFd, 'pipe'],
        env: { ...process.env, ...launch.env },
        detached: true, // own process group, killed as a whole
      });
    } finally {
      if (typeof consoleFd === 'number') closeSync(consoleFd);
    }
    pgid = vm.pid;
    if (pgid !== undefined) live.add(pgid);
    let vmErr = '';
    vm.stderr!.setEncoding('utf8').on('data', (s: string) => (vmErr = (vmErr + s).slice(-8192)));
    const { timedOut, code } = await waitExit(vm, timeoutMs);
    const totalMs = performance.now() - t0;

    const consoleLog = await readOr(consoleFile);
    const statusText = (await readOr(join(job, 'status'))).trim();
    if (timedOut || statusText === '') {
      const why = timedOut
        ? `timed out after ${timeoutMs} ms`
        : `the ${backend.name} VM exited (status ${code}) before the command finished`;
      throw new Error(
        `runInDmVm: ${why}\n--- ${launch.command} stderr ---\n${tail(vmErr)}\n--- guest console (tail) ---\n` +
          `${tail(consoleLog)}\n--- command stderr (tail) ---\n${tail(await readOr(join(job, 'stderr')))}`,
      );
    }
    const [c0, c1] = (await readOr(join(job, 'times'))).trim().split(' ').map(Number);
    failed = false;
    return {
      status: Number(statusText),
      stdout: await readOr(join(job, 'stdout')),
      stderr: await readOr(join(job, 'stderr')),
      console: consoleLog,
      totalMs,
      bootMs: c0 * 1000,
      commandMs: (c1 - c0) * 1000,
    };
  } finally {
    if (pgid !== undefined) {
      killGroup(pgid); // also after a clean exit: no stray helper may outlive the run
      live.delete(pgid);
    }
    if (process.env.TSLAYER_DMVM_KEEP) {
      if (failed) console.error(`dmvm: kept ${job}`);
    } else {
      await removeTmpDir(job);
    }
  }
}
