/**
 * Where a snapshot is mounted right now, read from /proc/self/mountinfo: so that removing
 * a snapshot that is in use can be refused with the place to unmount, instead of
 * deleting the files under a live mount.
 *
 *   overlay with an upperdir -> overlay mounts whose options name that upperdir
 *   bind                     -> mounts whose root is the same directory (device + inode)
 * A read-only overlay view uses only its parents' directories, so removing it cannot
 * harm a mount of it: it is not looked for.
 */
import { readFile, stat } from 'node:fs/promises';
import type { Mount } from './types.js';

interface MountInfoLine {
  mountpoint: string;
  /** st_dev of the mounted filesystem, as stat() reports it. */
  dev: number;
  fstype: string;
  /** Unescaped, one per option. */
  superOptions: string[];
}

/** glibc's makedev(): how stat() encodes a device number. */
function makedev(major: number, minor: number): number {
  return Number(
    ((BigInt(major) & 0xfffff000n) << 32n) |
      ((BigInt(major) & 0xfffn) << 8n) |
      ((BigInt(minor) & 0xffffff00n) << 12n) |
      (BigInt(minor) & 0xffn),
  );
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
const unescapeField = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

async function readMountInfo(): Promise<MountInfoLine[]> {
  const out: MountInfoLine[] = [];
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-');
    const [major, minor] = f[2].split(':').map(Number);
    out.push({
      mountpoint: unescapeField(f[4]),
      dev: makedev(major, minor),
      fstype: f[dash + 1],
      superOptions: (f[dash + 3] ?? '').split(',').map(unescapeField),
    });
  }
  return out;
}

/** Mount points where the storage behind `mounts` is mounted now. */
export async function mountedAt(mounts: readonly Mount[]): Promise<string[]> {
  const info = await readMountInfo();
  const found = new Set<string>();
  for (const m of mounts) {
    if (m.type === 'overlay') {
      const upper = m.options.find((o) => o.startsWith('upperdir='));
      if (!upper) continue;
      const want = 'upperdir=' + upper.slice('upperdir='.length).replace(/\\(.)/g, '$1');
      for (const l of info) {
        if (l.fstype === 'overlay' && l.superOptions.includes(want)) found.add(l.mountpoint);
      }
    } else if (m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind')) {
      const src = await stat(m.source).catch(() => undefined);
      if (!src) continue;
      for (const l of info) {
        if (l.dev !== src.dev) continue;
        const st = await stat(l.mountpoint).catch(() => undefined);
        if (st && st.dev === src.dev && st.ino === src.ino && l.mountpoint !== m.source) found.add(l.mountpoint);
      }
    }
  }
  return [...found];
}
