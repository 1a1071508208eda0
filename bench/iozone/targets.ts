// Where IOzone runs: each target is a directory on a freshly made loop filesystem, either
// the filesystem itself (the bare baselines) or a container rootfs that tslayer mounted
// there with one of its snapshot drivers. The fair baseline of a driver is the bare
// filesystem of the same kind on the same kind of device: overlay and native on ext4 vs
// bare ext4, btrfs vs bare btrfs (and bare btrfs vs bare ext4 separates the filesystem's
// effect from the driver's). devmapper runs inside the dm VM (vm.ts), against ext4 made
// directly on the VM's block device.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { LoopFs, LoopFsType } from '../lib/fresh.js';
import { TSLAYER_BIN } from '../lib/results.js';
import { sh } from '../lib/sys.js';

export interface Target {
  name: string;
  /** The bare target this one's ratio is taken against (none for ext4, the reference). */
  baseline?: string;
  about: string;
  /** Host targets: the loop filesystem to make. */
  fs?: LoopFsType;
  /** tslayer's snapshot driver (none: IOzone writes on the bare filesystem). */
  driver?: 'overlay' | 'btrfs' | 'native' | 'devmapper';
  /** Runs inside the device-mapper VM. */
  vm?: boolean;
}

export const TARGETS: Target[] = [
  { name: 'bare-ext4', fs: 'ext4', about: 'journaled ext4 on a loop file: the baseline' },
  { name: 'overlay', fs: 'ext4', driver: 'overlay', baseline: 'bare-ext4', about: 'tslayer overlay snapshot on that ext4 (the file lands in the upper dir)' },
  { name: 'native', fs: 'ext4', driver: 'native', baseline: 'bare-ext4', about: 'tslayer native snapshot (a plain directory tree) on that ext4' },
  { name: 'bare-btrfs', fs: 'btrfs', baseline: 'bare-ext4', about: 'btrfs on a loop file (the filesystem effect, against ext4)' },
  { name: 'btrfs', fs: 'btrfs', driver: 'btrfs', baseline: 'bare-btrfs', about: 'tslayer btrfs snapshot (a subvolume snapshot) on that btrfs' },
  { name: 'bare-vm', vm: true, about: 'inside the dm VM: ext4 made directly on the VM\'s block device (the devmapper baseline)' },
  { name: 'devmapper', vm: true, driver: 'devmapper', baseline: 'bare-vm', about: 'inside the dm VM: tslayer devmapper snapshot (ext4 on a dm-thin device of a pool on the same block device)' },
];

/**
 * Makes the directory IOzone writes in on `fs`: the fs itself, or the rootfs of an active
 * snapshot of the bench image (imported from `layout`) mounted by `tslayer mount`.
 * Returns the directory and how to take it down again.
 */
export async function prepareHostTarget(t: Target, fs: LoopFs, layout: string): Promise<{ dir: string; teardown: () => Promise<void> }> {
  if (!t.driver) return { dir: fs.mountpoint, teardown: async () => {} };
  const root = join(fs.mountpoint, 'tslayer');
  const rootfs = join(fs.mountpoint, 'rootfs');
  await mkdir(rootfs);
  const cli = (...args: string[]) => sh(process.execPath, [TSLAYER_BIN, '--root', root, '--driver', t.driver!, '--quiet', ...args]);
  await cli('import', layout, 'bench:iozone');
  await cli('mount', 'bench:iozone', rootfs, '--name', 'iozone');
  return { dir: join(rootfs, 'tmp'), teardown: async () => void (await cli('umount', rootfs)) };
}
