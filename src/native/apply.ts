// The native layer applier (native/apply*.cc), typed. One instance applies one layer: the
// archive code feeds it batches of encoded tar entries (src/archive/apply-batch.ts), each
// batch one trip to the thread pool.
import { closeSync } from 'node:fs';
import { binding } from './binding.js';
import { AT_FDCWD, O, openat2 } from './fsops.js';

/** Why the applier stopped: 'unsafe' and 'invalid' are the layer's fault, 'sys' a failed syscall. */
export interface ApplyFailure {
  kind: 'unsafe' | 'invalid' | 'sys';
  /** The entry's name as the tar has it (bytes). */
  entry: Buffer;
  message: string;
  /** errno (positive) for 'sys'. */
  errno: number;
  syscall: string;
  /** For 'sys': the path inside the target dir the syscall was about (bytes). */
  path: Buffer;
}

interface RawApplier {
  run(batch: Buffer, length: number): Promise<ApplyFailure | null>;
  finish(): Promise<ApplyFailure | null>;
  close(): void;
}

type RawApplierClass = new (rootFd: number, lowerFds: number[], overlay: boolean, rootless: boolean) => RawApplier;

const Applier = (binding as unknown as { Applier: RawApplierClass }).Applier;

export interface NativeApplier {
  /** Applies `batch[0, length)`; null when done, else why it stopped (the applier is then unusable). */
  run(batch: Buffer, length: number): Promise<ApplyFailure | null>;
  /** Sets the deferred directory times. Once, after the last batch. */
  finish(): Promise<ApplyFailure | null>;
  /** Closes the directory fds. Not while a run/finish is pending. */
  close(): void;
}

export interface OpenApplierOptions {
  /** Whiteouts as overlayfs writes them, resolution through `lowers` (see src/archive/apply.ts). */
  overlay: boolean;
  /** Opaque marker user.overlay.opaque, refuse user.overlay.* xattrs, tolerate EPERM on chown/xattrs. */
  rootless: boolean;
}

/** Opens `dir` and the lower layer dirs (top first) and makes an applier over them. */
export async function openApplier(dir: string, lowers: readonly string[], opts: OpenApplierOptions): Promise<NativeApplier> {
  const fds: number[] = [];
  try {
    for (const p of [dir, ...lowers]) {
      fds.push(await openat2(AT_FDCWD, p, { flags: O.PATH | O.DIRECTORY | O.CLOEXEC }));
    }
    return new Applier(fds[0]!, fds.slice(1), opts.overlay, opts.rootless);
  } catch (e) {
    for (const fd of fds) closeSync(fd);
    throw e;
  }
}
