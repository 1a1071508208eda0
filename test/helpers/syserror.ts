// Asserting the shape of fs-style errors (code/errno/syscall/path/dest), as thrown by
// node:fs and by tslayer's native facade.
import assert from 'node:assert/strict';
import { constants } from 'node:os';

export interface ExpectedSysError {
  /** The code, or the codes any of which is acceptable (e.g. ['EAGAIN', 'EWOULDBLOCK']). */
  code: string | string[];
  syscall?: string;
  path?: string;
  dest?: string;
}

export interface SysErrorLike extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
}

const errnoOf = (code: string): number | undefined => (constants.errno as Record<string, number>)[code];

/** Asserts `e` is an Error with the expected code, the matching (negative) errno, syscall and path. */
export function assertSysError(e: unknown, want: ExpectedSysError): SysErrorLike {
  assert.ok(e instanceof Error, `expected an Error, got ${String(e)}`);
  const err = e as SysErrorLike;
  const codes = Array.isArray(want.code) ? want.code : [want.code];
  assert.ok(codes.includes(err.code), `expected code ${codes.join('|')}, got ${err.code}: ${err.message}`);
  const errno = errnoOf(err.code);
  assert.ok(errno !== undefined, `unknown code ${err.code}`);
  assert.equal(err.errno, -errno, `errno of ${err.code}`);
  assert.ok(err.message.includes(err.code), `message names the code: ${err.message}`);
  if (want.syscall !== undefined) assert.equal(err.syscall, want.syscall);
  if (want.path !== undefined) {
    assert.equal(err.path, want.path);
    assert.ok(err.message.includes(want.path), `message names the path: ${err.message}`);
  }
  if (want.dest !== undefined) {
    assert.equal(err.dest, want.dest);
    assert.ok(err.message.includes(want.dest), `message names the dest: ${err.message}`);
  }
  return err;
}

/** Awaits `p` (or calls `fn`), asserts it fails with the expected error, and returns that error. */
export async function rejectsWith(p: Promise<unknown> | (() => unknown), want: ExpectedSysError): Promise<SysErrorLike> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return assertSysError(e, want);
  }
  assert.fail(`expected a ${Array.isArray(want.code) ? want.code.join('|') : want.code} error, but it succeeded`);
}
