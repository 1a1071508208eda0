/**
 * Activating and deactivating thin devices, and what is active now.
 *
 * What is active is read from sysfs (/sys/block/dm-N/dm/name), not from `dmsetup ls`:
 * no process to start, which matters where every exec is slow (user-mode Linux). A thin
 * device is activated with an explicit table, `0 SECTORS thin POOL_MAJ:MIN THIN_ID`, so
 * activation needs nothing but the recorded id and size (it works the same after a
 * reboot); /dev/mapper/NAME is made by `dmsetup mknodes` where no udev made it.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
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

export async function isActive(name: string): Promise<boolean> {
  return (await activeDevices()).has(name);
}

/** The table line of a thin device (what `dmsetup table` prints back, less the name). */
export const thinTable = (sectors: number, poolDevno: string, thinId: number): string => `0 ${sectors} thin ${poolDevno} ${thinId}`;

/**
 * Makes `name` active with `table` (read-only if asked) unless it is already; an active
 * device of that name must have exactly that table, or it is not the one we mean (a
 * device left by a store that was deleted without removing its snapshots) and we refuse
 * to touch it.
 */
export async function activate(name: string, table: string, readonly: boolean): Promise<void> {
  if (!(await isActive(name))) {
    try {
      await dmsetup(['create', name, ...(readonly ? ['--readonly'] : []), '--table', table], name);
    } catch (e) {
      if (!isDmErrno(e, 'EEXIST')) throw e; // else: another process activated it meanwhile
      await checkTable(name, table);
    }
  } else {
    await checkTable(name, table);
  }
  if (!existsSync(devicePath(name))) await dmsetup(['mknodes', name], name);
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
  for (let attempt = 0; ; attempt++) {
    if (!(await isActive(name))) return;
    try {
      await dmsetup(['remove', ...(opts.deferred ? ['--deferred'] : []), name], name);
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
