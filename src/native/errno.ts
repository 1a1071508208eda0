import { getSystemErrorMap, getSystemErrorName } from 'node:util';

export interface SysCallError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
}

/**
 * Turns a negative errno into an Error shaped like Node's fs errors.
 * `err` is created by the caller *before* the native call so its stack is the caller's.
 */
export function sysError(err: Error, negErrno: number, syscall: string, path?: string, dest?: string): SysCallError {
  const errno = -negErrno;
  const code = getSystemErrorName(negErrno);
  const e = err as SysCallError;
  e.code = code;
  e.errno = negErrno; // Node's fs uses negative errno values too
  e.syscall = syscall;
  let where = '';
  if (path !== undefined) {
    e.path = path;
    where = ` '${path}'`;
  }
  if (dest !== undefined) {
    e.dest = dest;
    where += ` -> '${dest}'`;
  }
  e.message = `${code}: ${describe(errno)}, ${syscall}${where}`;
  return e;
}

function describe(errno: number): string {
  // util has no strerror; libuv's table (what fs errors show) covers the rest, but its
  // text for some codes is socket-specific, so the table below takes precedence.
  return DESCRIPTIONS[errno] ?? getSystemErrorMap().get(-errno)?.[1] ?? `errno ${errno}`;
}

const DESCRIPTIONS: Record<number, string> = {
  1: 'operation not permitted',
  2: 'no such file or directory',
  5: 'i/o error',
  9: 'bad file descriptor',
  11: 'resource temporarily unavailable',
  13: 'permission denied',
  16: 'resource busy or locked',
  17: 'file already exists',
  18: 'cross-device link not permitted',
  20: 'not a directory',
  21: 'illegal operation on a directory',
  22: 'invalid argument',
  25: 'inappropriate ioctl for device',
  28: 'no space left on device',
  30: 'read-only file system',
  36: 'name too long',
  39: 'directory not empty',
  40: 'too many symbolic links encountered',
  61: 'no data available',
  95: 'operation not supported',
};

/** Awaits a raw call and throws the fs-shaped error when it failed. */
export async function check(p: Promise<number>, syscall: string, path?: string, dest?: string): Promise<number> {
  const err = new Error();
  const r = await p;
  if (r < 0) throw sysError(err, r, syscall, path, dest);
  return r;
}
