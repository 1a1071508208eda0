// A real device-mapper thin pool for tests and benchmarks, although the host kernel has
// no device-mapper: boot a throwaway KVM guest running Debian's own 6.1 kernel, with the
// host's root filesystem shared read-write over virtio-9p at the same paths (so node,
// dmsetup, mkfs and the project tree are all there), two virtio disks for the pool, run
// one bash command as root inside, and power off.
//
// Why not user-mode Linux (Debian's linux.uml, 6.1): on this CPU (AVX-512 + AMX, a large
// XSAVE area) every UML process dies at its first context switch. UML 6.1 restores FP
// state with PTRACE_SETREGSET(NT_X86_XSTATE) using an 832-byte buffer, and the host
// kernel refuses any size but its own full XSAVE size. It can be made to boot with an
// LD_PRELOAD shim that pads the buffer, but then AVX-512 state (zmm16-31, k0-7, which
// glibc's string functions use) leaks between the threads of a guest process, and UML
// runs every guest syscall through ptrace, which makes it useless for benchmarks.
//
// What is needed on the host: see test/helpers/dmvm/install.sh (qemu-system-x86,
// busybox-static, dmsetup, thin-provisioning-tools, e2fsprogs, xfsprogs, and the
// kernel extracted from Debian's linux-image package under /var/cache/tslayer-dmvm).
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { access, open, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { makeTmpDir, removeTmpDir } from './tmp.js';
import { writeCpio, type CpioEntry } from './dmvm/cpio.js';

export interface DmVmOptions {
  /** Size of the pool's data device when the VM makes it (truncate(1) syntax, default '2G'). */
  dataSize?: string;
  /** Size of the pool's metadata device when the VM makes it (default '128M'). */
  metaSize?: string;
  /** Guest RAM (qemu -m syntax, default '2G'). */
  memory?: string;
  /** Guest CPUs (default: 2). */
  cpus?: number;
  /**
   * Backing files for the data and metadata devices, kept by the caller so a second
   * boot sees the same pool (restart tests). Missing files are created sparse with
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
   * `dmsetup remove_all`, so pool metadata is committed as on an orderly shutdown.
   * 'hard': sync nothing, power off at once (the pool sees a crash; only what the
   * command itself flushed is on the disks).
   */
  shutdown?: 'clean' | 'hard';
  /** Extra kernel modules to load, by name (e.g. 'overlay', 'btrfs', 'dm_snapshot'). */
  modules?: string[];
  /** qemu's cache mode for the two disks (default 'writeback': flushes reach the host). */
  diskCache?: 'writeback' | 'none' | 'unsafe' | 'directsync';
}

export interface DmVmResult {
  /** The command's exit status (128+N when killed by signal N). */
  status: number;
  stdout: string;
  stderr: string;
  /** The guest's serial console: kernel messages and the init script's progress lines. */
  console: string;
  /** Host wall-clock time from starting qemu to qemu's exit. */
  totalMs: number;
  /** Guest uptime when the command started (kernel boot + module loading + mounts). */
  bootMs: number;
  /** How long the command ran, measured inside the guest. */
  commandMs: number;
}

/** The block devices the guest sees for the pool, also exported to the command. */
export const DM_DATA_DEV = '/dev/vda';
export const DM_META_DEV = '/dev/vdb';

const DEFAULT_TIMEOUT_MS = 180_000;
const KERNEL_CACHE = process.env.TSLAYER_DMVM_KERNEL_ROOT ?? '/var/cache/tslayer-dmvm';
const BUSYBOX = '/bin/busybox';
const QEMU = 'qemu-system-x86_64';

// Loaded in the initramfs, with their dependencies, before anything else runs. crc32c is
// a soft dependency (ext4, jbd2, dm-persistent-data ask the crypto API for it by name),
// which modules.dep does not list.
const BASE_MODULES = [
  'virtio_pci', 'virtio_blk', '9pnet_virtio', '9p',
  'crc32c_generic', 'crc32c_intel',
  'dm_thin_pool', 'ext4', 'xfs',
];

interface Kernel {
  version: string;
  vmlinuz: string;
  /** lib/modules/<version> holding modules.dep. */
  moduleDir: string;
}

// --- finding the pieces -------------------------------------------------------------

async function exists(path: string, mode = fsc.R_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

async function kernelIn(root: string, version: string): Promise<Kernel | undefined> {
  const vmlinuz = join(root, 'boot', `vmlinuz-${version}`);
  const moduleDir = join(root, 'lib', 'modules', version);
  if ((await exists(vmlinuz)) && (await exists(join(moduleDir, 'modules.dep')))) {
    return { version, vmlinuz, moduleDir };
  }
  return undefined;
}

const byVersionDesc = (a: string, b: string) => b.localeCompare(a, 'en', { numeric: true });

/** The newest kernel extracted by dmvm/install.sh, else one installed in /boot. */
async function findKernel(): Promise<Kernel | undefined> {
  const cached = await readdir(KERNEL_CACHE).catch(() => [] as string[]);
  for (const v of cached.filter((n) => !n.endsWith('.partial')).sort(byVersionDesc)) {
    if (!(await exists(join(KERNEL_CACHE, v, '.complete')))) continue;
    const k = await kernelIn(join(KERNEL_CACHE, v), v);
    if (k) return k;
  }
  const boot = await readdir('/boot').catch(() => [] as string[]);
  for (const f of boot.filter((n) => n.startsWith('vmlinuz-')).sort(byVersionDesc)) {
    const k = await kernelIn('/', f.slice('vmlinuz-'.length));
    if (k) return k;
  }
  return undefined;
}

async function onPath(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (dir && (await exists(join(dir, cmd), fsc.X_OK))) return join(dir, cmd);
  }
  return undefined;
}

/** True when the ELF file has no PT_INTERP header, i.e. runs without a dynamic loader. */
async function isStaticElf(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const hdr = Buffer.alloc(64);
    await fh.read(hdr, 0, 64, 0);
    if (hdr.readUInt32BE(0) !== 0x7f454c46 || hdr[4] !== 2) return false; // ELF64 only
    const phoff = Number(hdr.readBigUInt64LE(32));
    const phentsize = hdr.readUInt16LE(54);
    const phnum = hdr.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    await fh.read(ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } finally {
    await fh.close();
  }
}

let availability: Promise<{ ok: boolean; why?: string }> | undefined;

/** Whether runInDmVm can work here; `why` says what is missing, for a clear skip message. */
export function dmVmAvailable(): Promise<{ ok: boolean; why?: string }> {
  availability ??= (async () => {
    const fix = 'run `bash test/helpers/dmvm/install.sh` as root';
    if (process.getuid?.() !== 0) return { ok: false, why: 'dm VM needs root' };
    if (!(await exists('/dev/kvm', fsc.R_OK | fsc.W_OK))) return { ok: false, why: 'no usable /dev/kvm' };
    if (!(await onPath(QEMU))) return { ok: false, why: `${QEMU} not found; ${fix}` };
    if (!(await findKernel())) return { ok: false, why: `no guest kernel in ${KERNEL_CACHE} or /boot; ${fix}` };
    if (!(await exists(BUSYBOX)) || !(await isStaticElf(BUSYBOX))) {
      return { ok: false, why: `${BUSYBOX} is not a static busybox (package busybox-static); ${fix}` };
    }
    if (!(await onPath('dmsetup'))) return { ok: false, why: `dmsetup not found; ${fix}` };
    return { ok: true };
  })();
  return availability;
}

// --- the initramfs -------------------------------------------------------------------

const modName = (file: string) => file.replace(/^.*\//, '').replace(/\.ko(\..*)?$/, '').replace(/-/g, '_');

/** `wanted` and everything they depend on, from modules.dep, dependencies first. */
async function moduleLoadOrder(k: Kernel, wanted: string[]): Promise<string[]> {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of (await readFile(join(k.moduleDir, 'modules.dep'), 'utf8')).split('\n')) {
    const [path, rest] = line.split(':');
    if (!path || rest === undefined) continue;
    deps.set(modName(path), { path, deps: rest.trim().split(/\s+/).filter(Boolean).map(modName) });
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const m = deps.get(name);
    if (!m) throw new Error(`kernel ${k.version}: module ${name} not found in ${k.moduleDir}/modules.dep`);
    m.deps.forEach(visit);
    order.push(m.path);
  };
  wanted.map((n) => n.replace(/-/g, '_')).forEach(visit);
  return order;
}

// The initramfs's /init. It loads the modules, mounts the host's root from 9p, gives it a
// fresh proc/sys/dev/run, chroots into it to run the job's run.sh, then powers off.
// Progress goes to the serial console, which the host keeps in console.log.
const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
log() { echo "dmvm: $*"; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
  insmod "/modules/$m" 2>/dev/null || log "insmod $m failed"
done < /modules/order
job=$(sed -n 's/.*dmvm\\.job=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mode=$(sed -n 's/.*dmvm\\.shutdown=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mkdir -p /host
# cache=loose: the guest is the only writer of what it reads during its short life, and
# page-cached reads make node start several times faster than cache=none.
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /host; then
  mount -t proc proc /host/proc
  mount -t sysfs sysfs /host/sys
  mount -t devtmpfs devtmpfs /host/dev
  mkdir -p /host/dev/pts /host/dev/shm
  mount -t devpts devpts /host/dev/pts
  mount -t tmpfs tmpfs /host/dev/shm
  mount -t tmpfs tmpfs /host/run
  log "boot done at $(cut -d' ' -f1 /proc/uptime)"
  chroot /host /bin/bash "$job/run.sh"
  log "command exited $(cat "/host$job/status" 2>/dev/null) at $(cut -d' ' -f1 /proc/uptime)"
  if [ "$mode" != hard ]; then
    sync
    # Unmount what the command left mounted (deepest first), then remove the dm devices:
    # suspending a pool on removal commits its metadata, as an orderly shutdown would.
    for i in 1 2 3; do
      awk '$2 ~ "^/host/." && $2 !~ "^/host/(proc|sys|dev|run)(/|$)" {print $2}' /proc/mounts | sort -r |
        while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp"; done
    done
    chroot /host dmsetup remove_all >/dev/null 2>&1 || log "dmsetup remove_all failed"
    sync
  fi
  umount -l /host/dev/pts /host/dev/shm /host/dev /host/run /host/sys /host/proc 2>/dev/null
  umount /host 2>/dev/null
else
  log "cannot mount the host root over 9p"
fi
poweroff -f
`;

async function buildInitramfs(k: Kernel, extraModules: string[], out: string): Promise<void> {
  const modules = await moduleLoadOrder(k, [...BASE_MODULES, ...extraModules]);
  const dir = (name: string): CpioEntry => ({ name, mode: 0o40755 });
  const entries: CpioEntry[] = [
    dir('bin'), dir('dev'), dir('proc'), dir('sys'), dir('modules'),
    // The kernel opens /dev/console for init's stdio before anything can mount devtmpfs.
    { name: 'dev/console', mode: 0o20600, rdev: [5, 1] },
    { name: 'init', mode: 0o100755, data: Buffer.from(INIT) },
    { name: 'bin/busybox', mode: 0o100755, file: BUSYBOX },
    { name: 'modules/order', mode: 0o100644, data: Buffer.from(modules.map((p) => modName(p) + '.ko').join('\n') + '\n') },
    ...modules.map((p) => ({ name: `modules/${modName(p)}.ko`, mode: 0o100644, file: join(k.moduleDir, p) })),
  ];
  await writeCpio(out, entries);
}

// --- the job -----------------------------------------------------------------------

const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

// run.sh runs inside the chroot, i.e. with the host's own bash, tools and paths.
function runScript(job: string, cwd: string, env: Record<string, string>): string {
  const exports = Object.entries(env)
    .map(([k, v]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`runInDmVm: bad env name ${JSON.stringify(k)}`);
      return `export ${k}=${shQuote(v)}`;
    })
    .join('\n');
  const j = shQuote(job);
  return `set -u
${exports}
cd ${shQuote(cwd)} || exit 1
read -r t0 _ < /proc/uptime
bash ${j}/command.sh > ${j}/stdout 2> ${j}/stderr < /dev/null
rc=$?
read -r t1 _ < /proc/uptime
echo "$t0 $t1" > ${j}/times
echo "$rc" > ${j}/status.tmp && mv ${j}/status.tmp ${j}/status
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

// VMs still running when this process exits (a test runner killed mid-test) are killed
// too; setpriv --pdeathsig covers the case where this process dies without exiting.
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

function waitExit(p: ChildProcess, timeoutMs: number): Promise<{ timedOut: boolean; code: number | null }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
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
 * DM_META_DEV name the two block devices for the pool. Mounts and dm devices made inside
 * exist only in the guest. Throws when the VM cannot run the command (not available,
 * timeout, guest crash); a failing command is a result with status != 0.
 */
export async function runInDmVm(command: string, opts: DmVmOptions = {}): Promise<DmVmResult> {
  const avail = await dmVmAvailable();
  if (!avail.ok) throw new Error(`runInDmVm: not available: ${avail.why}`);
  const kernel = (await findKernel())!;
  const job = await makeTmpDir('dmvm');
  let vm: ChildProcess | undefined;
  try {
    const data = opts.images?.data ?? join(job, 'data.img');
    const meta = opts.images?.meta ?? join(job, 'meta.img');
    await ensureImage(data, opts.dataSize ?? '2G');
    await ensureImage(meta, opts.metaSize ?? '128M');
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/root',
      LANG: 'C.UTF-8',
      TMPDIR: process.env.TMPDIR ?? '/tmp',
      DM_DATA_DEV,
      DM_META_DEV,
      DM_DISABLE_UDEV: '1', // no udev in the guest: dmsetup makes /dev/mapper nodes itself
      ...opts.env,
    };
    await writeFile(join(job, 'command.sh'), command);
    await writeFile(join(job, 'run.sh'), runScript(job, opts.cwd ?? process.cwd(), env));
    await buildInitramfs(kernel, opts.modules ?? [], join(job, 'initramfs.cpio'));

    const cache = opts.diskCache ?? 'writeback';
    const disk = (file: string, id: string) => [
      '-drive', `id=${id},file=${file.replace(/,/g, ',,')},format=raw,if=none,cache=${cache},aio=threads`,
      '-device', `virtio-blk-pci,drive=${id},serial=${id}`,
    ];
    const append = [
      'console=ttyS0', 'panic=-1', 'quiet', 'loglevel=4', 'mitigations=off', 'nokaslr',
      `dmvm.job=${job}`, `dmvm.shutdown=${opts.shutdown ?? 'clean'}`,
    ].join(' ');
    const qemuArgs = [
      '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none', '-monitor', 'none',
      ...(process.env.TSLAYER_DMVM_TCG ? ['-accel', 'tcg,thread=multi', '-cpu', 'max'] : ['-enable-kvm', '-cpu', 'host']), '-smp', String(opts.cpus ?? 2), '-m', opts.memory ?? '2G',
      '-kernel', kernel.vmlinuz, '-initrd', join(job, 'initramfs.cpio'), '-append', append,
      '-serial', `file:${join(job, 'console.log')}`,
      '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=passthrough,multidevs=remap',
      ...disk(data, 'dmdata'), ...disk(meta, 'dmmeta'),
    ];
    const qemu = (await onPath(QEMU))!;
    const setpriv = await onPath('setpriv');
    const [cmd, args] = setpriv
      ? [setpriv, ['--pdeathsig', 'KILL', '--', qemu, ...qemuArgs]]
      : [qemu, qemuArgs];

    const t0 = performance.now();
    vm = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(vm);
    let qemuErr = '';
    vm.stderr!.setEncoding('utf8').on('data', (s: string) => (qemuErr = (qemuErr + s).slice(-8192)));
    const { timedOut, code } = await waitExit(vm, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const totalMs = performance.now() - t0;
    live.delete(vm);
    vm = undefined;

    const consoleLog = await readOr(join(job, 'console.log'));
    const statusText = await readOr(join(job, 'status'));
    if (timedOut || statusText.trim() === '') {
      const why = timedOut
        ? `timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`
        : `VM exited (qemu status ${code}) without running the command to completion`;
      throw new Error(
        `runInDmVm: ${why}\n--- qemu stderr ---\n${tail(qemuErr)}\n--- guest console (tail) ---\n${tail(consoleLog)}` +
          `\n--- command stderr (tail) ---\n${tail(await readOr(join(job, 'stderr')))}`,
      );
    }
    const [c0, c1] = (await readOr(join(job, 'times'))).trim().split(' ').map(Number);
    return {
      status: Number(statusText.trim()),
      stdout: await readOr(join(job, 'stdout')),
      stderr: await readOr(join(job, 'stderr')),
      console: consoleLog,
      totalMs,
      bootMs: c0 * 1000,
      commandMs: (c1 - c0) * 1000,
    };
  } finally {
    if (vm) {
      vm.kill('SIGKILL');
      live.delete(vm);
    }
    if (!process.env.TSLAYER_DMVM_KEEP) await removeTmpDir(job);
  }
}
