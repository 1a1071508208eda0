// The overlay differ: the change of an active overlay snapshot IS its upper directory,
// so the layer is a walk of that directory alone (never of the merged tree, never of a
// lower layer), translated from overlayfs' on-disk conventions to the OCI layer's:
//
//   overlayfs upper                          OCI layer
//   char device 0/0 NAME                  -> .wh.NAME (whiteout)
//   file with xattr trusted.overlay.whiteout (kernel "xwhiteout") -> .wh.NAME
//   directory with trusted.overlay.opaque=y -> the directory, then .wh..wh..opq first
//   trusted.overlay.* xattrs               -> dropped (overlay bookkeeping)
//
// A snapshot without a parent is a plain directory (a bind mount): nothing in it is a
// whiteout then, a 0/0 device there is just a device.
//
// Overlay features that move data out of the upper dir (metacopy=on: content stays in
// the lower; redirect_dir=on: a renamed directory keeps its children below) would make
// the upper dir alone an incomplete change; tslayer's overlay mounts leave them off, and
// an upper dir that uses them is refused rather than diffed wrongly.
import { Readable } from 'node:stream';
import { TslayerError } from '../../errors.js';
import { scanDir, type ScannedEntry } from '../../native/index.js';
import type { Mount } from '../../snapshot/types.js';
import {
  byTarName,
  checkRepresentable,
  decodeName,
  entryOf,
  entryType,
  fileType,
  join,
  layerXattrs,
  opaqueEntry,
  whiteoutEntry,
  S_IFCHR,
  S_IFDIR,
  S_IFREG,
  type DiffEntry,
} from './entry.js';
import type { DiffRequest, Differ } from './types.js';
import { tarStream } from './writer.js';

export interface UpperDir {
  /** The directory holding the change. */
  dir: string;
  /** True when it is an overlay upper (whiteouts and opaque markers mean something). */
  overlay: boolean;
  /** The mount used user.overlay.* xattrs instead of trusted.overlay.*. */
  userxattr: boolean;
}

/** Where the change of an active snapshot lives, from its mounts. */
export function upperDirOf(mounts: Mount[]): UpperDir {
  if (mounts.length !== 1) {
    throw new TslayerError('INVALID_ARGUMENT', `overlay differ: expected one mount, got ${mounts.length}`);
  }
  const m = mounts[0]!;
  if (m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind')) {
    return { dir: m.source, overlay: false, userxattr: false };
  }
  if (m.type !== 'overlay') {
    throw new TslayerError('INVALID_ARGUMENT', `overlay differ: cannot diff a ${m.type} mount of ${m.source}`);
  }
  const upper = m.options.find((o) => o.startsWith('upperdir='));
  if (!upper) {
    throw new TslayerError('FAILED_PRECONDITION', 'overlay differ: the mount has no upperdir (a read-only view has no change)');
  }
  for (const o of m.options) {
    if (/^(metacopy|redirect_dir)=on$/.test(o)) {
      throw new TslayerError('NOT_IMPLEMENTED', `overlay differ: mounts with ${o} are not supported`);
    }
  }
  // Option values escape '\\', ':' and ',' with a backslash (src/snapshot/mount.ts escapeOverlayPath).
  const dir = upper.slice('upperdir='.length).replace(/\\(.)/g, '$1');
  return { dir, overlay: true, userxattr: m.options.includes('userxattr') };
}

export class OverlayDiffer implements Differ {
  readonly kind = 'overlay' as const;
  readonly needsParentView = false;

  diff(req: DiffRequest): Readable {
    return tarStream(walkUpper(upperDirOf(req.upper)), req.stats);
  }
}

/** Every entry of the change, in layer order. */
export async function* walkUpper(upper: UpperDir): AsyncGenerator<DiffEntry> {
  yield* walkDir(upper, upper.dir, '');
}

interface Item {
  out: string;
  entry: DiffEntry;
  /** Set for directories: absolute path to recurse into, and whether it is opaque. */
  dir?: { abs: string; opaque: boolean };
}

async function* walkDir(upper: UpperDir, abs: string, rel: string): AsyncGenerator<DiffEntry> {
  const items: Item[] = [];
  for (const e of await scanDir(abs)) {
    const name = decodeName(e.name, abs);
    const childAbs = `${abs}/${name}`;
    const childRel = join(rel, name);
    checkOverlayFeatures(upper, e, childAbs);
    if (upper.overlay && isWhiteout(upper, e)) {
      items.push({ out: `.wh.${name}`, entry: whiteoutEntry(rel, name) });
      continue;
    }
    const type = entryType(e);
    if (type === undefined) continue; // sockets: a tar cannot hold them (containerd skips them too)
    checkRepresentable(childRel, name, upper.dir);
    const entry = entryOf(childRel, childAbs, e, type, layerXattrs(e.xattrs, upper.userxattr));
    const item: Item = { out: name, entry };
    if (type === 'directory') item.dir = { abs: childAbs, opaque: upper.overlay && isOpaque(upper, e) };
    items.push(item);
  }
  for (const item of byTarName(items)) {
    yield item.entry;
    if (!item.dir) continue;
    const childRel = item.entry.header.name.slice(0, -1);
    if (item.dir.opaque) yield opaqueEntry(childRel);
    yield* walkDir(upper, item.dir.abs, childRel);
  }
}

function overlayXattr(upper: UpperDir, e: ScannedEntry, name: string): Buffer | undefined {
  const key = `${upper.userxattr ? 'user' : 'trusted'}.overlay.${name}`;
  return e.xattrs?.find(([k]) => k === key)?.[1];
}

function isWhiteout(upper: UpperDir, e: ScannedEntry): boolean {
  const t = fileType(e.mode);
  if (t === S_IFCHR) return e.rdevMajor === 0 && e.rdevMinor === 0;
  return t === S_IFREG && e.size === 0 && overlayXattr(upper, e, 'whiteout') !== undefined;
}

function isOpaque(upper: UpperDir, e: ScannedEntry): boolean {
  return fileType(e.mode) === S_IFDIR && overlayXattr(upper, e, 'opaque')?.toString() === 'y';
}

function checkOverlayFeatures(upper: UpperDir, e: ScannedEntry, abs: string): void {
  if (!upper.overlay) return;
  for (const feature of ['metacopy', 'redirect']) {
    if (overlayXattr(upper, e, feature) !== undefined) {
      throw new TslayerError(
        'NOT_IMPLEMENTED',
        `${abs}: overlay ${feature} entries (metacopy=on / redirect_dir=on mounts) cannot be diffed from the upper directory alone`,
      );
    }
  }
}
