// The new mount API (fsopen/fsconfig/fsmount/move_mount) and open_tree, against the real kernel.
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, readdirSync, readFileSync, statfsSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  AT_RECURSIVE,
  MNT,
  MOUNT_ATTR,
  OPEN_TREE,
  fsconfigCreate,
  fsconfigSetFlag,
  fsconfigSetString,
  fsmount,
  fsopen,
  mount,
  moveMountFd,
  openTree,
  umount,
} from '../../src/native/index.js';
import { forceCleanup, mountAt } from '../helpers/leftovers.js';
import { rejectsWith } from '../helpers/syserror.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const scratch = await makeTmpDir('native-newmount');
after(() => removeTmpDir(scratch)); // fails the file if anything is still mounted under it

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await makeTmpDir('t', scratch);
  try {
    await fn(dir);
  } finally {
    forceCleanup(dir);
  }
}

/** Closes every fd it was given, whatever the test did. */
function fdCloser() {
  const fds: number[] = [];
  return {
    add(fd: number): number {
      fds.push(fd);
      return fd;
    },
    closeAll(): void {
      for (const fd of fds.splice(0)) closeSync(fd);
    },
  };
}

/** Makes `names` layer directories under `dir`, each with `shared` (its own name) and `only-NAME`. */
function makeLayers(dir: string, names: string[]): string[] {
  return names.map((name) => {
    const p = join(dir, name);
    mkdirSync(p);
    writeFileSync(join(p, 'shared'), name);
    writeFileSync(join(p, `only-${name}`), name);
    return p;
  });
}

/** fsopen('overlay') + one lowerdir+ per layer (+ upper/work) + create + fsmount + move_mount. */
async function mountOverlay(target: string, lowers: string[], upper?: { upper: string; work: string }): Promise<void> {
  const fds = fdCloser();
  try {
    const fsfd = fds.add(fsopen('overlay'));
    for (const l of lowers) await fsconfigSetString(fsfd, 'lowerdir+', l);
    if (upper) {
      await fsconfigSetString(fsfd, 'upperdir', upper.upper);
      await fsconfigSetString(fsfd, 'workdir', upper.work);
    }
    await fsconfigCreate(fsfd);
    const mfd = fds.add(await fsmount(fsfd));
    await moveMountFd(mfd, target);
  } finally {
    fds.closeAll();
  }
}

describe('fsopen/fsconfig/fsmount/moveMountFd', () => {
  test('an overlay of 3 lowerdir+ layers plus upperdir shows every layer, the first layer added wins, writes go to upperdir', () =>
    withDir(async (dir) => {
      const lowers = makeLayers(dir, ['l1', 'l2', 'l3']);
      const upper = join(dir, 'upper');
      const work = join(dir, 'work');
      const merged = join(dir, 'merged');
      for (const d of [upper, work, merged]) mkdirSync(d);

      await mountOverlay(merged, lowers, { upper, work });
      try {
        assert.equal(mountAt(merged)?.fstype, 'overlay');
        assert.deepEqual(readdirSync(merged).sort(), ['only-l1', 'only-l2', 'only-l3', 'shared']);
        assert.equal(readFileSync(join(merged, 'shared'), 'utf8'), 'l1');
        assert.equal(readFileSync(join(merged, 'only-l3'), 'utf8'), 'l3');

        writeFileSync(join(merged, 'shared'), 'changed');
        assert.equal(readFileSync(join(upper, 'shared'), 'utf8'), 'changed');
        assert.equal(readFileSync(join(lowers[0], 'shared'), 'utf8'), 'l1');
      } finally {
        await umount(merged);
      }
      assert.deepEqual(readdirSync(merged), []);
    }));

  test('lowerdir+ takes 120 long-named layers, more than a mount(2) option page could hold', () =>
    withDir(async (dir) => {
      const names = Array.from({ length: 120 }, (_, i) => `layer-${String(i).padStart(3, '0')}-${'x'.repeat(64)}`);
      const lowers = makeLayers(dir, names);
      assert.ok(lowers.join(':').length > 4096);
      const merged = join(dir, 'merged');
      mkdirSync(merged);

      await mountOverlay(merged, lowers); // read-only overlay: lowers only
      try {
        assert.equal(readdirSync(merged).length, 121);
        assert.equal(readFileSync(join(merged, 'shared'), 'utf8'), names[0]);
        await rejectsWith(() => writeFileSync(join(merged, 'new'), 'x'), { code: 'EROFS' });
      } finally {
        await umount(merged);
      }
    }));

  test('fsconfigSetString passes options (tmpfs size=1m) and fsconfigSetFlag sets a flag (ro)', () =>
    withDir(async (dir) => {
      const fds = fdCloser();
      try {
        const fsfd = fds.add(fsopen('tmpfs'));
        await fsconfigSetString(fsfd, 'size', '1m');
        await fsconfigSetFlag(fsfd, 'ro');
        await fsconfigCreate(fsfd);
        await moveMountFd(fds.add(await fsmount(fsfd)), dir);
      } finally {
        fds.closeAll();
      }
      try {
        const sfs = statfsSync(dir);
        assert.equal(sfs.blocks * sfs.bsize, 1024 * 1024);
        await rejectsWith(() => writeFileSync(join(dir, 'f'), 'x'), { code: 'EROFS' });
      } finally {
        await umount(dir);
      }
    }));

  test('fsmount with MOUNT_ATTR_RDONLY makes a read-only mount of a writable superblock', () =>
    withDir(async (dir) => {
      const fds = fdCloser();
      try {
        const fsfd = fds.add(fsopen('tmpfs'));
        await fsconfigCreate(fsfd);
        await moveMountFd(fds.add(await fsmount(fsfd, MOUNT_ATTR.RDONLY | MOUNT_ATTR.NODEV)), dir);
      } finally {
        fds.closeAll();
      }
      try {
        await rejectsWith(() => writeFileSync(join(dir, 'f'), 'x'), { code: 'EROFS' });
      } finally {
        await umount(dir);
      }
    }));

  test('fsopen of an unknown filesystem type throws ENODEV naming it', async () => {
    await rejectsWith(() => fsopen('no-such-fs-type'), { code: 'ENODEV', syscall: 'fsopen', path: 'no-such-fs-type' });
  });

  test('fsconfig with an unknown key fails EINVAL naming the key', async () => {
    const fsfd = fsopen('overlay');
    try {
      await rejectsWith(fsconfigSetString(fsfd, 'bogus', 'x'), { code: 'EINVAL', syscall: 'fsconfig', path: 'bogus=x' });
      await rejectsWith(fsconfigSetFlag(fsfd, 'bogusflag'), { code: 'EINVAL', syscall: 'fsconfig', path: 'bogusflag' });
    } finally {
      closeSync(fsfd);
    }
  });

  test('lowerdir+ with a missing directory fails ENOENT at once', () =>
    withDir(async (dir) => {
      const fsfd = fsopen('overlay');
      try {
        const missing = join(dir, 'missing');
        await rejectsWith(fsconfigSetString(fsfd, 'lowerdir+', missing), {
          code: 'ENOENT',
          syscall: 'fsconfig',
          path: `lowerdir+=${missing}`,
        });
      } finally {
        closeSync(fsfd);
      }
    }));

  test('creating an overlay without any lower layer fails EINVAL; fsmount before create fails too', async () => {
    const fsfd = fsopen('overlay');
    try {
      await rejectsWith(fsmount(fsfd), { code: 'EINVAL', syscall: 'fsmount' });
      await rejectsWith(fsconfigCreate(fsfd), { code: 'EINVAL', syscall: 'fsconfig', path: 'create' });
    } finally {
      closeSync(fsfd);
    }
  });

  test('moveMountFd onto a missing target fails ENOENT naming it; a bad fd fails EBADF', () =>
    withDir(async (dir) => {
      const missing = join(dir, 'missing');
      const fds = fdCloser();
      try {
        const fsfd = fds.add(fsopen('tmpfs'));
        await fsconfigCreate(fsfd);
        const mfd = fds.add(await fsmount(fsfd));
        await rejectsWith(moveMountFd(mfd, missing), { code: 'ENOENT', syscall: 'move_mount', path: missing });
        await rejectsWith(moveMountFd(99999, dir), { code: 'EBADF', syscall: 'move_mount', path: dir });
      } finally {
        fds.closeAll(); // closing a never-attached mount fd releases the mount
      }
      assert.equal(mountAt(dir), undefined);
    }));
});

describe('openTree', () => {
  test('openTree clones a directory as a detached bind mount that moveMountFd attaches elsewhere', () =>
    withDir(async (dir) => {
      const src = join(dir, 'src');
      const dst = join(dir, 'dst');
      mkdirSync(src);
      mkdirSync(dst);
      writeFileSync(join(src, 'a'), 'from source');
      const fd = await openTree(src);
      try {
        assert.equal(mountAt(dst), undefined); // nothing attached until move_mount
        await moveMountFd(fd, dst);
      } finally {
        closeSync(fd);
      }
      try {
        assert.ok(mountAt(dst));
        assert.equal(readFileSync(join(dst, 'a'), 'utf8'), 'from source');
        writeFileSync(join(dst, 'b'), 'via clone');
        assert.equal(readFileSync(join(src, 'b'), 'utf8'), 'via clone');
      } finally {
        await umount(dst);
      }
    }));

  test('openTree leaves submounts out unless AT_RECURSIVE is given', () =>
    withDir(async (dir) => {
      const src = join(dir, 'src');
      const sub = join(src, 'sub');
      const plain = join(dir, 'plain');
      const rec = join(dir, 'rec');
      for (const d of [src, sub, plain, rec]) mkdirSync(d);
      await mount('tmpfs', sub, 'tmpfs');
      try {
        writeFileSync(join(sub, 'on-submount'), 'x');
        for (const [target, flags] of [
          [plain, OPEN_TREE.CLONE | OPEN_TREE.CLOEXEC],
          [rec, OPEN_TREE.CLONE | OPEN_TREE.CLOEXEC | AT_RECURSIVE],
        ] as const) {
          const fd = await openTree(src, flags);
          try {
            await moveMountFd(fd, target);
          } finally {
            closeSync(fd);
          }
        }
        assert.deepEqual(readdirSync(join(plain, 'sub')), []);
        assert.deepEqual(readdirSync(join(rec, 'sub')), ['on-submount']);
      } finally {
        await umount(rec, MNT.DETACH);
        await umount(plain);
        await umount(sub);
      }
    }));

  test('openTree on a missing path fails ENOENT naming it', () =>
    withDir(async (dir) => {
      const missing = join(dir, 'missing');
      await rejectsWith(openTree(missing), { code: 'ENOENT', syscall: 'open_tree', path: missing });
      assert.equal(existsSync(missing), false);
    }));
});
