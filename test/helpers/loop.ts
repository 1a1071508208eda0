// A real filesystem on a loop file, for tests and benchmarks that need btrfs, ext4
// or xfs: sparse image -> mkfs -> losetup -> mount, and always the reverse.
import { execFile } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { listLoopDevices, mountAt } from './leftovers.js';
import { makeTmpDir, removeTmpDir } from './tmp.js';

const run = promisify(execFile);

export type LoopFsType = 'btrfs' | 'ext4' | 'xfs';

export interface LoopFsOptions {
  /** Where to make the scratch dir holding the image and mountpoint (default $TMPDIR). */
  parent?: string;
  /** Options for mount(8), e.g. 'noatime' or 'compress=zstd'. */
  mountOptions?: string;
  /** Extra mkfs arguments, e.g. ['-m', 'reflink=1'] for xfs. */
  mkfsArgs?: string[];
}

export interface LoopFs {
  fsType: LoopFsType;
  /** The mounted filesystem's root. */
  mountpoint: string;
  /** The /dev/loopN device it is mounted from. */
  device: string;
  /** The sparse image file backing the device. */
  image: string;
  /** Unmounts, detaches the loop device and removes the image; safe to call twice. */
  dispose(): Promise<void>;
}

// Smallest image each mkfs accepts, so a too-small request fails clearly here.
const MIN_SIZE: Record<LoopFsType, number> = {
  btrfs: 128 << 20,
  ext4: 8 << 20,
  xfs: 300 << 20,
};

const MKFS: Record<LoopFsType, string[]> = {
  btrfs: ['mkfs.btrfs', '-q', '-f'],
  ext4: ['mkfs.ext4', '-q', '-F'],
  xfs: ['mkfs.xfs', '-q', '-f'],
};

async function sh(cmd: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd[0], cmd.slice(1), { encoding: 'utf8' });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${cmd.join(' ')} failed: ${err.stderr?.trim() || err.message}`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function unmount(mountpoint: string): Promise<void> {
  // A just-closed file or a lingering reader can keep the fs busy for a moment:
  // retry, then detach lazily so the loop device can still be released.
  for (let i = 0; i < 10 && mountAt(mountpoint); i++) {
    try {
      await sh(['umount', mountpoint]);
      return;
    } catch {
      await sleep(100);
    }
  }
  if (mountAt(mountpoint)) await sh(['umount', '--lazy', mountpoint]);
}

// The kernel releases a detached loop device when its last opener closes it, which
// can be a moment after losetup returns (e.g. while btrfs drops its device).
async function waitDetached(device: string, image: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (!listLoopDevices().some((l) => l.device === device && l.backingFile === image)) return;
    await sleep(50);
  }
  throw new Error(`${device} still attached to ${image} 5 s after losetup --detach`);
}

/**
 * Makes a `sizeBytes` sparse image, formats it as `fsType`, attaches it to a free
 * loop device and mounts it. The caller must call `dispose()` (use `withLoopFs` when
 * the filesystem's life is one function call).
 */
export async function makeLoopFs(fsType: LoopFsType, sizeBytes: number, opts: LoopFsOptions = {}): Promise<LoopFs> {
  if (!(sizeBytes >= MIN_SIZE[fsType])) {
    throw new Error(`a ${fsType} loop filesystem needs at least ${MIN_SIZE[fsType]} bytes, got ${sizeBytes}`);
  }
  const dir = await makeTmpDir(`loop-${fsType}`, opts.parent);
  const image = join(dir, 'image');
  const mountpoint = join(dir, 'mnt');
  let device = '';
  let disposed = false;

  const dispose = async (): Promise<void> => {
    if (disposed) return;
    disposed = true;
    const errors: unknown[] = [];
    try {
      await unmount(mountpoint);
    } catch (e) {
      errors.push(e);
    }
    if (device) {
      try {
        // After a lazy unmount the device is still busy; -d then marks it autoclear,
        // and the kernel frees it once the last user is gone.
        await sh(['losetup', '--detach', device]);
        await waitDetached(device, image);
      } catch (e) {
        errors.push(e);
      }
    }
    try {
      await removeTmpDir(dir); // also catches anything the steps above missed
    } catch (e) {
      errors.push(e);
    }
    if (errors.length > 0) {
      throw new AggregateError(errors, `cleaning up ${fsType} loop filesystem at ${mountpoint} failed`);
    }
  };

  try {
    const fh = await open(image, 'wx');
    try {
      await fh.truncate(sizeBytes);
    } finally {
      await fh.close();
    }
    await sh([...MKFS[fsType], ...(opts.mkfsArgs ?? []), image]);
    await mkdir(mountpoint);
    // Attach explicitly (rather than mount -o loop) so we know the device and can
    // always detach it, even when the mount itself fails.
    device = (await sh(['losetup', '--find', '--show', image])).trim();
    const mountArgs = ['mount', '-t', fsType];
    if (opts.mountOptions) mountArgs.push('-o', opts.mountOptions);
    await sh([...mountArgs, device, mountpoint]);
  } catch (e) {
    await dispose().catch(() => undefined); // report the setup error, not the cleanup one
    throw e;
  }
  return { fsType, mountpoint, device, image, dispose };
}

/**
 * Runs `fn(mountpoint)` on a fresh `fsType` filesystem of `sizeBytes` on a loop file,
 * then unmounts it, detaches the loop device and deletes the image, whatever happened.
 */
export async function withLoopFs<T>(
  fsType: LoopFsType,
  sizeBytes: number,
  fn: (mountpoint: string, fs: LoopFs) => Promise<T>,
  opts: LoopFsOptions = {},
): Promise<T> {
  const fs = await makeLoopFs(fsType, sizeBytes, opts);
  let failed = false;
  try {
    return await fn(fs.mountpoint, fs);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    try {
      await fs.dispose();
    } catch (cleanupErr) {
      if (!failed) throw cleanupErr;
    }
  }
}
