/**
 * Applies a layer tar to an active snapshot given as its mounts, as containerd's applier
 * does: without mounting when the mounts say where the files go.
 *
 *   one overlay mount  -> unpack into its upperdir, the layers below (lowerdir, top first)
 *                         consulted for what the tar changes (mode 'overlay': whiteouts as
 *                         overlay writes them)
 *   one bind mount     -> unpack into its source directory (mode 'remove': deletions done)
 *   anything else      -> (a block device, several mounts) mount it on a temporary
 *                         directory under the store's tmp, unpack there, unmount
 */
import { mkdtemp, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from '../archive/apply.js';
import { failedPrecondition } from '../errors.js';
import { mountAll, splitLowerdir, unmountAll } from './mount.js';
import type { Mount } from './types.js';

export interface ApplyToMountsOptions {
  /** Scratch directory for the mount fallback (the store's tmp: Store.tmpDir). */
  tmpDir: string;
  /** Names the layer in errors (its digest). */
  layer?: string;
}

export async function applyToMounts(
  tar: Readable,
  mounts: readonly Mount[],
  opts: ApplyToMountsOptions,
): Promise<{ entries: number; bytes: number }> {
  if (mounts.length === 1) {
    const m = mounts[0];
    if (m.options.includes('ro')) throw failedPrecondition(`cannot apply layer ${opts.layer ?? ''} to a read-only mount of ${m.source}`);
    if (m.type === 'overlay') {
      const upper = option(m, 'upperdir');
      if (upper === undefined) {
        throw failedPrecondition(`cannot apply layer ${opts.layer ?? ''}: overlay mount has no upperdir (a view)`);
      }
      const lowerdir = option(m, 'lowerdir');
      return applyLayer(tar, unescape(upper), { mode: 'overlay', lowers: lowerdir ? splitLowerdir(lowerdir) : [], layer: opts.layer });
    }
    if (m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind')) {
      return applyLayer(tar, m.source, { mode: 'remove', layer: opts.layer });
    }
  }
  const dir = await mkdtemp(join(opts.tmpDir, 'apply-'));
  try {
    await mountAll(mounts, dir);
    try {
      return await applyLayer(tar, dir, { mode: 'remove', layer: opts.layer });
    } finally {
      await unmountAll(dir);
    }
  } finally {
    await rmdir(dir).catch(() => undefined);
  }
}

function option(m: Mount, key: string): string | undefined {
  const prefix = `${key}=`;
  const o = m.options.find((x) => x.startsWith(prefix));
  return o === undefined ? undefined : o.slice(prefix.length);
}

function unescape(p: string): string {
  return p.replace(/\\(.)/g, '$1');
}
