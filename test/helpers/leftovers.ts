// What the kernel still holds under a directory (mounts, loop devices), read from
// /proc and /sys, so tests can prove they cleaned up and a last-resort cleanup
// can undo what a crashed test left behind.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

export interface LoopEntry {
  device: string; // /dev/loopN
  backingFile: string;
}

// mountinfo escapes space, tab, newline and backslash as \ooo (octal).
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Every mount in this process's mount namespace, in mount order. */
export function listMounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    // "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    out.push({ mountpoint: unescape(fields[4]), fstype: fields[dash + 1], source: unescape(fields[dash + 2]) });
  }
  return out;
}

/** True when `p` is `dir` itself or lies below it. */
export function isUnder(p: string, dir: string): boolean {
  const d = resolve(dir);
  return p === d || p.startsWith(d.endsWith(sep) ? d : d + sep);
}

/** Mounts at or below `dir`, most recently stacked first: the order to unmount them in. */
export function mountsUnder(dir: string): MountEntry[] {
  return listMounts()
    .filter((m) => isUnder(m.mountpoint, dir))
    .reverse();
}

/** The topmost mount at exactly `path`, if any. */
export function mountAt(path: string): MountEntry | undefined {
  const p = resolve(path);
  return mountsUnder(p).find((m) => m.mountpoint === p);
}

/** Every attached loop device and its backing file (as `losetup -a` shows them). */
export function listLoopDevices(): LoopEntry[] {
  const out: LoopEntry[] = [];
  for (const name of readdirSync('/sys/block')) {
    if (!name.startsWith('loop')) continue;
    let backing: string;
    try {
      backing = readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim();
    } catch {
      continue; // not attached
    }
    out.push({ device: `/dev/${name}`, backingFile: backing.replace(/ \(deleted\)$/, '') });
  }
  return out;
}

/** Loop devices whose backing file lies under `dir`. */
export function loopDevicesUnder(dir: string): LoopEntry[] {
  return listLoopDevices().filter((l) => isUnder(l.backingFile, dir));
}

export interface Leftovers {
  mounts: MountEntry[];
  loops: LoopEntry[];
}

export function findLeftovers(dir: string): Leftovers {
  return { mounts: mountsUnder(dir), loops: loopDevicesUnder(dir) };
}

export function describeLeftovers(l: Leftovers): string {
  return [
    ...l.mounts.map((m) => `mounted: ${m.mountpoint} (${m.fstype} ${m.source})`),
    ...l.loops.map((d) => `loop device: ${d.device} -> ${d.backingFile}`),
  ].join('; ');
}

/**
 * Last resort: lazily unmounts everything under `dir` and detaches its loop devices.
 * Uses the umount/losetup binaries, not the addon, so it works even when the addon is broken.
 * Returns what it found.
 */
export function forceCleanup(dir: string): Leftovers {
  const found = findLeftovers(dir);
  for (const m of found.mounts) {
    try {
      execFileSync('umount', ['--lazy', m.mountpoint], { stdio: 'ignore' });
    } catch {
      // already gone, or covered by one we unmounted first
    }
  }
  // Detach the devices found before unmounting: once a mount is lazily detached, the
  // backing file's path no longer shows as under `dir`.
  const devices = new Set([...found.loops, ...loopDevicesUnder(dir)].map((l) => l.device));
  for (const device of devices) {
    try {
      execFileSync('losetup', ['--detach', device], { stdio: 'ignore' });
    } catch {
      // detached meanwhile
    }
  }
  return found;
}
