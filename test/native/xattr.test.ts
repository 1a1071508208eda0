// l{get,set,list,remove}xattr through the native facade, against the real kernel.
import assert from 'node:assert/strict';
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  XATTR_CREATE,
  XATTR_REPLACE,
  lgetxattr,
  lgetxattrOptional,
  llistxattr,
  lremovexattr,
  lsetxattr,
} from '../../src/native/index.js';
import { rejectsWith } from '../helpers/syserror.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const scratch = await makeTmpDir('native-xattr');
after(() => removeTmpDir(scratch));

async function withFile(fn: (file: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await makeTmpDir('t', scratch);
  const file = join(dir, 'file');
  writeFileSync(file, 'content');
  await fn(file, dir);
}

describe('xattrs on a regular file', () => {
  test('set, get, list and remove a user.* attribute', () =>
    withFile(async (f) => {
      await lsetxattr(f, 'user.one', Buffer.from('1'));
      await lsetxattr(f, 'user.two', 'two'); // strings are stored as UTF-8
      assert.deepEqual((await llistxattr(f)).sort(), ['user.one', 'user.two']);
      assert.equal((await lgetxattr(f, 'user.one')).toString(), '1');
      assert.equal((await lgetxattr(f, 'user.two')).toString(), 'two');

      await lremovexattr(f, 'user.one');
      assert.deepEqual(await llistxattr(f), ['user.two']);
      assert.equal(await lgetxattrOptional(f, 'user.one'), undefined);
    }));

  test('binary values round-trip exactly (every byte 0x00..0xff, twice)', () =>
    withFile(async (f) => {
      const value = Buffer.alloc(512);
      for (let i = 0; i < value.length; i++) value[i] = i & 0xff;
      await lsetxattr(f, 'user.bin', value);
      const got = await lgetxattr(f, 'user.bin');
      assert.ok(Buffer.isBuffer(got));
      assert.ok(got.equals(value));
    }));

  test('an empty value is kept and read back as an empty buffer', () =>
    withFile(async (f) => {
      await lsetxattr(f, 'user.empty', Buffer.alloc(0));
      assert.deepEqual(await llistxattr(f), ['user.empty']);
      assert.equal((await lgetxattr(f, 'user.empty')).length, 0);
      assert.equal((await lgetxattrOptional(f, 'user.empty'))?.length, 0);
    }));

  test('a larger value (3000 bytes) is read back whole', () =>
    withFile(async (f) => {
      const value = Buffer.alloc(3000, 'v');
      await lsetxattr(f, 'user.big', value);
      assert.ok((await lgetxattr(f, 'user.big')).equals(value));
    }));

  test('a file without attributes lists none', () =>
    withFile(async (f) => {
      assert.deepEqual(await llistxattr(f), []);
    }));

  test('a missing attribute: lgetxattr fails ENODATA naming the path, lgetxattrOptional gives undefined', () =>
    withFile(async (f) => {
      await rejectsWith(lgetxattr(f, 'user.missing'), { code: 'ENODATA', syscall: 'lgetxattr', path: f });
      assert.equal(await lgetxattrOptional(f, 'user.missing'), undefined);
      await rejectsWith(lremovexattr(f, 'user.missing'), { code: 'ENODATA', syscall: 'lremovexattr', path: f });
    }));

  test('XATTR_CREATE refuses to overwrite (EEXIST); XATTR_REPLACE refuses to create (ENODATA)', () =>
    withFile(async (f) => {
      await lsetxattr(f, 'user.a', 'first', XATTR_CREATE);
      await rejectsWith(lsetxattr(f, 'user.a', 'second', XATTR_CREATE), { code: 'EEXIST', syscall: 'lsetxattr', path: f });
      assert.equal((await lgetxattr(f, 'user.a')).toString(), 'first');
      await lsetxattr(f, 'user.a', 'third', XATTR_REPLACE);
      assert.equal((await lgetxattr(f, 'user.a')).toString(), 'third');
      await rejectsWith(lsetxattr(f, 'user.b', 'x', XATTR_REPLACE), { code: 'ENODATA', syscall: 'lsetxattr', path: f });
    }));

  test('every call on a missing file fails ENOENT naming it; lgetxattrOptional does not hide that', () =>
    withFile(async (_f, dir) => {
      const missing = join(dir, 'missing');
      const want = { code: 'ENOENT', path: missing };
      await rejectsWith(lgetxattr(missing, 'user.a'), { ...want, syscall: 'lgetxattr' });
      await rejectsWith(lgetxattrOptional(missing, 'user.a'), { ...want, syscall: 'lgetxattr' });
      await rejectsWith(lsetxattr(missing, 'user.a', 'x'), { ...want, syscall: 'lsetxattr' });
      await rejectsWith(llistxattr(missing), { ...want, syscall: 'llistxattr' });
      await rejectsWith(lremovexattr(missing, 'user.a'), { ...want, syscall: 'lremovexattr' });
    }));
});

describe('xattrs on a symlink (never followed)', () => {
  // The kernel allows user.* only on regular files and directories; trusted.* (root only)
  // works on symlinks, which is how layers carry link xattrs.
  async function withLink(fn: (link: string, target: string) => Promise<void>): Promise<void> {
    await withFile(async (target, dir) => {
      const link = join(dir, 'link');
      symlinkSync('file', link);
      await fn(link, target);
    });
  }

  test('set, get, list and remove trusted.* on the link itself; the target gets nothing', () =>
    withLink(async (link, target) => {
      const value = Buffer.from([0, 1, 2, 0xfe, 0xff]);
      await lsetxattr(link, 'trusted.link', value);
      assert.deepEqual(await llistxattr(link), ['trusted.link']);
      assert.ok((await lgetxattr(link, 'trusted.link')).equals(value));
      assert.deepEqual(await llistxattr(target), []);
      assert.equal(await lgetxattrOptional(target, 'trusted.link'), undefined);

      await lremovexattr(link, 'trusted.link');
      assert.deepEqual(await llistxattr(link), []);
    }));

  test('the target’s attributes are not seen through the link', () =>
    withLink(async (link, target) => {
      await lsetxattr(target, 'user.on-target', 'x');
      await lsetxattr(target, 'trusted.on-target', 'y');
      assert.deepEqual(await llistxattr(link), []);
      await rejectsWith(lgetxattr(link, 'trusted.on-target'), { code: 'ENODATA', path: link });
      assert.equal(await lgetxattrOptional(link, 'user.on-target'), undefined);
    }));

  test('user.* on a symlink is refused EPERM instead of landing on the target', () =>
    withLink(async (link, target) => {
      await rejectsWith(lsetxattr(link, 'user.x', 'x'), { code: 'EPERM', syscall: 'lsetxattr', path: link });
      assert.deepEqual(await llistxattr(target), []);
    }));

  test('lremovexattr of a missing trusted.* attribute on a link fails ENODATA', () =>
    withLink(async (link) => {
      await rejectsWith(lremovexattr(link, 'trusted.nope'), { code: 'ENODATA', syscall: 'lremovexattr', path: link });
    }));
});
