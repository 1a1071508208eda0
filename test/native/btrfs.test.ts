// btrfs subvolume ioctls through the native facade, on a real btrfs on a loop file.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  mount,
  subvolCreate,
  subvolDestroy,
  subvolIsReadonly,
  subvolSetReadonly,
  subvolSnapshot,
  umount,
} from '../../src/native/index.js';
import { forceCleanup } from '../helpers/leftovers.js';
import { makeLoopFs, withLoopFs, type LoopFs } from '../helpers/loop.js';
import { rejectsWith } from '../helpers/syserror.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

// A btrfs subvolume's root directory always has inode number 256 (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOL_ROOT_INO = 256;

const scratch = await makeTmpDir('native-btrfs');
let btrfs: LoopFs | undefined;
let n = 0;
/** A fresh directory on the shared btrfs for one test. */
function dirOnBtrfs(): string {
  assert.ok(btrfs, 'btrfs filesystem was not set up');
  const d = join(btrfs.mountpoint, `t${n++}`);
  mkdirSync(d);
  return d;
}

before(async () => {
  btrfs = await makeLoopFs('btrfs', 256 << 20, { parent: scratch });
});
after(async () => {
  try {
    await btrfs?.dispose();
  } finally {
    await removeTmpDir(scratch); // fails the file if a mount or loop device is left under it
  }
});

describe('btrfs subvolumes', () => {
  test('subvolCreate makes an empty, writable subvolume (root inode 256)', async () => {
    const sv = join(dirOnBtrfs(), 'sv');
    await subvolCreate(sv);
    assert.equal(statSync(sv).ino, SUBVOL_ROOT_INO);
    assert.deepEqual(readdirSync(sv), []);
    assert.equal(await subvolIsReadonly(sv), false);
    writeFileSync(join(sv, 'f'), 'x');
  });

  test('subvolCreate on an existing name fails EEXIST, under a missing parent ENOENT', async () => {
    const dir = dirOnBtrfs();
    const sv = join(dir, 'sv');
    await subvolCreate(sv);
    await rejectsWith(subvolCreate(sv), { code: 'EEXIST', syscall: 'ioctl_btrfs_subvol_create', path: sv });
    const orphan = join(dir, 'missing', 'sv');
    await rejectsWith(subvolCreate(orphan), { code: 'ENOENT', syscall: 'ioctl_btrfs_subvol_create', path: orphan });
  });

  test('subvolCreate with a name over the btrfs limit fails ENAMETOOLONG', async () => {
    const long = join(dirOnBtrfs(), 'n'.repeat(5000));
    await rejectsWith(subvolCreate(long), { code: 'ENAMETOOLONG', path: long });
  });

  test('a writable snapshot has the source’s files; later writes on either side stay on that side', async () => {
    const dir = dirOnBtrfs();
    const src = join(dir, 'src');
    const snap = join(dir, 'snap');
    await subvolCreate(src);
    writeFileSync(join(src, 'before'), 'before snapshot');
    mkdirSync(join(src, 'sub'));
    writeFileSync(join(src, 'sub', 'deep'), 'deep');

    await subvolSnapshot(src, snap);
    assert.equal(statSync(snap).ino, SUBVOL_ROOT_INO);
    assert.equal(await subvolIsReadonly(snap), false);
    assert.equal(readFileSync(join(snap, 'before'), 'utf8'), 'before snapshot');
    assert.equal(readFileSync(join(snap, 'sub', 'deep'), 'utf8'), 'deep');

    writeFileSync(join(src, 'after'), 'written after');
    writeFileSync(join(src, 'before'), 'changed in source');
    writeFileSync(join(snap, 'only-in-snap'), 'x');
    assert.equal(existsSync(join(snap, 'after')), false);
    assert.equal(readFileSync(join(snap, 'before'), 'utf8'), 'before snapshot');
    assert.equal(existsSync(join(src, 'only-in-snap')), false);
  });

  test('a readonly snapshot reports readonly and refuses writes with EROFS; its source stays writable', async () => {
    const dir = dirOnBtrfs();
    const src = join(dir, 'src');
    const snap = join(dir, 'snap');
    await subvolCreate(src);
    writeFileSync(join(src, 'f'), 'x');
    await subvolSnapshot(src, snap, true);

    assert.equal(await subvolIsReadonly(snap), true);
    assert.equal(await subvolIsReadonly(src), false);
    await rejectsWith(() => writeFileSync(join(snap, 'new'), 'x'), { code: 'EROFS' });
    await rejectsWith(() => writeFileSync(join(snap, 'f'), 'y'), { code: 'EROFS' });
    assert.equal(readFileSync(join(snap, 'f'), 'utf8'), 'x');
    writeFileSync(join(src, 'new'), 'x');
  });

  test('subvolSetReadonly turns writes off (EROFS) and on again', async () => {
    const sv = join(dirOnBtrfs(), 'sv');
    await subvolCreate(sv);
    await subvolSetReadonly(sv, true);
    assert.equal(await subvolIsReadonly(sv), true);
    await rejectsWith(() => writeFileSync(join(sv, 'f'), 'x'), { code: 'EROFS' });
    await subvolSetReadonly(sv, false);
    assert.equal(await subvolIsReadonly(sv), false);
    writeFileSync(join(sv, 'f'), 'x');
  });

  test('snapshotting onto an existing name fails EEXIST naming source and destination', async () => {
    const dir = dirOnBtrfs();
    const src = join(dir, 'src');
    const taken = join(dir, 'taken');
    await subvolCreate(src);
    mkdirSync(taken);
    await rejectsWith(subvolSnapshot(src, taken), {
      code: 'EEXIST',
      syscall: 'ioctl_btrfs_snap_create',
      path: src,
      dest: taken,
    });
  });

  test('a plain directory is not a subvolume: snapshot, destroy, getflags and setflags fail EINVAL', async () => {
    const dir = dirOnBtrfs();
    const plain = join(dir, 'plain');
    mkdirSync(plain);
    await rejectsWith(subvolSnapshot(plain, join(dir, 'snap')), { code: 'EINVAL', path: plain });
    await rejectsWith(subvolDestroy(plain), { code: 'EINVAL', syscall: 'ioctl_btrfs_snap_destroy', path: plain });
    await rejectsWith(subvolIsReadonly(plain), { code: 'EINVAL', syscall: 'ioctl_btrfs_subvol_getflags', path: plain });
    await rejectsWith(subvolSetReadonly(plain, true), {
      code: 'EINVAL',
      syscall: 'ioctl_btrfs_subvol_setflags',
      path: plain,
    });
    assert.ok(statSync(plain).isDirectory());
  });

  test('subvolDestroy removes a subvolume with its files, and a readonly snapshot too', async () => {
    const dir = dirOnBtrfs();
    const sv = join(dir, 'sv');
    const snap = join(dir, 'snap');
    await subvolCreate(sv);
    mkdirSync(join(sv, 'd'));
    writeFileSync(join(sv, 'd', 'f'), 'x');
    await subvolSnapshot(sv, snap, true);

    await subvolDestroy(sv);
    await subvolDestroy(snap);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('subvolDestroy of a missing name fails ENOENT naming it', async () => {
    const missing = join(dirOnBtrfs(), 'missing');
    await rejectsWith(subvolDestroy(missing), { code: 'ENOENT', syscall: 'ioctl_btrfs_snap_destroy', path: missing });
  });

  test('subvolDestroy of a subvolume holding another subvolume fails ENOTEMPTY', async () => {
    const outer = join(dirOnBtrfs(), 'outer');
    await subvolCreate(outer);
    await subvolCreate(join(outer, 'inner'));
    await rejectsWith(subvolDestroy(outer), { code: 'ENOTEMPTY', path: outer });
    await subvolDestroy(join(outer, 'inner'));
    await subvolDestroy(outer);
  });
});

describe('btrfs calls on other filesystems', () => {
  test('on ext4, subvolume ioctls fail ENOTTY', () =>
    withLoopFs(
      'ext4',
      16 << 20,
      async (mnt) => {
        const sv = join(mnt, 'sv');
        await rejectsWith(subvolCreate(sv), { code: 'ENOTTY', syscall: 'ioctl_btrfs_subvol_create', path: sv });
        await rejectsWith(subvolIsReadonly(mnt), { code: 'ENOTTY', path: mnt });
        await rejectsWith(subvolSetReadonly(mnt, true), { code: 'ENOTTY', path: mnt });
        await rejectsWith(subvolSnapshot(mnt, join(mnt, 'snap')), { code: 'ENOTTY', path: mnt });
        await rejectsWith(subvolDestroy(join(mnt, 'lost+found')), { code: 'ENOTTY' });
        assert.equal(existsSync(sv), false);
      },
      { parent: scratch },
    ));

  test('on tmpfs, subvolCreate fails ENOTTY', async () => {
    const dir = await makeTmpDir('tmpfs', scratch);
    try {
      await mount('tmpfs', dir, 'tmpfs');
      try {
        const sv = join(dir, 'sv');
        await rejectsWith(subvolCreate(sv), { code: 'ENOTTY', syscall: 'ioctl_btrfs_subvol_create', path: sv });
      } finally {
        await umount(dir);
      }
    } finally {
      forceCleanup(dir);
    }
  });
});
