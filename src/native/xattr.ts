// Extended attributes, never following symlinks.
import { binding } from './binding.js';
import { sysError } from './errno.js';

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

export async function lgetxattr(path: string, name: string): Promise<Buffer> {
  const err = new Error();
  const r = await binding.lgetxattr(path, name);
  if (typeof r === 'number') throw sysError(err, r, 'lgetxattr', path);
  return r;
}

/** Like lgetxattr, but `undefined` when the attribute is absent (ENODATA). */
export async function lgetxattrOptional(path: string, name: string): Promise<Buffer | undefined> {
  const err = new Error();
  const r = await binding.lgetxattr(path, name);
  if (typeof r !== 'number') return r;
  if (r === -61) return undefined;
  throw sysError(err, r, 'lgetxattr', path);
}

export async function lsetxattr(path: string, name: string, value: Buffer | string, flags = 0): Promise<void> {
  const err = new Error();
  const r = await binding.lsetxattr(path, name, typeof value === 'string' ? Buffer.from(value) : value, flags);
  if (r < 0) throw sysError(err, r, 'lsetxattr', path);
}

export async function llistxattr(path: string): Promise<string[]> {
  const err = new Error();
  const r = await binding.llistxattr(path);
  if (typeof r === 'number') throw sysError(err, r, 'llistxattr', path);
  return r;
}

export async function lremovexattr(path: string, name: string): Promise<void> {
  const err = new Error();
  const r = await binding.lremovexattr(path, name);
  if (r < 0) throw sysError(err, r, 'lremovexattr', path);
}
