/**
 * Layer apply: writes one uncompressed layer tar into a snapshot directory, with the
 * semantics of the OCI image spec (the result equals applying the layers in order to one
 * directory, as umoci does), confined to that directory whatever the tar says.
 *
 * The tar is parsed here (tar-parse.ts), encoded in batches (apply-batch.ts) and applied
 * by the native applier (native/apply*.cc), which resolves every path against the merged
 * view of the layers with openat2 and *at() calls. One batch is in flight while the next
 * is parsed, so parsing and disk work overlap.
 *
 * The rules, per case (each has a fixture in fixtures/layer-corpus.mjs):
 *  - names are cleaned lexically like umoci/containerd: "../x", "/x" and "a/../../x" are
 *    applied as "x" inside the root. An entry naming the root itself may only be a
 *    directory (its metadata is applied to the root); anything else is UNSAFE_ENTRY.
 *  - symlinks are created verbatim (their target is data), but when a later entry's path
 *    goes through one (of this layer or a lower one) it is followed inside the root: an
 *    absolute target and ".." at the top mean the root (RESOLVE_IN_ROOT). More than 40
 *    links in one path is UNSAFE_ENTRY. A ".." after a non-directory in a link target is
 *    ENOTDIR as for the kernel (umoci's securejoin would take it lexically).
 *  - implied parent directories: created 0755 root-owned when no layer has them; when a
 *    lower layer has them (overlay mode) they are copied up with their mode, owner, xattrs
 *    and times (/tmp stays 1777).
 *  - a parent that exists as a non-directory: INVALID_ARGUMENT.
 *  - duplicate entries: the last one wins; a directory entry over a directory keeps the
 *    contents and replaces mode, owner, xattrs and times.
 *  - hardlinks: the target is resolved like a name but a ".." climbing above the root is
 *    UNSAFE_ENTRY (as containerd); a missing target, a directory, or the entry's own path
 *    (or one below it, which replacing the entry would remove) is INVALID_ARGUMENT; a
 *    target only a lower layer has is copied up and linked to.
 *  - whiteouts (".wh.NAME") and opaque markers (".wh..wh..opq") hide what the layers below
 *    have (including what overlay mode copied up from them), never what this layer writes
 *    (in any order; umoci's rule), and create no directories when
 *    there is nothing to hide. ".wh.", ".wh.." and ".wh..." (naming nothing, the directory
 *    itself or its parent) are UNSAFE_ENTRY. Other ".wh..wh.*" names (AUFS bookkeeping)
 *    are skipped.
 *      overlay: a char 0/0 device at NAME (or the opaque xattr when NAME is a directory
 *               this layer wrote); the opaque xattr on the directory for ".wh..wh..opq"
 *               (at the root, where overlayfs ignores it: a whiteout per lower name).
 *      remove:  deleted for real, except what this layer wrote (umoci's rule).
 *  - xattrs (SCHILY.xattr.*, values as raw bytes): trusted.overlay.* (and user.overlay.*
 *    on a rootless store) are never applied; security.selinux and system.nfs4_acl are
 *    skipped as umoci skips them.
 *  - directory times are set at the end, after their children; a directory this layer
 *    only wrote into keeps its previous times.
 * Known limit (overlay mode): a char 0/0 device in a tar is indistinguishable from a
 * whiteout in an overlay upper dir, so it hides the lower file instead of showing a device.
 */
import type { Readable } from 'node:stream';
import { getSystemErrorName } from 'node:util';
import { TslayerError, invalidArgument } from '../errors.js';
import { openApplier, type ApplyFailure, type SysCallError } from '../native/index.js';
import { Batcher, type Batch } from './apply-batch.js';
import { TarParser } from './tar-parse.js';

export interface ApplyOptions {
  /** 'overlay': dir is the layer's own upper dir; lowers are the layer dirs below it, top-first; whiteouts become char 0/0,
   *  opaque dirs get trusted.overlay.opaque=y; paths are resolved against the merged view of dir+lowers.
   *  'remove': dir already holds the full parent tree (native/btrfs/devmapper); whiteouts delete for real, opaque empties the dir. */
  mode: 'overlay' | 'remove';
  lowers?: string[];
  /** For error messages: the layer digest (or a name). */
  layer?: string;
  /** rootless stores: also refuse user.overlay.* xattrs (and mark opaque dirs with user.overlay.opaque) */
  rootless?: boolean;
}

/** entries: tar entries applied (headers, not counting PAX/GNU extension records); bytes: uncompressed tar bytes read. */
export interface ApplyResult {
  entries: number;
  bytes: number;
}

/** Largest slice of input parsed before the filled batches are handed over (bounds memory). */
const SLICE = 1 << 20;

export async function applyLayer(tar: Readable, dir: string, opts: ApplyOptions): Promise<ApplyResult> {
  const label = opts.layer ?? dir;
  if (opts.mode === 'remove' && opts.lowers && opts.lowers.length > 0) {
    throw invalidArgument(`layer ${label}: 'remove' mode takes no lower layers`);
  }
  const applier = await openApplier(dir, opts.mode === 'overlay' ? (opts.lowers ?? []) : [], {
    overlay: opts.mode === 'overlay',
    rootless: opts.rootless ?? false,
  });
  const batcher = new Batcher();
  const parser = new TarParser(batcher, label);
  let inflight: Promise<void> | undefined;
  let failed: Error | undefined;

  // One batch runs natively while the next one is parsed. Never more: a failure must stop
  // the parsing, and the batches must apply in order.
  const submit = async (b: Batch): Promise<void> => {
    if (inflight) await inflight;
    if (failed) throw failed;
    inflight = applier.run(b.buf, b.length).then(
      (f) => {
        if (f) failed ??= toError(f, label, dir);
        else batcher.recycle(b);
      },
      (e: Error) => {
        failed ??= e;
      },
    );
  };
  const drain = async (): Promise<void> => {
    while (batcher.ready.length > 0) await submit(batcher.ready.shift()!);
  };

  try {
    for await (const chunk of tar as AsyncIterable<Buffer>) {
      for (let off = 0; off < chunk.length; off += SLICE) {
        parser.write(chunk.length <= SLICE ? chunk : chunk.subarray(off, off + SLICE));
        await drain();
      }
    }
    parser.end();
    batcher.rotate();
    await drain();
    if (inflight) await inflight;
    if (failed) throw failed;
    const f = await applier.finish();
    if (f) throw toError(f, label, dir);
    return { entries: parser.entries, bytes: parser.bytes };
  } finally {
    if (inflight) await inflight;
    applier.close();
  }
}

function toError(f: ApplyFailure, label: string, dir: string): Error {
  const where = f.entry.length > 0 ? `layer ${label}: entry "${f.entry.toString('utf8')}"` : `layer ${label}`;
  if (f.kind === 'unsafe') return new TslayerError('UNSAFE_ENTRY', `${where}: ${f.message}`);
  if (f.kind === 'invalid') return new TslayerError('INVALID_ARGUMENT', `${where}: ${f.message}`);
  // A syscall failed (ENOSPC, EIO, EPERM on a device in a user namespace...): an fs-shaped
  // error, so callers can test its code like any other.
  const code = getSystemErrorName(-f.errno);
  const path = f.path.length > 0 ? `${dir}/${f.path.toString('utf8')}` : dir;
  const e = new Error(`${where}: ${code}: ${f.syscall} '${path}'`) as SysCallError;
  e.code = code;
  e.errno = -f.errno;
  e.syscall = f.syscall;
  e.path = path;
  return e;
}

