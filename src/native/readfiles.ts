// readFiles: the content of many small files in one native call (see native/readfiles.cc).
import { binding } from './binding.js';
import { sysError } from './errno.js';

/**
 * The first `sizes[i]` bytes of each `paths[i]`, concatenated in order, read off the main
 * thread in one job. A file shorter than its size fails with ENODATA naming it; symlinks
 * are not followed (ELOOP).
 */
export async function readFiles(paths: string[], sizes: number[]): Promise<Buffer> {
  const err = new Error();
  const r = await binding.readFiles(paths, sizes);
  if (Buffer.isBuffer(r)) return r;
  throw sysError(err, r.errno, r.syscall, paths[r.index]);
}
