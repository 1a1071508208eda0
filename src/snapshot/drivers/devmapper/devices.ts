/**
 * Activating and deactivating thin devices, and what is active now.
 *
 * Whether a device is active is read from its node and sysfs: /dev/mapper/NAME's device
 * number, and /sys/dev/block/MAJ:MIN/dm/name naming it (a node left behind by a deferred
 * removal names a device that is gone, or another one). No process to start, and no scan
 * of every dm device (which costs ~100 ms per 150 devices in user-mode Linux, where every
 * syscall is slow); the full scan (activeDevices) is for cleanup. A device with no node
 * here counts as inactive: dmsetup (without udev) and udev both make the node when they
 * make the device (and deactivate() puts it back when dmsetup drops it for a deferred
 * removal the kernel has not done yet), so only a device made in another /dev lacks one,
 * and for that `dmsetup create` says EEXIST and the table is checked. A thin
 * device is activated with an explicit table, `0 SECTORS thin POOL_MAJ:MIN THIN_ID`, so
 * activation needs nothing but the recorded id and size (it works the same after a
 * reboot); /dev/mapper/NAME is made by `dmsetup mknodes` where no udev made it.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { failedPrecondition } from '../../../errors.js';
import { DmError, dmsetup, isDmErrno } from './dmsetup.js';

export const devicePath = (name: string): string => `/dev/mapper/${name}`;

/** Names of the active dm devices and their device numbers ('254:3'). */
export async function activeDevices(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let entries: string[];
  try {
    entries = await readdir('/sys/block');
  } catch {
    return out;
  }
  await Promise.all(
    entries
      .filter((e) => e.startsWith('dm-'))
      .map(async (e) => {
        try {
          const [name, dev] = await Promise.all([readFile(`/sys/block/${e}/dm/name`, 'utf8'), readFile(`/sys/block/${e}/dev`, 'utf8')]);
          out.set(name.trim(), dev.trim());
        } catch {
          // removed while we looked
        }
      }),
  );
  return out;
}

/** The device number ('254:3') of active device `name`, by its node; undefined when it is not active. */
async function activeDevno(name: string): Promise<string | undefined> {
  let rdev: number;
  try {
    const st = await stat(devicePath(name)); // udev makes it a symlink to ../dm-N: followed
    if (!st.isBlockDevice()) return undefined;
    rdev = st.rdev;
  } catch {
    return undefined;
  }
  const devno = `${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00)}`;
  return (await dmNameOf(devno)) === name ? devno : undefined; // else a stale node: the device is gone
}

const dmNameOf = (devno: string): Promise<string | undefined> =>
  readFile(`/sys/dev/block/${devno}/dm/name`, 'utf8').then(
    (n) => n.trim(),
    () => undefined,
  );

/** Whether `name` is active, by its node (see the file comment). */
export async function isActive(name: string): Promise<boolean> {
  return (await activeDevno(name)) !== undefined;
}

/** The table line of a thin device (what `dmsetup table` prints back, less the name). */
export const thinTable = (sectors: number, poolDevno: string, thinId: number): string => `0 ${sectors} thin ${poolDevno} ${thinId}`;

/** Devices this process has seen active with the right table (checked once, not at every mounts()). */
const verified = new Map<string, string>();

/**
 * Makes `name` active with `table` (read-only if asked) unless it is already; an active
 * device of that name must have exactly that table, or it is not the one we mean (a
 * device left by a store that was deleted without removing its snapshots) and we refuse
 * to touch it. Returns true when this call activated it.
 */
export async function activate(name: string, table: string, readonly: boolean): Promise<boolean> {
  let made = false;
  if (await isActive(name)) {
    if (verified.get(name) !== table) await checkTable(name, table);
  } else {
    try {
      await dmsetup(['create', name, ...(readonly ? ['--readonly'] : []), '--table', table], name);
      made = true;
    } catch (e) {
      if (!isDmErrno(e, 'EEXIST')) throw e; // else: active already (made elsewhere, or just now)
      await checkTable(name, table);
    }
  }
  verified.set(name, table);
  if (!existsSync(devicePath(name)) || (made && !(await isActive(name)))) {
    // No node, or a stale one from an earlier device of that name: make it afresh.
    await dmsetup(['mknodes', name], name);
  }
  return made;
}

async function checkTable(name: string, table: string): Promise<void> {
  const live = (await dmsetup(['table', name], name)).trim();
  if (live !== table) {
    throw failedPrecondition(
      `device-mapper device ${name} is active with table "${live}", expected "${table}": it is not this store's ` +
        `device (left by a store that was deleted without removing its snapshots?); remove it with \`dmsetup remove ${name}\``,
    );
  }
}

/**
 * Deactivates `name` if it is active. `deferred`: if it is open (mounted), the kernel
 * removes it when the last user closes it. Otherwise a busy device is retried for a
 * short while (a process that just unmounted may still hold it) and then refused.
 */
export async function deactivate(name: string, opts: { deferred?: boolean } = {}): Promise<void> {
  verified.delete(name);
  const devno = await activeDevno(name);
  if (devno === undefined) return;
  for (let attempt = 0; ; attempt++) {
    try {
      await dmsetup(['remove', ...(opts.deferred ? ['--deferred'] : []), name], name);
      // Without udev, dmsetup drops the node at once even when the kernel defers the
      // removal; the device is still there (mounted), so it keeps its node: whether a
      // device is active is read from the node.
      if (opts.deferred && (await dmNameOf(devno)) === name) await dmsetup(['mknodes', name], name);
      return;
    } catch (e) {
      if (isDmErrno(e, 'ENXIO')) return; // gone meanwhile
      if (!isDmErrno(e, 'EBUSY') || attempt >= 10) {
        if (isDmErrno(e, 'EBUSY')) {
          throw new DmError('FAILED_PRECONDITION', `device ${devicePath(name)} is in use (mounted?): ${(e as Error).message}`, 'EBUSY', {
            cause: e,
          });
        }
        throw e;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Mapped sectors of an active thin device (`dmsetup status`: "0 LEN thin MAPPED HIGHEST"). */
export async function mappedSectors(name: string): Promise<number> {
  const status = (await dmsetup(['status', name], name)).trim().split(/\s+/);
  const mapped = Number(status[3]);
  if (status[2] !== 'thin' || !Number.isFinite(mapped)) {
    throw new DmError('INTERNAL', `unexpected status of thin device ${name}: ${status.join(' ')}`, undefined);
  }
  return mapped;
}
