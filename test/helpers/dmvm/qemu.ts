// The qemu backend: Debian's own kernel (extracted by `install.sh --qemu`) with a tiny
// initramfs built here (static busybox + the needed .ko files + /init), the host's root
// shared read-write over virtio-9p and chrooted into, and two virtio disks for the pool.
//
// Slower to boot than UML, and on this project's machines much slower still: their
// /dev/kvm is PVM (kvm_pvm, for PVM-patched guest kernels only), in which a stock kernel
// hangs before its first message, so qemu falls back to TCG emulation there (~10 s boot,
// node -e ~3.6 s). It is kept for machines with real KVM, where it is the one to use for
// benchmarks (no ptrace on every guest syscall, 2+ CPUs).
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend, VmLaunch, VmSpec } from './backend.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import { moduleLoadOrder, moduleName } from './modules.js';
import { byVersionDesc, exists, isStaticElf, onPath } from './util.js';

const QEMU = 'qemu-system-x86_64';
const BUSYBOX = '/bin/busybox';
const KERNEL_CACHE = process.env.TSLAYER_DMVM_CACHE ?? '/var/cache/tslayer-dmvm';

// crc32c is a soft dependency (ext4, jbd2, dm-persistent-data ask the crypto API for it by
// name), which modules.dep does not list.
const BASE_MODULES = ['virtio_pci', 'virtio_blk', '9pnet_virtio', '9p', 'crc32c_generic', 'dm_thin_pool', 'ext4', 'xfs'];
const OPTIONAL_MODULES = ['crc32c_intel'];

interface Kernel {
  version: string;
  vmlinuz: string;
  moduleDir: string;
}

async function kernelIn(root: string, version: string): Promise<Kernel | undefined> {
  const vmlinuz = join(root, 'boot', `vmlinuz-${version}`);
  const moduleDir = join(root, 'lib', 'modules', version);
  if ((await exists(vmlinuz)) && (await exists(join(moduleDir, 'modules.dep')))) return { version, vmlinuz, moduleDir };
  return undefined;
}

/** The newest kernel extracted by install.sh --qemu, else one installed in /boot. */
async function findKernel(): Promise<Kernel | undefined> {
  const cached = (await readdir(join(KERNEL_CACHE, 'kernel')).catch(() => [] as string[])).sort(byVersionDesc);
  for (const v of cached) {
    if (!(await exists(join(KERNEL_CACHE, 'kernel', v, '.complete')))) continue;
    const k = await kernelIn(join(KERNEL_CACHE, 'kernel', v), v);
    if (k) return k;
  }
  const boot = (await readdir('/boot').catch(() => [] as string[])).filter((n) => n.startsWith('vmlinuz-'));
  for (const f of boot.sort(byVersionDesc)) {
    const k = await kernelIn('/', f.slice('vmlinuz-'.length));
    if (k) return k;
  }
  return undefined;
}

/** Hardware KVM: /dev/kvm backed by kvm_intel/kvm_amd, not only by PVM. */
async function hardwareKvm(): Promise<boolean> {
  if (!(await exists('/dev/kvm'))) return false;
  return (await exists('/sys/module/kvm_intel')) || (await exists('/sys/module/kvm_amd')) || !(await exists('/sys/module/kvm_pvm'));
}

// The initramfs's /init: load modules, mount the host's root from 9p, chroot into it to
// run the job's run.sh (which mounts proc/sys/dev/run itself), power off.
const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
  insmod "/modules/$m" 2>/dev/null || echo "dmvm: insmod $m failed"
done < /modules/order
run=$(sed -n 's/.*dmvm\\.run=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mkdir -p /host
# cache=loose: the guest is the only one using these files during its short life, and
# page-cached reads make node start several times faster than cache=none. run.sh syncs
# what it wrote before returning.
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /host; then
  chroot /host /bin/bash "$run"
  sync
else
  echo "dmvm: cannot mount the host root over 9p"
fi
poweroff -f
`;

async function buildInitramfs(k: Kernel, extra: string[], out: string): Promise<void> {
  const modules = await moduleLoadOrder(k.moduleDir, [...BASE_MODULES, ...extra], OPTIONAL_MODULES);
  const dir = (name: string): CpioEntry => ({ name, mode: 0o40755 });
  await writeCpio(out, [
    dir('bin'), dir('dev'), dir('proc'), dir('sys'), dir('modules'),
    // The kernel opens /dev/console for init's stdio before anything can mount devtmpfs.
    { name: 'dev/console', mode: 0o20600, rdev: [5, 1] },
    { name: 'init', mode: 0o100755, data: Buffer.from(INIT) },
    { name: 'bin/busybox', mode: 0o100755, file: BUSYBOX },
    { name: 'modules/order', mode: 0o100644, data: Buffer.from(modules.map((p) => moduleName(p) + '.ko').join('\n') + '\n') },
    ...modules.map((p) => ({ name: `modules/${moduleName(p)}.ko`, mode: 0o100644, file: join(k.moduleDir, p) })),
  ]);
}

export const qemu: Backend = {
  name: 'qemu',
  dataDev: '/dev/vda',
  metaDev: '/dev/vdb',

  async unavailable() {
    const fix = 'run `bash test/helpers/dmvm/install.sh --qemu`';
    if (!(await onPath(QEMU))) return `${QEMU} not found; ${fix}`;
    if (!(await findKernel())) return `no guest kernel in ${KERNEL_CACHE}/kernel or /boot; ${fix}`;
    if (!(await exists(BUSYBOX)) || !(await isStaticElf(BUSYBOX))) return `${BUSYBOX} is not static (busybox-static); ${fix}`;
    return undefined;
  },

  async prepare(spec: VmSpec): Promise<VmLaunch> {
    const kernel = (await findKernel())!;
    const initrd = join(spec.job, 'initramfs.cpio');
    await buildInitramfs(kernel, spec.modules, initrd);
    const disk = (file: string, id: string) => [
      '-drive', `id=${id},file=${file.replace(/,/g, ',,')},format=raw,if=none,cache=${spec.diskCache},aio=threads`,
      '-device', `virtio-blk-pci,drive=${id},serial=${id}`,
    ];
    const accel = (await hardwareKvm())
      ? ['-enable-kvm', '-cpu', 'host']
      : ['-accel', 'tcg,thread=multi', '-cpu', 'max'];
    const consoleFile = join(spec.job, 'console.log');
    return {
      command: (await onPath(QEMU))!,
      args: [
        '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none', '-monitor', 'none',
        ...accel, '-smp', String(spec.cpus), '-m', spec.memory,
        '-kernel', kernel.vmlinuz, '-initrd', initrd,
        '-append', `console=ttyS0 panic=-1 quiet loglevel=4 dmvm.run=${spec.runScript}`,
        '-serial', `file:${consoleFile}`,
        // multidevs=remap: the host root spans several filesystems; keep inode numbers unique.
        '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=passthrough,multidevs=remap',
        ...disk(spec.data, 'dmdata'), ...disk(spec.meta, 'dmmeta'),
      ],
      env: {},
      console: { file: consoleFile },
      insmod: [],
    };
  },
};
