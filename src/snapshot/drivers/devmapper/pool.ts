/**
 * The thin pool every snapshot device lives in: an existing one named by the user
 * (--dm-pool, as containerd's `pool_name` and Docker's `dm.thinpooldev`), or, for
 * development, a loopback pool made under the store root from two sparse files (Docker's
 * "loop-lvm"): slow and fragile, and said so.
 *
 *   ROOT/snapshots/devmapper/pool/data       100 GiB sparse (Docker's loop default)
 *   ROOT/snapshots/devmapper/pool/metadata   2 GiB sparse
 *
 * The loopback pool is set up again from its files when it is not active (after a
 * reboot, loop devices and dm tables are gone; the pool's own metadata is in the file).
 */
import { existsSync } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TslayerError, failedPrecondition } from '../../../errors.js';
import { activeDevices, devicePath } from './devices.js';
import { dmsetup, runTool } from './dmsetup.js';

export interface Pool {
  /** The dm name (`dmsetup message NAME ...`). */
  name: string;
  /** Its device number, as thin tables name it ('254:0'). */
  devno: string;
  /** Data block size in 512-byte sectors. */
  blockSectors: number;
  /** Whether discards on thin devices reach the data device (then discarding on remove frees real space). */
  discardPassdown: boolean;
  loopback: boolean;
}

/** Pool table parameters of a loopback pool: 64 KiB blocks, low-water mark 32768 blocks, as Docker's loop-lvm. */
const LOOP_BLOCK_SECTORS = 128;
const LOOP_LOW_WATER = 32768;
export const LOOP_DATA_SIZE = 100 * 1024 ** 3;
export const LOOP_META_SIZE = 2 * 1024 ** 3;

function requireDeviceMapper(): void {
  if (!existsSync('/dev/mapper/control')) {
    throw new TslayerError(
      'UNAVAILABLE',
      'snapshot driver devmapper needs device-mapper with thin provisioning, but this kernel has none (no /dev/mapper/control): ' +
        'load it (`modprobe dm_thin_pool`) or pick another driver (--driver overlay, btrfs or native)',
    );
  }
}

/** An existing thin pool by dm name (or /dev/mapper/NAME). */
export async function openPool(nameOrPath: string): Promise<Pool> {
  requireDeviceMapper();
  const name = nameOrPath.replace(/^\/dev\/mapper\//, '');
  const devno = (await activeDevices()).get(name);
  if (devno === undefined) {
    throw failedPrecondition(
      `thin pool ${name} (--dm-pool) is not an active device-mapper device (see \`dmsetup ls\`); ` +
        'create it first, e.g. with `lvcreate --type thin-pool` or `dmsetup create NAME --table "0 SIZE thin-pool META DATA 128 32768"`',
    );
  }
  const table = (await dmsetup(['table', name], name)).trim().split(/\s+/);
  // 0 LEN thin-pool META DATA BLOCK_SECTORS LOW_WATER [N FEATURES...]
  if (table[2] !== 'thin-pool') {
    throw failedPrecondition(`device-mapper device ${name} (--dm-pool) is not a thin pool: its table is "${table.join(' ')}"`);
  }
  const status = (await dmsetup(['status', name], name)).trim();
  // 0 LEN thin-pool TRANS USED_META/TOTAL USED_DATA/TOTAL HELD rw|ro|out_of_data_space|Fail ...
  const fields = status.split(/\s+/);
  if (fields[3] === 'Fail' || fields.includes('ro') || fields.includes('needs_check')) {
    throw failedPrecondition(`thin pool ${name} is not writable (status: ${status}); repair it with thin_check/thin_repair`);
  }
  return {
    name,
    devno,
    blockSectors: Number(table[5]),
    discardPassdown: !fields.includes('no_discard_passdown') && !fields.includes('ignore_discard'),
    loopback: false,
  };
}

/** Creates `path` sparse with `size` bytes unless it exists; returns whether it was made. */
async function ensureSparse(path: string, size: number): Promise<boolean> {
  try {
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.truncate(size);
    } finally {
      await fh.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** The loop device attached to `file`, attaching one if none is. */
async function loopFor(file: string): Promise<string> {
  const found = (await runTool('losetup', ['-j', file], { device: file })).trim();
  // "/dev/loop3: [2049]:1234 (/path/file)"
  const attached = found.split('\n').find((l) => l.includes(':'));
  if (attached) return attached.slice(0, attached.indexOf(':'));
  if (!existsSync('/dev/loop-control')) {
    throw new TslayerError(
      'UNAVAILABLE',
      `the loopback thin pool needs loop devices (no /dev/loop-control): load the loop module or give an existing pool with --dm-pool`,
    );
  }
  return (await runTool('losetup', ['--find', '--show', file], { device: file })).trim();
}

/**
 * The loopback pool `name` on files in `dir`, made on first use (and set up again from
 * its files when inactive).
 */
export async function openLoopbackPool(dir: string, name: string): Promise<Pool> {
  requireDeviceMapper();
  if (!(await activeDevices()).has(name)) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const data = join(dir, 'data');
    const meta = join(dir, 'metadata');
    await ensureSparse(data, LOOP_DATA_SIZE);
    // A new metadata file is all zeroes, which the kernel formats as an empty pool.
    await ensureSparse(meta, LOOP_META_SIZE);
    const [dataDev, metaDev] = [await loopFor(data), await loopFor(meta)];
    const sectors = (await stat(data)).size / 512;
    const table = `0 ${sectors} thin-pool ${metaDev} ${dataDev} ${LOOP_BLOCK_SECTORS} ${LOOP_LOW_WATER} 1 skip_block_zeroing`;
    try {
      await dmsetup(['create', name, '--table', table], name);
    } catch (e) {
      if (!(await activeDevices()).has(name)) throw e; // else another process made it meanwhile
    }
    if (!existsSync(devicePath(name))) await dmsetup(['mknodes', name], name);
  }
  const pool = await openPool(name);
  return { ...pool, loopback: true };
}
