/**
 * Mounts containerd can perform.
 *
 * containerd (1.6, mount/mount_linux.go) mounts overlay with ONE mount(2) call, whose
 * option string the kernel cuts at a page (4095 bytes and a NUL) without a word: a long
 * `lowerdir=` silently loses its bottom layers. containerd shortens the string itself when
 * it is long (>= pagesize - 512): it takes the longest common prefix of the lowerdirs, backs
 * up to a directory, chdirs there and passes the lowerdirs relative to it. With our
 * `<root>/snapshots/overlay/<id>/fs` paths that is `<id>/fs` per layer, which stops fitting
 * somewhere past 400 layers.
 *
 * So, as Docker's overlay2 does with its `l/` directory, a stack that would not fit is
 * returned with each lower layer named by a short symbolic link,
 * `<root>/snapshots/overlay/l/<id in base 62>` -> `../<id>/fs`; after containerd's own
 * compaction that is 4-5 bytes per layer for ids below 916 million, and the kernel's
 * 500-layer limit fits in a page with room to spare. Short stacks keep their real paths. A stack whose options would
 * still not fit is refused (FAILED_PRECONDITION): never a lowerdir the kernel truncates.
 *
 * Links are made when first needed and never change (ids are never reused); a link whose
 * snapshot is gone dangles harmlessly until prune() (Cleanup) removes it.
 */
import { mkdir, readdir, readlink, stat, symlink, unlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { failedPrecondition, isErrno } from '../errors.js';
import { escapeOverlayPath, splitLowerdir, type Mount } from '../snapshot/index.js';

/** The most option bytes mount(2) keeps: one page less the terminating NUL. */
export const MOUNT_DATA_LIMIT = 4095;
const PAGE_SIZE = 4096;

// containerd's parseMountOptions table: options that are flags (never part of the data).
// "defaults" is in containerd's table with flag 0 and so ends up in the data: kept that way.
const CONTAINERD_FLAGS = new Set([
  'async', 'atime', 'bind', 'dev', 'diratime', 'dirsync', 'exec', 'mand', 'noatime', 'nodev', 'nodiratime',
  'noexec', 'nomand', 'norelatime', 'nostrictatime', 'nosuid', 'rbind', 'relatime', 'remount', 'ro', 'rw',
  'strictatime', 'suid', 'sync',
]);

/** Go's path.Dir: all but the last element, cleaned ("/a/b/" -> "/a/b", "/a/b" -> "/a"). */
function goDir(p: string): string {
  const dir = p.slice(0, p.lastIndexOf('/') + 1);
  if (dir === '') return '.';
  const clean = posix.normalize(dir);
  return clean.length > 1 && clean.endsWith('/') ? clean.slice(0, -1) : clean;
}

function longestCommonPrefix(strs: string[]): string {
  let min = strs[0];
  let max = strs[0];
  for (const s of strs) {
    if (s < min) min = s;
    if (s > max) max = s;
  }
  let i = 0;
  while (i < min.length && i < max.length && min[i] === max[i]) i++;
  return min.slice(0, i);
}

/** containerd's compactLowerdirOption: [working directory for mount(2), options]. */
export function containerdCompact(options: readonly string[]): { chdir: string; options: string[] } {
  const idx = options.findIndex((o) => o.startsWith('lowerdir='));
  if (idx < 0) return { chdir: '', options: [...options] };
  const dirs = options[idx].slice('lowerdir='.length).split(':');
  if (dirs.length === 1) return { chdir: '', options: [...options] };
  let common = longestCommonPrefix(dirs);
  if (common === '') return { chdir: '', options: [...options] };
  common = goDir(common);
  if (common === '/') return { chdir: '', options: [...options] };
  common += '/';
  const rel = dirs.map((d) => d.slice(common.length));
  const out = options.filter((_, i) => i !== idx);
  out.push(`lowerdir=${rel.join(':')}`);
  return { chdir: common, options: out };
}

/**
 * What containerd 1.6's mount.Mount hands mount(2) for an overlay with these options:
 * the working directory it mounts from ('' = its own) and the data string.
 */
export function containerdMountCall(options: readonly string[]): { chdir: string; data: string } {
  let chdir = '';
  let opts = [...options];
  const size = opts.reduce((n, o) => n + o.length, 0);
  if (size >= PAGE_SIZE - 512) ({ chdir, options: opts } = containerdCompact(opts));
  const data = opts.filter((o) => !CONTAINERD_FLAGS.has(o) && o !== 'loop').join(',');
  return { chdir, data };
}

const DIGITS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** A snapshot id (decimal) in base 62: the short link's name. */
export function shortName(id: string): string {
  let n = BigInt(id);
  let out = '';
  do {
    out = DIGITS[Number(n % 62n)] + out;
    n /= 62n;
  } while (n > 0n);
  return out;
}

/** True when containerd can mount an overlay with these options without the kernel cutting them. */
export function fitsContainerd(options: readonly string[]): boolean {
  return containerdMountCall(options).data.length <= MOUNT_DATA_LIMIT;
}

export class ContainerdMounts {
  /** `<driver root>/l`: the short links. */
  readonly linkDir: string;
  private linkDirMade = false;

  /** `layoutRoot`: the overlay driver's root, ROOT/snapshots/overlay (whose entries are `<id>/fs`). */
  constructor(private readonly layoutRoot: string) {
    this.linkDir = join(layoutRoot, 'l');
  }

  /** `mounts`, with overlay stacks too long for containerd's mount(2) rewritten to short links. */
  async adapt(mounts: readonly Mount[]): Promise<Mount[]> {
    const out: Mount[] = [];
    for (const m of mounts) out.push(m.type === 'overlay' ? await this.adaptOverlay(m) : m);
    return out;
  }

  private async adaptOverlay(m: Mount): Promise<Mount> {
    if (fitsContainerd(m.options)) return m;
    const options: string[] = [];
    let layers = 0;
    for (const o of m.options) {
      if (!o.startsWith('lowerdir=')) {
        options.push(o);
        continue;
      }
      const lowers = splitLowerdir(o.slice('lowerdir='.length));
      layers = lowers.length;
      const short: string[] = [];
      for (const l of lowers) short.push(escapeOverlayPath(await this.shortPath(l)));
      options.push(`lowerdir=${short.join(':')}`);
    }
    const { data } = containerdMountCall(options);
    if (data.length > MOUNT_DATA_LIMIT) {
      throw failedPrecondition(
        `overlay stack of ${layers} layers: its mount options take ${data.length} bytes even with short links ` +
          `under ${this.linkDir}, more than the ${MOUNT_DATA_LIMIT} mount(2) accepts; refusing rather than ` +
          'let the kernel truncate lowerdir',
      );
    }
    return { ...m, options };
  }

  /** The short link for a layer `<layoutRoot>/<id>/fs`; other paths are kept as they are. */
  private async shortPath(layer: string): Promise<string> {
    const rel = posix.relative(this.layoutRoot, layer);
    const m = /^([0-9]+)\/fs$/.exec(rel);
    if (!m) return layer;
    const id = m[1];
    const link = join(this.linkDir, shortName(id));
    const target = `../${id}/fs`;
    if (!this.linkDirMade) {
      await mkdir(this.linkDir, { recursive: true, mode: 0o700 });
      this.linkDirMade = true;
    }
    try {
      await symlink(target, link);
    } catch (e) {
      if (!isErrno(e, 'EEXIST')) throw e;
      const found = await readlink(link);
      if (found !== target) {
        throw failedPrecondition(`short link ${link} points to ${found}, expected ${target}: remove it and retry`);
      }
    }
    return link;
  }

  /** Removes links whose snapshot is gone. Returns how many. */
  async prune(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.linkDir);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return 0;
      throw e;
    }
    let n = 0;
    for (const name of names) {
      const link = join(this.linkDir, name);
      try {
        await stat(link); // follows the link: ENOENT when its snapshot is gone
      } catch (e) {
        if (!isErrno(e, 'ENOENT')) throw e;
        await unlink(link).catch((err) => (isErrno(err, 'ENOENT') ? undefined : Promise.reject(err)));
        n++;
      }
    }
    return n;
  }
}
