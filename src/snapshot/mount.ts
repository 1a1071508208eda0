/**
 * Mounting is the caller's act: a snapshotter returns Mount data, these functions turn
 * it into mounts (containerd's mount.All / mount.UnmountAll).
 *
 * Overlay goes through the new mount API (fsopen/fsconfig/fsmount/move_mount) with one
 * `lowerdir+` call per layer (Linux >= 6.8): no page-size limit on the option string, so
 * any stack the kernel accepts (up to 500 layers) mounts. Where the kernel lacks
 * `lowerdir+`, mount(2) is used if the option string fits in a page, first with absolute
 * paths, then with paths relative to the layers' common directory. A stack that fits
 * neither way is an error: a layer stack is never mounted truncated.
 */
import { closeSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import { TslayerError, failedPrecondition, invalidArgument, isErrno } from '../errors.js';
import {
  MNT,
  MOUNT_ATTR,
  MS,
  fsconfigCreate,
  fsconfigSetFlag,
  fsconfigSetString,
  fsmount,
  fsopen,
  mount,
  moveMountFd,
  umount,
} from '../native/index.js';
import type { Mount } from './types.js';

/** mount(2) takes one page of option data, NUL included. */
const PAGE_LIMIT = 4095;

export interface MountOptions {
  /** 'auto' (default): new API with lowerdir+ where the kernel has it. 'legacy': mount(2) only (tests). */
  overlayApi?: 'auto' | 'legacy';
}

/** Mounts every entry of `mounts` on `target`, in order (each stacks on the previous). */
export async function mountAll(mounts: readonly Mount[], target: string, opts: MountOptions = {}): Promise<void> {
  if (mounts.length === 0) throw invalidArgument(`nothing to mount at ${target}`);
  let done = 0;
  try {
    for (const m of mounts) {
      await mountOne(m, target, opts);
      done++;
    }
  } catch (e) {
    for (; done > 0; done--) await umount(target, MNT.DETACH).catch(() => undefined);
    throw e;
  }
}

/**
 * Unmounts everything stacked at `target` (until it is no mount point any more).
 * Returns how many mounts were taken off: 0 when nothing was mounted there.
 */
export async function unmountAll(target: string, opts: { detach?: boolean } = {}): Promise<number> {
  let n = 0;
  for (;;) {
    try {
      await unmountRetrying(target, opts.detach ? MNT.DETACH : 0);
      n++;
    } catch (e) {
      if (isErrno(e, 'EINVAL') || isErrno(e, 'ENOENT')) return n; // not (or no longer) a mount point
      throw e;
    }
  }
}

async function unmountRetrying(target: string, flags: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await umount(target, flags);
    } catch (e) {
      // A process that just closed a file there may still be on its way out.
      if (!isErrno(e, 'EBUSY') || attempt >= 20) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

// ---- options ---------------------------------------------------------------------------

const FLAGS: Record<string, { set?: number; clear?: number }> = {
  ro: { set: MS.RDONLY },
  rw: { clear: MS.RDONLY },
  bind: { set: MS.BIND },
  rbind: { set: MS.BIND | MS.REC },
  nosuid: { set: MS.NOSUID },
  suid: { clear: MS.NOSUID },
  nodev: { set: MS.NODEV },
  dev: { clear: MS.NODEV },
  noexec: { set: MS.NOEXEC },
  exec: { clear: MS.NOEXEC },
  remount: { set: MS.REMOUNT },
  defaults: {},
};
const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
};

interface Parsed {
  flags: number;
  propagation: number;
  data: string[];
}

function parseOptions(options: readonly string[]): Parsed {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = FLAGS[o];
    if (f) flags = (flags | (f.set ?? 0)) & ~(f.clear ?? 0);
    else if (o in PROPAGATION) propagation = PROPAGATION[o];
    else data.push(o);
  }
  return { flags, propagation, data };
}

async function mountOne(m: Mount, target: string, opts: MountOptions): Promise<void> {
  const p = parseOptions(m.options);
  if (m.type === 'overlay') await mountOverlay(m, p, target, opts);
  else if (m.type === 'bind' || p.flags & MS.BIND) await mountBind(m, p, target);
  else await mount(m.source, target, m.type, p.flags, p.data.length ? p.data.join(',') : null);
  if (p.propagation) await mount('', target, '', p.propagation);
}

async function mountBind(m: Mount, p: Parsed, target: string): Promise<void> {
  const bindFlags = MS.BIND | (p.flags & MS.REC);
  await mount(m.source, target, 'none', bindFlags);
  // The kernel ignores ro/nosuid/... on the bind itself: they take a remount.
  const extra = p.flags & (MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
  if (extra) {
    try {
      await mount('', target, 'none', MS.REMOUNT | MS.BIND | extra);
    } catch (e) {
      await umount(target, MNT.DETACH).catch(() => undefined);
      throw e;
    }
  }
}

// ---- overlay ---------------------------------------------------------------------------

/** Escapes a path for an overlay option value (':' separates lowerdirs, ',' options). */
export function escapeOverlayPath(p: string): string {
  return p.replace(/[\\:,]/g, '\\$&');
}

function unescapePath(p: string): string {
  return p.replace(/\\(.)/g, '$1');
}

/** Splits a lowerdir value on unescaped ':' (top layer first). */
export function splitLowerdir(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) cur += c + value[++i];
    else if (c === ':') {
      out.push(unescapePath(cur));
      cur = '';
    } else cur += c;
  }
  out.push(unescapePath(cur));
  return out.filter((s) => s !== '');
}

interface OverlaySpec {
  lowers: string[];
  upper?: string;
  work?: string;
  /** Other options: [key, value] or [flag]. */
  rest: Array<[string, string?]>;
  readonly: boolean;
}

function overlaySpec(m: Mount, p: Parsed): OverlaySpec {
  const spec: OverlaySpec = { lowers: [], rest: [], readonly: (p.flags & MS.RDONLY) !== 0 };
  for (const o of p.data) {
    const eq = o.indexOf('=');
    const key = eq < 0 ? o : o.slice(0, eq);
    const value = eq < 0 ? undefined : o.slice(eq + 1);
    if (key === 'lowerdir') spec.lowers.push(...splitLowerdir(value ?? ''));
    else if (key === 'lowerdir+') spec.lowers.push(unescapePath(value ?? ''));
    else if (key === 'upperdir') spec.upper = unescapePath(value ?? '');
    else if (key === 'workdir') spec.work = unescapePath(value ?? '');
    else spec.rest.push(value === undefined ? [key] : [key, value]);
  }
  if (spec.lowers.length === 0) throw invalidArgument(`overlay mount for ${m.source}: no lowerdir`);
  return spec;
}

/** Whether this kernel takes overlay's lowerdir+ (learned on first use). */
let lowerdirPlus: boolean | undefined;

async function mountOverlay(m: Mount, p: Parsed, target: string, opts: MountOptions): Promise<void> {
  const spec = overlaySpec(m, p);
  if ((opts.overlayApi ?? 'auto') === 'auto' && lowerdirPlus !== false) {
    const r = await mountOverlayNewApi(spec, target);
    if (r === 'mounted') return;
    lowerdirPlus = false;
  }
  await mountOverlayLegacy(spec, p, target);
}

async function mountOverlayNewApi(spec: OverlaySpec, target: string): Promise<'mounted' | 'unsupported'> {
  let fd: number;
  try {
    fd = fsopen('overlay');
  } catch (e) {
    if (isErrno(e, 'ENOSYS')) return 'unsupported';
    throw e;
  }
  let mfd = -1;
  try {
    await fsconfigSetString(fd, 'source', 'overlay');
    for (let i = 0; i < spec.lowers.length; i++) {
      try {
        await fsconfigSetString(fd, 'lowerdir+', spec.lowers[i]);
      } catch (e) {
        if (i === 0 && lowerdirPlus === undefined && isErrno(e, 'EINVAL')) return 'unsupported';
        throw overlayError(e, spec, `layer ${i + 1} of ${spec.lowers.length} (${spec.lowers[i]})`);
      }
    }
    lowerdirPlus = true;
    if (spec.upper !== undefined) await fsconfigSetString(fd, 'upperdir', spec.upper);
    if (spec.work !== undefined) await fsconfigSetString(fd, 'workdir', spec.work);
    for (const [k, v] of spec.rest) {
      if (v === undefined) await fsconfigSetFlag(fd, k);
      else await fsconfigSetString(fd, k, v);
    }
    try {
      await fsconfigCreate(fd);
    } catch (e) {
      throw overlayError(e, spec, 'creating the overlay');
    }
    mfd = await fsmount(fd, spec.readonly ? MOUNT_ATTR.RDONLY : 0);
    await moveMountFd(mfd, target);
    return 'mounted';
  } finally {
    closeSync(fd);
    if (mfd >= 0) closeSync(mfd);
  }
}

function overlayError(e: unknown, spec: OverlaySpec, what: string): Error {
  return new TslayerError(
    'FAILED_PRECONDITION',
    `overlay mount of ${spec.lowers.length} layers failed at ${what}: ${(e as Error).message}` +
      (spec.lowers.length > 500 ? ' (overlayfs takes at most 500 lower layers)' : ''),
    { cause: e },
  );
}

async function mountOverlayLegacy(spec: OverlaySpec, p: Parsed, target: string): Promise<void> {
  const data = (paths: (s: string) => string) =>
    [
      ...spec.rest.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)),
      ...(spec.work !== undefined ? [`workdir=${escapeOverlayPath(paths(spec.work))}`] : []),
      ...(spec.upper !== undefined ? [`upperdir=${escapeOverlayPath(paths(spec.upper))}`] : []),
      `lowerdir=${spec.lowers.map((l) => escapeOverlayPath(paths(l))).join(':')}`,
    ].join(',');
  const flags = p.flags & ~(MS.BIND | MS.REC);

  const absolute = data((s) => s);
  if (absolute.length <= PAGE_LIMIT) {
    await mount('overlay', target, 'overlay', flags, absolute);
    return;
  }
  // Relative to the layers' common directory the string is much shorter (a 64-hex-digit
  // store path shrinks to "<id>/fs"). The kernel resolves the paths against the process's
  // working directory, so it is changed for the duration of the call.
  const all = [...spec.lowers, ...(spec.upper ? [spec.upper] : []), ...(spec.work ? [spec.work] : [])];
  const base = commonDir(all);
  const rel = data((s) => relative(base, s) || '.');
  if (rel.length > PAGE_LIMIT) {
    throw failedPrecondition(
      `cannot mount ${spec.lowers.length} layers at ${target}: this kernel lacks overlay's lowerdir+ (Linux >= 6.8) ` +
        `and the option string (${rel.length} bytes even with relative paths) exceeds mount(2)'s ${PAGE_LIMIT}; ` +
        'refusing to mount the stack truncated',
    );
  }
  const absTarget = resolve(target);
  // The working directory is the process's: one such mount at a time (and relative paths
  // elsewhere in the process would resolve against `base` meanwhile; tslayer uses none).
  const run = chdirLock.then(async () => {
    const cwd = process.cwd();
    process.chdir(base);
    try {
      await mount('overlay', absTarget, 'overlay', flags, rel);
    } finally {
      process.chdir(cwd);
    }
  });
  chdirLock = run.catch(() => undefined);
  await run;
}

let chdirLock: Promise<unknown> = Promise.resolve();

function commonDir(paths: string[]): string {
  let base = dirname(resolve(paths[0]));
  for (const p of paths) {
    const abs = resolve(p);
    while (base !== sep && !abs.startsWith(base.endsWith(sep) ? base : base + sep)) base = dirname(base);
  }
  return base;
}
