// mknod/mkWhiteout, lchown, lutimes, openat2, renameat2, ficlone, syncfs and flock
// through the native facade, against the real kernel.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  AT_FDCWD,
  LOCK,
  O,
  RENAME,
  RESOLVE,
  S_IF,
  ficlone,
  flock,
  lchown,
  lutimes,
  lutimesNs,
  mkWhiteout,
  mknod,
  mount,
  openat2,
  renameat2,
  syncfs,
  umount,
} from '../../src/native/index.js';
import { forceCleanup } from '../helpers/leftovers.js';
import { withLoopFs } from '../helpers/loop.js';
import { rejectsWith } from '../helpers/syserror.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const scratch = await makeTmpDir('native-fsops');
after(() => removeTmpDir(scratch)); // fails the file if a mount or loop device is left under it

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await makeTmpDir('t', scratch);
  try {
    await fn(dir);
  } finally {
    forceCleanup(dir);
  }
}

const isWhiteout = (path: string): boolean => {
  const st = lstatSync(path);
  return st.isCharacterDevice() && st.rdev === 0;
};

describe('mknod and mkWhiteout', () => {
  test('mknod S_IFIFO makes a named pipe with the given permission bits', () =>
    withDir(async (dir) => {
      const p = join(dir, 'fifo');
      await mknod(p, S_IF.FIFO | 0o640);
      const st = lstatSync(p);
      assert.ok(st.isFIFO());
      assert.equal(st.mode & 0o7777, 0o640 & ~process.umask());
    }));

  test('mknod S_IFCHR records major/minor in rdev (1:3, like /dev/null)', () =>
    withDir(async (dir) => {
      const p = join(dir, 'null');
      await mknod(p, S_IF.CHR | 0o666, 1, 3);
      const st = lstatSync(p);
      assert.ok(st.isCharacterDevice());
      assert.equal(st.rdev, statSync('/dev/null').rdev);
    }));

  test('mkWhiteout makes a character device 0/0', () =>
    withDir(async (dir) => {
      const p = join(dir, 'wh');
      await mkWhiteout(p);
      const st = lstatSync(p);
      assert.ok(st.isCharacterDevice());
      assert.equal(st.rdev, 0);
    }));

  test('mknod on an existing path fails EEXIST, in a missing directory ENOENT, naming the path', () =>
    withDir(async (dir) => {
      const existing = join(dir, 'f');
      writeFileSync(existing, 'keep');
      await rejectsWith(mkWhiteout(existing), { code: 'EEXIST', syscall: 'mknod', path: existing });
      assert.equal(readFileSync(existing, 'utf8'), 'keep');
      const missing = join(dir, 'no-dir', 'wh');
      await rejectsWith(mkWhiteout(missing), { code: 'ENOENT', syscall: 'mknod', path: missing });
    }));

  test('a whiteout in the top lower layer hides the file below it in an overlay mount; its siblings stay', () =>
    withDir(async (dir) => {
      const bottom = join(dir, 'bottom');
      const top = join(dir, 'top');
      const merged = join(dir, 'merged');
      for (const d of [bottom, join(bottom, 'sub'), top, join(top, 'sub'), merged]) mkdirSync(d);
      writeFileSync(join(bottom, 'hidden'), 'x');
      writeFileSync(join(bottom, 'kept'), 'x');
      writeFileSync(join(bottom, 'sub', 'deep-hidden'), 'x');
      await mkWhiteout(join(top, 'hidden'));
      await mkWhiteout(join(top, 'sub', 'deep-hidden'));

      await mount('overlay', merged, 'overlay', 0, `lowerdir=${top}:${bottom}`);
      try {
        assert.deepEqual(readdirSync(merged).sort(), ['kept', 'sub']);
        assert.deepEqual(readdirSync(join(merged, 'sub')), []);
        await rejectsWith(() => statSync(join(merged, 'hidden')), { code: 'ENOENT' });
      } finally {
        await umount(merged);
      }
    }));

  test('a whiteout in upperdir hides the lower file, and deleting through overlay makes the same kind of whiteout', () =>
    withDir(async (dir) => {
      const lower = join(dir, 'lower');
      const upper = join(dir, 'upper');
      const work = join(dir, 'work');
      const merged = join(dir, 'merged');
      for (const d of [lower, upper, work, merged]) mkdirSync(d);
      writeFileSync(join(lower, 'a'), 'a');
      writeFileSync(join(lower, 'b'), 'b');
      await mkWhiteout(join(upper, 'a'));

      await mount('overlay', merged, 'overlay', 0, `lowerdir=${lower},upperdir=${upper},workdir=${work}`);
      try {
        assert.deepEqual(readdirSync(merged), ['b']);
        unlinkSync(join(merged, 'b'));
        assert.deepEqual(readdirSync(merged), []);
      } finally {
        await umount(merged);
      }
      assert.ok(isWhiteout(join(upper, 'b')), "overlay's own whiteout is a 0/0 char device too");
      assert.deepEqual(readdirSync(lower).sort(), ['a', 'b']);
    }));
});

describe('lchown', () => {
  test('lchown on a symlink changes the link owner, not its target', () =>
    withDir(async (dir) => {
      const target = join(dir, 'target');
      const link = join(dir, 'link');
      writeFileSync(target, 'x');
      symlinkSync('target', link);
      await lchown(link, 1234, 5678);
      assert.equal(lstatSync(link).uid, 1234);
      assert.equal(lstatSync(link).gid, 5678);
      assert.equal(statSync(target).uid, 0);
      assert.equal(statSync(target).gid, 0);
      assert.equal(readlinkSync(link), 'target');
    }));

  test('lchown on a regular file changes its owner', () =>
    withDir(async (dir) => {
      const f = join(dir, 'f');
      writeFileSync(f, 'x');
      await lchown(f, 42, 43);
      assert.equal(statSync(f).uid, 42);
      assert.equal(statSync(f).gid, 43);
    }));

  test('lchown on a missing path fails ENOENT naming it', () =>
    withDir(async (dir) => {
      const missing = join(dir, 'missing');
      await rejectsWith(lchown(missing, 1, 1), { code: 'ENOENT', syscall: 'lchown', path: missing });
    }));
});

describe('lutimes', () => {
  test('lutimesNs sets a symlink’s own times to the nanosecond and leaves its target alone', () =>
    withDir(async (dir) => {
      const target = join(dir, 'target');
      const link = join(dir, 'link');
      writeFileSync(target, 'x');
      symlinkSync('target', link);
      const before = statSync(target, { bigint: true });

      const atime = 1_600_000_000_123_456_789n;
      const mtime = 1_700_000_000_987_654_321n;
      await lutimesNs(link, atime, mtime);

      const st = lstatSync(link, { bigint: true });
      assert.equal(st.atimeNs, atime);
      assert.equal(st.mtimeNs, mtime);
      const after = statSync(target, { bigint: true });
      assert.equal(after.mtimeNs, before.mtimeNs);
      assert.equal(after.atimeNs, before.atimeNs);
    }));

  test('lutimesNs handles times before 1970 (negative seconds, positive nanoseconds)', () =>
    withDir(async (dir) => {
      const f = join(dir, 'f');
      writeFileSync(f, 'x');
      await lutimesNs(f, -1_500_000_000n, -1n);
      const st = lstatSync(f, { bigint: true });
      assert.equal(st.atimeNs, -1_500_000_000n);
      assert.equal(st.mtimeNs, -1n);
    }));

  test('lutimes takes Dates exactly to the millisecond and seconds to the nanosecond', () =>
    withDir(async (dir) => {
      const link = join(dir, 'link');
      symlinkSync('nowhere', link); // dangling: it must not be followed
      await lutimes(link, new Date(1_700_000_000_123), 1_600_000_000.5);
      const st = lstatSync(link, { bigint: true });
      assert.equal(st.atimeNs, 1_700_000_000_123_000_000n);
      assert.equal(st.mtimeNs, 1_600_000_000_500_000_000n);
    }));

  test('lutimes on a missing path fails ENOENT naming it', () =>
    withDir(async (dir) => {
      const missing = join(dir, 'missing');
      await rejectsWith(lutimesNs(missing, 0n, 0n), { code: 'ENOENT', syscall: 'utimensat', path: missing });
    }));
});

describe('openat2', () => {
  /**
   * dir/x            "host-x"   (outside the root: must never be reached)
   * dir/root/x       "root-x"
   * dir/root/a/b/    (empty)
   * dir/root/abs     -> /etc/passwd
   * dir/root/a/up    -> ../../x
   */
  async function withRoot(fn: (root: string, rootFd: number) => Promise<void>): Promise<void> {
    await withDir(async (dir) => {
      const root = join(dir, 'root');
      mkdirSync(join(root, 'a', 'b'), { recursive: true });
      writeFileSync(join(dir, 'x'), 'host-x');
      writeFileSync(join(root, 'x'), 'root-x');
      symlinkSync('/etc/passwd', join(root, 'abs'));
      symlinkSync('../../x', join(root, 'a', 'up'));
      const rootFd = await openat2(AT_FDCWD, root, { flags: O.PATH | O.DIRECTORY | O.CLOEXEC });
      try {
        await fn(root, rootFd);
      } finally {
        closeSync(rootFd);
      }
    });
  }

  const readFd = async (fd: number): Promise<string> => {
    try {
      const buf = Buffer.alloc(4096);
      return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString();
    } finally {
      closeSync(fd);
    }
  };

  test('RESOLVE_IN_ROOT: an absolute symlink to /etc/passwd resolves inside the root, never to the host file', () =>
    withRoot(async (root, rootFd) => {
      const how = { flags: O.RDONLY | O.CLOEXEC, resolve: RESOLVE.IN_ROOT };
      await rejectsWith(openat2(rootFd, 'abs', how), { code: 'ENOENT', syscall: 'openat2', path: 'abs' });
      mkdirSync(join(root, 'etc'));
      writeFileSync(join(root, 'etc', 'passwd'), 'the root’s passwd');
      assert.equal(await readFd(await openat2(rootFd, 'abs', how)), 'the root’s passwd');
      assert.equal(await readFd(await openat2(rootFd, '/etc/passwd', how)), 'the root’s passwd');
    }));

  test('RESOLVE_IN_ROOT: a symlink climbing out with ../.. stops at the root', () =>
    withRoot(async (_root, rootFd) => {
      const how = { flags: O.RDONLY | O.CLOEXEC, resolve: RESOLVE.IN_ROOT };
      assert.equal(await readFd(await openat2(rootFd, 'a/up', how)), 'root-x');
      assert.equal(await readFd(await openat2(rootFd, 'a/b/../../../../x', how)), 'root-x');
    }));

  test('RESOLVE_NO_SYMLINKS fails ELOOP on a path through a symlink', () =>
    withRoot(async (_root, rootFd) => {
      const how = { flags: O.RDONLY | O.CLOEXEC, resolve: RESOLVE.NO_SYMLINKS };
      await rejectsWith(openat2(rootFd, 'a/up', how), { code: 'ELOOP', syscall: 'openat2', path: 'a/up' });
      assert.equal(await readFd(await openat2(rootFd, 'x', how)), 'root-x');
    }));

  test('RESOLVE_BENEATH fails EXDEV for "..", an absolute symlink and a symlink climbing out', () =>
    withRoot(async (_root, rootFd) => {
      const how = { flags: O.RDONLY | O.CLOEXEC, resolve: RESOLVE.BENEATH };
      for (const p of ['../x', 'abs', 'a/up', '/etc/passwd']) {
        await rejectsWith(openat2(rootFd, p, how), { code: 'EXDEV', syscall: 'openat2', path: p });
      }
      assert.equal(await readFd(await openat2(rootFd, 'a/b/../../x', how)), 'root-x');
    }));

  test('O_CREAT|O_EXCL creates a file with the given mode inside the root; a second create fails EEXIST', () =>
    withRoot(async (root, rootFd) => {
      const how = { flags: O.WRONLY | O.CREAT | O.EXCL | O.CLOEXEC, mode: 0o640, resolve: RESOLVE.IN_ROOT };
      const fd = await openat2(rootFd, '/a/b/new', how);
      try {
        writeSync(fd, 'written');
      } finally {
        closeSync(fd);
      }
      assert.equal(readFileSync(join(root, 'a', 'b', 'new'), 'utf8'), 'written');
      assert.equal(statSync(join(root, 'a', 'b', 'new')).mode & 0o777, 0o640 & ~process.umask());
      await rejectsWith(openat2(rootFd, '/a/b/new', how), { code: 'EEXIST', syscall: 'openat2', path: '/a/b/new' });
    }));

  test('openat2 with a closed dirfd fails EBADF', async () => {
    await rejectsWith(openat2(99999, 'x', { flags: O.RDONLY }), { code: 'EBADF', syscall: 'openat2', path: 'x' });
  });
});

describe('renameat2', () => {
  test('RENAME_NOREPLACE fails EEXIST when the destination exists, leaving both files', () =>
    withDir(async (dir) => {
      const a = join(dir, 'a');
      const b = join(dir, 'b');
      writeFileSync(a, 'A');
      writeFileSync(b, 'B');
      await rejectsWith(renameat2(a, b, RENAME.NOREPLACE), { code: 'EEXIST', syscall: 'renameat2', path: a, dest: b });
      assert.equal(readFileSync(a, 'utf8'), 'A');
      assert.equal(readFileSync(b, 'utf8'), 'B');
    }));

  test('RENAME_NOREPLACE renames onto a free name', () =>
    withDir(async (dir) => {
      writeFileSync(join(dir, 'a'), 'A');
      await renameat2(join(dir, 'a'), join(dir, 'c'), RENAME.NOREPLACE);
      assert.deepEqual(readdirSync(dir), ['c']);
    }));

  test('RENAME_EXCHANGE swaps a file and a directory atomically', () =>
    withDir(async (dir) => {
      const f = join(dir, 'f');
      const d = join(dir, 'd');
      writeFileSync(f, 'file');
      mkdirSync(d);
      writeFileSync(join(d, 'inside'), 'in dir');
      await renameat2(f, d, RENAME.EXCHANGE);
      assert.equal(readFileSync(d, 'utf8'), 'file');
      assert.equal(readFileSync(join(f, 'inside'), 'utf8'), 'in dir');
    }));

  test('RENAME_EXCHANGE with a missing destination fails ENOENT', () =>
    withDir(async (dir) => {
      const a = join(dir, 'a');
      const missing = join(dir, 'missing');
      writeFileSync(a, 'A');
      await rejectsWith(renameat2(a, missing, RENAME.EXCHANGE), { code: 'ENOENT', path: a, dest: missing });
    }));

  test('RENAME_WHITEOUT leaves an overlay whiteout where the source was', () =>
    withDir(async (dir) => {
      writeFileSync(join(dir, 'a'), 'A');
      await renameat2(join(dir, 'a'), join(dir, 'b'), RENAME.WHITEOUT);
      assert.ok(isWhiteout(join(dir, 'a')));
      assert.equal(readFileSync(join(dir, 'b'), 'utf8'), 'A');
    }));
});

describe('ficlone', () => {
  /** Physical extents and flags of a file, from FIEMAP (filefrag -v). */
  function extents(path: string): { physical: string; flags: string }[] {
    const out = execFileSync('filefrag', ['-v', path], { encoding: 'utf8' });
    return [...out.matchAll(/^\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*\d+:.*?(\S*)$/gm)].map((m) => ({
      physical: m[1],
      flags: m[2],
    }));
  }

  async function cloneIn(dir: string, srcDir = dir): Promise<void> {
    const src = join(srcDir, 'src');
    writeFileSync(src, Buffer.alloc(1 << 20, 0x5a));
    const s = openSync(src, 'r');
    const d = openSync(join(dir, 'dst'), 'w');
    try {
      await ficlone(d, s);
    } finally {
      closeSync(s);
      closeSync(d);
    }
  }

  for (const fsType of ['btrfs', 'xfs'] as const) {
    test(`on ${fsType} the clone has the source's content and shares its extents; writes to it stay private`, () =>
      withLoopFs(
        fsType,
        fsType === 'xfs' ? 300 << 20 : 128 << 20,
        async (mnt) => {
          await cloneIn(mnt);
          const src = join(mnt, 'src');
          const dst = join(mnt, 'dst');
          assert.ok(readFileSync(dst).equals(readFileSync(src)));
          const [se, de] = [extents(src), extents(dst)];
          assert.ok(de.length > 0);
          assert.deepEqual(
            de.map((e) => e.physical),
            se.map((e) => e.physical),
          );
          assert.ok(de.every((e) => e.flags.includes('shared')), JSON.stringify(de));

          const fh = await open(dst, 'r+');
          await fh.write('changed', 0);
          await fh.close();
          assert.equal(readFileSync(src).subarray(0, 7).toString(), 'ZZZZZZZ');
        },
        { parent: scratch },
      ));
  }

  test('on tmpfs and ext4, which cannot share extents, ficlone fails EOPNOTSUPP', async () => {
    await withDir(async (dir) => {
      await mount('tmpfs', dir, 'tmpfs');
      try {
        await rejectsWith(cloneIn(dir), { code: ['ENOTSUP', 'EOPNOTSUPP'], syscall: 'ioctl_ficlone' });
      } finally {
        await umount(dir);
      }
    });
    await withLoopFs('ext4', 16 << 20, (mnt) => rejectsWith(cloneIn(mnt), { code: ['ENOTSUP', 'EOPNOTSUPP'] }), {
      parent: scratch,
    });
  });

  test('ficlone across two filesystems fails EXDEV', () =>
    withDir(async (dir) => {
      const a = join(dir, 'a');
      const b = join(dir, 'b');
      mkdirSync(a);
      mkdirSync(b);
      await mount('tmpfs', a, 'tmpfs');
      try {
        await mount('tmpfs', b, 'tmpfs');
        try {
          await rejectsWith(cloneIn(a, b), { code: 'EXDEV', syscall: 'ioctl_ficlone' });
        } finally {
          await umount(b);
        }
      } finally {
        await umount(a);
      }
    }));

  test('ficlone into a read-only fd fails EBADF', () =>
    withDir(async (dir) => {
      writeFileSync(join(dir, 'a'), 'a');
      const fd = openSync(join(dir, 'a'), 'r');
      try {
        await rejectsWith(ficlone(fd, fd), { code: 'EBADF', syscall: 'ioctl_ficlone' });
      } finally {
        closeSync(fd);
      }
    }));
});

describe('syncfs', () => {
  test('syncfs writes a file’s dirty data through to the device (seen in the loop image)', () =>
    withLoopFs(
      'ext4',
      16 << 20,
      async (mnt, fs) => {
        // A block-sized marker at file offset 0 lands block-aligned in the image.
        const marker = Buffer.alloc(4096, `tslayer-syncfs-${process.pid}-${Date.now()}|`);
        const fd = openSync(join(mnt, 'data'), 'w');
        try {
          writeSync(fd, marker);
          assert.equal(await imageHas(fs.image, marker), false, 'data is still only in the page cache');
          await syncfs(fd);
        } finally {
          closeSync(fd);
        }
        assert.equal(await imageHas(fs.image, marker), true);
      },
      { parent: scratch },
    ));

  test('syncfs on a closed fd fails EBADF', async () => {
    await rejectsWith(syncfs(99999), { code: 'EBADF', syscall: 'syncfs' });
  });

  async function imageHas(image: string, marker: Buffer): Promise<boolean> {
    const fh = await open(image, 'r');
    try {
      for await (const chunk of fh.createReadStream({ highWaterMark: 1 << 20 })) {
        if ((chunk as Buffer).indexOf(marker) >= 0) return true;
      }
      return false;
    } finally {
      await fh.close();
    }
  }
});

describe('flock', () => {
  async function withTwoOpens(fn: (a: number, b: number) => Promise<void>): Promise<void> {
    await withDir(async (dir) => {
      const p = join(dir, 'lock');
      writeFileSync(p, '');
      // Two open() calls: two open file descriptions, so the locks conflict.
      const a = openSync(p, 'r');
      const b = openSync(p, 'r');
      try {
        await fn(a, b);
      } finally {
        closeSync(a);
        closeSync(b);
      }
    });
  }

  test('LOCK_EX held by one open file makes LOCK_EX|LOCK_NB on another fail EWOULDBLOCK', () =>
    withTwoOpens(async (a, b) => {
      await flock(a, LOCK.EX);
      await rejectsWith(flock(b, LOCK.EX | LOCK.NB), { code: ['EAGAIN', 'EWOULDBLOCK'], syscall: 'flock' });
      await rejectsWith(flock(b, LOCK.SH | LOCK.NB), { code: ['EAGAIN', 'EWOULDBLOCK'], syscall: 'flock' });
      await flock(a, LOCK.UN);
      await flock(b, LOCK.EX | LOCK.NB);
    }));

  test('LOCK_SH is shared, but excludes LOCK_EX', () =>
    withTwoOpens(async (a, b) => {
      await flock(a, LOCK.SH);
      await flock(b, LOCK.SH | LOCK.NB);
      await rejectsWith(flock(a, LOCK.EX | LOCK.NB), { code: ['EAGAIN', 'EWOULDBLOCK'] });
    }));

  test('a blocking LOCK_EX waits off the event loop and resolves once the holder releases', () =>
    withTwoOpens(async (a, b) => {
      await flock(a, LOCK.EX);
      const events: string[] = [];
      const waiting = flock(b, LOCK.EX).then(() => events.push('acquired'));
      // The event loop keeps running while the lock is contended: these timers fire.
      await new Promise((r) => setTimeout(r, 50));
      events.push('timer fired');
      await new Promise((r) => setTimeout(r, 50));
      events.push('releasing');
      await flock(a, LOCK.UN);
      await waiting;
      assert.deepEqual(events, ['timer fired', 'releasing', 'acquired']);
      await rejectsWith(flock(a, LOCK.EX | LOCK.NB), { code: ['EAGAIN', 'EWOULDBLOCK'] });
    }));

  test('flock on a closed fd fails EBADF', async () => {
    await rejectsWith(flock(99999, LOCK.EX), { code: 'EBADF', syscall: 'flock' });
  });
});
