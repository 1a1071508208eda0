// mount(2)/umount2(2) through the native facade, against the real kernel.
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { MNT, MS, mount, umount } from '../../src/native/index.js';
import { forceCleanup, mountAt } from '../helpers/leftovers.js';
import { rejectsWith } from '../helpers/syserror.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const scratch = await makeTmpDir('native-mount');
after(() => removeTmpDir(scratch)); // fails the file if anything is still mounted under it

/** A fresh directory for one test; whatever the test leaves mounted there is detached afterwards. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await makeTmpDir('t', scratch);
  try {
    await fn(dir);
  } finally {
    forceCleanup(dir);
  }
}

describe('mount', () => {
  test('tmpfs mount shows a fresh empty filesystem over the target; umount uncovers the old contents', () =>
    withDir(async (dir) => {
      const target = join(dir, 'target');
      mkdirSync(target);
      writeFileSync(join(target, 'underneath'), 'old');

      await mount('tmpfs', target, 'tmpfs');
      assert.equal(mountAt(target)?.fstype, 'tmpfs');
      assert.deepEqual(readdirSync(target), []);
      writeFileSync(join(target, 'on-tmpfs'), 'new');

      await umount(target);
      assert.equal(mountAt(target), undefined);
      assert.deepEqual(readdirSync(target), ['underneath']);
    }));

  test('the data string reaches the filesystem (tmpfs size=1m,mode=0710)', () =>
    withDir(async (dir) => {
      await mount('tmpfs', dir, 'tmpfs', 0, 'size=1m,mode=0710');
      try {
        const sfs = statfsSync(dir);
        assert.equal(sfs.blocks * sfs.bsize, 1024 * 1024);
        assert.equal(statSync(dir).mode & 0o7777, 0o710);
      } finally {
        await umount(dir);
      }
    }));

  test('MS_RDONLY gives a read-only mount: creating a file fails EROFS', () =>
    withDir(async (dir) => {
      await mount('tmpfs', dir, 'tmpfs', MS.RDONLY | MS.NOSUID | MS.NODEV);
      try {
        await rejectsWith(() => writeFileSync(join(dir, 'f'), 'x'), { code: 'EROFS' });
      } finally {
        await umount(dir);
      }
    }));

  test('MS_BIND shows the source at the target, and writes through the target land in the source', () =>
    withDir(async (dir) => {
      const src = join(dir, 'src');
      const dst = join(dir, 'dst');
      mkdirSync(src);
      mkdirSync(dst);
      writeFileSync(join(src, 'a'), 'from source');

      await mount(src, dst, '', MS.BIND);
      try {
        assert.equal(readFileSync(join(dst, 'a'), 'utf8'), 'from source');
        writeFileSync(join(dst, 'b'), 'via bind');
        assert.equal(readFileSync(join(src, 'b'), 'utf8'), 'via bind');
      } finally {
        await umount(dst);
      }
      assert.deepEqual(readdirSync(dst), []);
    }));

  test('a read-only bind remount blocks writes through the bind but not through the source', () =>
    withDir(async (dir) => {
      const src = join(dir, 'src');
      const dst = join(dir, 'dst');
      mkdirSync(src);
      mkdirSync(dst);
      await mount(src, dst, '', MS.BIND);
      try {
        await mount('', dst, '', MS.BIND | MS.REMOUNT | MS.RDONLY);
        await rejectsWith(() => writeFileSync(join(dst, 'x'), 'x'), { code: 'EROFS', syscall: 'open' });
        writeFileSync(join(src, 'y'), 'y');
        assert.equal(readFileSync(join(dst, 'y'), 'utf8'), 'y');
      } finally {
        await umount(dst);
      }
    }));

  test('MS_BIND|MS_REC carries submounts along; plain MS_BIND does not', () =>
    withDir(async (dir) => {
      const src = join(dir, 'src');
      const sub = join(src, 'sub');
      const plain = join(dir, 'plain');
      const rec = join(dir, 'rec');
      for (const d of [src, sub, plain, rec]) mkdirSync(d);
      await mount('tmpfs', sub, 'tmpfs');
      try {
        writeFileSync(join(sub, 'on-submount'), 'x');
        await mount(src, plain, '', MS.BIND);
        await mount(src, rec, '', MS.BIND | MS.REC);
        assert.deepEqual(readdirSync(join(plain, 'sub')), []);
        assert.deepEqual(readdirSync(join(rec, 'sub')), ['on-submount']);
      } finally {
        await umount(rec, MNT.DETACH); // takes the carried-along submount with it
        await umount(plain);
        await umount(sub);
      }
      assert.equal(mountAt(join(rec, 'sub')), undefined);
    }));

  test('mounting on a missing target fails ENOENT naming the target, with the caller in the stack', () =>
    withDir(async (dir) => {
      const missing = join(dir, 'no-such-dir');
      const e = await rejectsWith(mount('tmpfs', missing, 'tmpfs'), { code: 'ENOENT', syscall: 'mount', path: missing });
      assert.equal(e.errno, -2);
      assert.match(e.stack ?? '', /mount\.test\.(js|ts)/);
      assert.equal(existsSync(missing), false);
    }));

  test('mounting an unknown filesystem type fails ENODEV', () =>
    withDir(async (dir) => {
      await rejectsWith(mount('none', dir, 'no-such-fs-type'), { code: 'ENODEV', syscall: 'mount', path: dir });
    }));
});

describe('umount', () => {
  test('umount of a directory that is not a mount point fails EINVAL naming it', () =>
    withDir(async (dir) => {
      await rejectsWith(umount(dir), { code: 'EINVAL', syscall: 'umount2', path: dir });
    }));

  test('umount of a missing path fails ENOENT naming it', () =>
    withDir(async (dir) => {
      const missing = join(dir, 'gone');
      await rejectsWith(umount(missing), { code: 'ENOENT', syscall: 'umount2', path: missing });
    }));

  test('umount of a filesystem with an open file fails EBUSY; MNT_DETACH detaches it and the file stays usable', () =>
    withDir(async (dir) => {
      await mount('tmpfs', dir, 'tmpfs');
      writeFileSync(join(dir, 'held'), 'still readable');
      const fd = openSync(join(dir, 'held'), 'r');
      try {
        await rejectsWith(umount(dir), { code: 'EBUSY', syscall: 'umount2', path: dir });
        assert.ok(mountAt(dir));
        await umount(dir, MNT.DETACH);
        assert.equal(mountAt(dir), undefined);
        assert.equal(readFileSync(fd, 'utf8'), 'still readable');
      } finally {
        closeSync(fd);
      }
    }));
});
