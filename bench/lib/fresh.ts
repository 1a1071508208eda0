// Every timed trial runs on a filesystem made for it: the root fs here is ext4 without a
// journal, where creating files is several times slower for minutes after a big delete
// (shared/MACHINE.md). A fresh loop filesystem also puts every tool on the same kind of
// device: a sparse file on the same disk, behind a loop device.
import { makeLoopFs, type LoopFs, type LoopFsType } from '../../test/helpers/loop.js';

export type { LoopFs, LoopFsType };

export const GiB = 2 ** 30;

/** Runs `fn` on a freshly made, mounted `type` filesystem (journaled ext4, or btrfs) of `size` bytes; always removes it. */
export async function withFreshFs<T>(type: LoopFsType, size: number, fn: (fs: LoopFs) => Promise<T>): Promise<T> {
  const fs = await makeLoopFs(type, size);
  let failed = false;
  try {
    return await fn(fs);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    try {
      await fs.dispose();
    } catch (cleanupErr) {
      if (!failed) throw cleanupErr; // keep the trial's own error when both fail
    }
  }
}
