/**
 * Is the btrfs driver's root on btrfs? Checked once when the driver is made, so that
 * `--driver btrfs` on ext4 fails at once with what was found and what to do, rather than
 * with ENOTTY from the first snapshot ioctl.
 */
import { existsSync, readFileSync, realpathSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { failedPrecondition } from '../../errors.js';

export const BTRFS_SUPER_MAGIC = 0x9123683e;

/** statfs f_type values of filesystems a store root is likely to be on, for the message. */
const MAGIC_NAMES: Record<number, string> = {
  0xef53: 'ext2/ext3/ext4',
  0x58465342: 'xfs',
  0x01021994: 'tmpfs',
  0x794c7630: 'overlay',
  0x9123683e: 'btrfs',
  0x2fc12fc1: 'zfs',
  0x6969: 'nfs',
  0xf15f: 'ecryptfs',
  0x65735546: 'fuse',
  0x73717368: 'squashfs',
  0xe0f5e1e2: 'erofs',
  0xf2f52010: 'f2fs',
};

/** The deepest existing directory at or above `path` (the driver root may not exist yet). */
function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

/** The mount that holds `path`, from /proc/self/mountinfo (the last, i.e. topmost, of the longest prefix). */
function mountOf(path: string): MountEntry | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  let best: MountEntry | undefined;
  for (const line of text.split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const mountpoint = unescape(line.slice(0, dash).split(' ')[4] ?? '');
    const [fstype = '', source = ''] = line.slice(dash + 3).split(' ');
    const inside = mountpoint === '/' || path === mountpoint || path.startsWith(`${mountpoint}/`);
    if (inside && (!best || mountpoint.length >= best.mountpoint.length)) best = { mountpoint, fstype, source: unescape(source) };
  }
  return best;
}

/**
 * Throws FAILED_PRECONDITION unless `root` is (or would be created) on btrfs. The message
 * names the filesystem found and how to get a btrfs there.
 */
export function requireBtrfs(root: string): void {
  const at = existingAncestor(root);
  const type = statfsSync(at).type;
  if (type === BTRFS_SUPER_MAGIC) return;
  const m = mountOf(realpathSync(at));
  const found = m
    ? `${m.fstype} (${m.source} mounted at ${m.mountpoint})`
    : (MAGIC_NAMES[type] ?? `a filesystem with statfs type 0x${type.toString(16)}`);
  throw failedPrecondition(
    `snapshot driver btrfs needs ${root} on a btrfs filesystem, but it is on ${found}. ` +
      `Make one and mount it there (or use --root on a btrfs mount): ` +
      `on a spare device, \`mkfs.btrfs /dev/DEVICE && mount /dev/DEVICE ${root}\`; ` +
      `or on a loop file, \`truncate -s 20G /var/lib/tslayer-btrfs.img && mkfs.btrfs /var/lib/tslayer-btrfs.img && ` +
      `mkdir -p ${root} && mount -o loop /var/lib/tslayer-btrfs.img ${root}\`. ` +
      `Or pick another driver: --driver overlay (any filesystem with overlayfs) or native (any filesystem).`,
  );
}
