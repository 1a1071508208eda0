// The btrfs driver: the driver-agnostic suite on a btrfs made on a loop file, then what is
// particular to btrfs (subvolumes, read-only seals, usage from qgroups, the same layer
// as overlay for the same change, the error on a root that is not btrfs).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, link, lstat, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import tarStream from 'tar-stream';
import { differFor } from '../../src/archive/diff/index.js';
import { applyToMounts } from '../../src/snapshot/apply.js';
import { TslayerError } from '../../src/errors.js';
import { lgetxattr, llistxattr, lsetxattr, lutimesNs, subvolCreate, subvolInfo, subvolIsReadonly } from '../../src/native/index.js';
import { mountAll, openSnapshotter, unmountAll, type Mount, type StorageSnapshotter } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { makeLoopFs, withLoopFs, type LoopFs } from '../helpers/loop.js';
import { makeTmpDir, removeTmpDir, withTmpDir } from '../helpers/tmp.js';
import { snapshotterSuite } from './suite.js';

const run = promisify(execFile);
const SUBVOL_ROOT_INO = 256;

const scratch = await makeTmpDir('snapshot-btrfs');
let shared: Promise<LoopFs> | undefined;

/** The btrfs (on a loop file) the tests of this file share, made on first use. */
function sharedBtrfs(): Promise<LoopFs> {
  // 500 + 128 layers of tiny files: a few hundred subvolumes' worth of metadata.
  shared ??= makeLoopFs('btrfs', 2 * 1024 ** 3, { parent: scratch });
  return shared;
}

after(async () => {
  try {
    if (shared) await (await shared).dispose();
  } finally {
    await removeTmpDir(scratch); // fails the file if a mount or loop device is left under it
  }
});

/** A fresh store root on the shared btrfs. */
async function rootOnBtrfs(): Promise<string> {
  return mkdtemp(join((await sharedBtrfs()).mountpoint, 'root-'));
}

/** A btrfs snapshotter on a fresh store root on the shared loop btrfs. */
async function openOnBtrfs(namespace = 'testsuite'): Promise<StorageSnapshotter> {
  return openSnapshotter(await Store.open(await rootOnBtrfs()), 'btrfs', { namespace });
}

// The suite's own temp root is on the host's ext4: the store goes on btrfs instead.
snapshotterSuite('btrfs', () => openOnBtrfs());

function codeOf(e: unknown): string | undefined {
  return e instanceof TslayerError ? e.code : undefined;
}

async function withMounted<T>(mounts: Mount[], target: string, fn: () => Promise<T>): Promise<T> {
  await mountAll(mounts, target);
  try {
    return await fn();
  } finally {
    await unmountAll(target);
  }
}

/** The one bind source of an active or view snapshot: its subvolume. */
function sourceOf(mounts: Mount[]): string {
  assert.equal(mounts.length, 1);
  assert.equal(mounts[0]!.type, 'bind');
  return mounts[0]!.source;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

describe('btrfs driver', () => {
  it('refuses a root that is not on btrfs, naming the filesystem found and how to make a btrfs', () =>
    withTmpDir('btrfs-on-ext4', async (dir) => {
      const store = await Store.open(dir);
      await assert.rejects(openSnapshotter(store, 'btrfs'), (e: unknown) => {
        assert.equal(codeOf(e), 'FAILED_PRECONDITION', String(e));
        const msg = (e as Error).message;
        assert.match(msg, /ext4|ext2\/ext3\/ext4/, 'names the filesystem found');
        assert.match(msg, new RegExp(join(dir, 'snapshots', 'btrfs')), 'names the driver root');
        assert.match(msg, /mkfs\.btrfs \/dev\//, 'says how to make one on a device');
        assert.match(msg, /truncate -s .* mount -o loop/, 'and on a loop file');
        return true;
      });
    }));

  it('makes each snapshot a subvolume: prepare writable, commit read-only, view a read-only snapshot, remove destroys', async () => {
    const sn = await openOnBtrfs('subvolumes');
    try {
      const base = sourceOf(await sn.prepare('base-a'));
      let st = await stat(base);
      assert.equal(st.ino, SUBVOL_ROOT_INO, 'a root prepare is an empty subvolume');
      assert.equal(st.mode & 0o7777, 0o755);
      assert.deepEqual(await readdir(base), []);
      assert.equal(await subvolIsReadonly(base), false);
      await writeFile(join(base, 'f'), 'base\n');

      await sn.commit('base', 'base-a');
      assert.equal(await subvolIsReadonly(base), true, 'commit seals the subvolume');
      await assert.rejects(writeFile(join(base, 'g'), 'x'), { code: 'EROFS' });

      const child = sourceOf(await sn.prepare('child', 'base'));
      assert.notEqual(child, base);
      assert.equal((await stat(child)).ino, SUBVOL_ROOT_INO);
      assert.equal(await subvolIsReadonly(child), false, 'a prepare on a parent is a writable snapshot');
      // A snapshot, not a copy: the file is the same inode, and writing it leaves the parent alone.
      assert.equal((await stat(join(child, 'f'))).ino, (await stat(join(base, 'f'))).ino);
      await writeFile(join(child, 'f'), 'child\n');
      assert.equal(await readFile(join(base, 'f'), 'utf8'), 'base\n');

      const viewMounts = await sn.view('view', 'base');
      assert.deepEqual(viewMounts[0]!.options, ['ro', 'rbind']);
      const view = sourceOf(viewMounts);
      assert.equal(await subvolIsReadonly(view), true, 'a view is a read-only snapshot');
      assert.equal(await readFile(join(view, 'f'), 'utf8'), 'base\n');
      const target = join(scratch, 'view-mnt');
      await mkdir(target);
      await withMounted(viewMounts, target, async () => {
        await assert.rejects(writeFile(join(target, 'new'), 'x'), { code: 'EROFS' });
      });
      // Even a writable bind of a view's subvolume cannot change it.
      await withMounted([{ type: 'bind', source: view, options: ['rw', 'bind'] }], target, async () => {
        await assert.rejects(writeFile(join(target, 'new'), 'x'), { code: 'EROFS' });
      });
      await rm(target, { recursive: true });

      const rootView = sourceOf(await sn.view('root-view'));
      assert.equal(await subvolIsReadonly(rootView), true);
      assert.equal((await stat(rootView)).mode & 0o7777, 0o755);

      await sn.remove('view');
      await sn.remove('root-view');
      assert.equal(await exists(view), false, 'remove destroys the subvolume');
      await assert.rejects(sn.remove('base'), (e: unknown) => codeOf(e) === 'FAILED_PRECONDITION');
      assert.equal(await exists(base), true, 'a parent with children is kept');
      await sn.remove('child');
      await sn.remove('base');
      assert.deepEqual(await readdir(sn.layout.root), [], 'nothing left in the driver root');
    } finally {
      await sn.close();
    }
  });

  it('removes a snapshot with subvolumes made inside it', async () => {
    const sn = await openOnBtrfs('nested');
    try {
      const fs = sourceOf(await sn.prepare('a'));
      await subvolCreate(join(fs, 'inner'));
      await mkdir(join(fs, 'deep', 'er'), { recursive: true });
      await subvolCreate(join(fs, 'deep', 'er', 'inner2'));
      await subvolCreate(join(fs, 'inner', 'nested'));
      await writeFile(join(fs, 'inner', 'nested', 'f'), 'x');
      await sn.remove('a');
      assert.equal(await exists(fs), false);
      assert.deepEqual(await readdir(sn.layout.root), []);
    } finally {
      await sn.close();
    }
  });

  it('cleanup destroys the half-built subvolume of a process that died while preparing', async () => {
    const store = await Store.open(await rootOnBtrfs());
    let sn = await openSnapshotter(store, 'btrfs');
    await sn.close();
    // A pid that cannot be alive (above pid_max), as a crashed process leaves it.
    const debris = join(sn.layout.root, 'new-4194305-77');
    await mkdir(debris);
    await subvolCreate(join(debris, 'fs'));
    await writeFile(join(debris, 'fs', 'half'), 'x');
    sn = await openSnapshotter(store, 'btrfs');
    await sn.close();
    assert.equal(await exists(debris), false);
  });
});

describe('btrfs usage', () => {
  it('subvolInfo names the filesystem (as sysfs does) and the subvolume; off btrfs it fails ENOTTY', async () => {
    const fs = await sharedBtrfs();
    const top = await subvolInfo(fs.mountpoint);
    assert.equal(top.id, 5, 'the top-level subvolume');
    assert.match(top.fsid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.ok(await exists(`/sys/fs/btrfs/${top.fsid}`), 'sysfs knows the fsid');
    const dir = await mkdtemp(join(fs.mountpoint, 'info-'));
    await subvolCreate(join(dir, 'a'));
    await subvolCreate(join(dir, 'b'));
    const [a, b] = [await subvolInfo(join(dir, 'a')), await subvolInfo(join(dir, 'b'))];
    assert.ok(a.id >= 256 && b.id === a.id + 1, `new subvolumes get fresh ids: ${a.id}, ${b.id}`);
    assert.equal(a.fsid, top.fsid);
    await assert.rejects(subvolInfo(scratch), { code: 'ENOTTY', path: scratch });
  });

  it('counts a one-byte write into a large lower file as the whole file by the walk, as a block by qgroups', () =>
    withLoopFs(
      'btrfs',
      512 << 20,
      async (mnt) => {
        const sn = await openSnapshotter(await Store.open(join(mnt, 'root')), 'btrfs');
        try {
          const SIZE = 64 << 20;
          const base = sourceOf(await sn.prepare('base-a'));
          const chunk = Buffer.alloc(1 << 20, 0x5a);
          const fh = await open(join(base, 'big'), 'w');
          for (let i = 0; i < SIZE / chunk.length; i++) await fh.write(chunk);
          await fh.close();
          await sn.commit('base', 'base-a');

          const child = sourceOf(await sn.prepare('child', 'base'));
          const w = await open(join(child, 'big'), 'r+');
          await w.write(Buffer.from('!'), 0, 1, 12345);
          await w.close();

          const committed = await sn.usage('base');
          assert.ok(committed.size >= SIZE, `committed base holds the file: ${committed.size}`);
          assert.equal(committed.inodes, 2, 'the root and the file');

          // Quotas off: the walk against the parent counts the changed file whole.
          const walked = await sn.usage('child');
          assert.ok(walked.size >= SIZE, `walk counts the whole changed file: ${walked.size}`);
          assert.equal(walked.inodes, 1, 'only the file changed');

          await run('btrfs', ['quota', 'enable', mnt]);
          await run('btrfs', ['quota', 'rescan', '-w', mnt]);
          const exclusive = await sn.usage('child');
          assert.ok(exclusive.size > 0 && exclusive.size < 1 << 20, `qgroups count the block written: ${exclusive.size}`);
          assert.equal(exclusive.inodes, 1);

          // A view shares everything with its parent.
          await sn.view('view', 'base');
          assert.ok((await sn.usage('view')).size < 1 << 20);
          assert.equal((await sn.usage('view')).inodes, 0);
          await sn.remove('view');
          await sn.remove('child');
          await sn.remove('base');
        } finally {
          await sn.close();
        }
      },
      { parent: scratch },
    ));
});

// ---- the commit differ: the same change, the same layer as overlay --------------------

const T0 = 1_600_000_000n * 1_000_000_000n;
const T1 = 1_700_000_000n * 1_000_000_000n + 123_456_789n;

/** Writes the base tree into `dir` (the source of a root snapshot), every time set to T0. */
async function writeBase(dir: string): Promise<void> {
  await mkdir(join(dir, 'etc'));
  await writeFile(join(dir, 'etc', 'a'), 'a0\n');
  await writeFile(join(dir, 'etc', 'b'), 'b0\n');
  await writeFile(join(dir, 'etc', 'keep'), 'k\n');
  await mkdir(join(dir, 'd'));
  await writeFile(join(dir, 'd', 'x'), 'x\n');
  await writeFile(join(dir, 'd', 'y'), 'y\n');
  await mkdir(join(dir, 'gone'));
  await writeFile(join(dir, 'gone', 'g'), 'g\n');
  await mkdir(join(dir, 'bin'));
  await writeFile(join(dir, 'bin', 'tool'), '#!/bin/sh\n', { mode: 0o755 });
  await symlink('etc/a', join(dir, 'lnk'));
  for (const p of ['etc/a', 'etc/b', 'etc/keep', 'etc', 'd/x', 'd/y', 'd', 'gone/g', 'gone', 'bin/tool', 'bin', 'lnk', '.']) {
    await lutimesNs(join(dir, p), T0, T0);
  }
}

/** The change, made through a mounted active snapshot; every time it touches is set to T1. */
async function writeChange(dir: string): Promise<void> {
  await writeFile(join(dir, 'etc', 'a'), 'a1 changed\n');
  await unlink(join(dir, 'etc', 'b'));
  await writeFile(join(dir, 'etc', 'c'), 'c new\n');
  await link(join(dir, 'etc', 'c'), join(dir, 'etc', 'c2'));
  await lsetxattr(join(dir, 'etc', 'keep'), 'user.note', Buffer.from('kept'));
  await unlink(join(dir, 'd', 'x'));
  await rm(join(dir, 'gone'), { recursive: true });
  await chmod(join(dir, 'bin', 'tool'), 0o700);
  await mkdir(join(dir, 'newdir'));
  await writeFile(join(dir, 'newdir', 'n'), 'n\n');
  await symlink('etc/c', join(dir, 'lnk2'));
  for (const p of ['etc/a', 'etc/c', 'etc', 'd', 'newdir/n', 'newdir', 'lnk2', '.']) {
    await lutimesNs(join(dir, p), T1, T1);
  }
}

interface Layer {
  digest: string;
  entries: string[];
}

/** sha256 and a readable listing of a layer tar stream. */
async function readLayer(tar: NodeJS.ReadableStream): Promise<Layer> {
  const hash = createHash('sha256');
  const extract = tarStream.extract();
  const entries: string[] = [];
  extract.on('entry', (h, stream, next) => {
    entries.push(`${h.type} ${h.name} ${(h.mode ?? 0).toString(8)} ${h.uid}:${h.gid} ${h.size} ${h.mtime?.getTime()} ${h.linkname ?? ''}`);
    stream.on('end', next);
    stream.resume();
  });
  const done = new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  tar.on('data', (b: Buffer) => hash.update(b));
  tar.pipe(extract as unknown as NodeJS.WritableStream);
  await done;
  return { digest: `sha256:${hash.digest('hex')}`, entries };
}

/** Makes base + change on `sn` and returns the layer its driver's differ writes for the change. */
async function layerFor(sn: StorageSnapshotter, work: string, tmpDir: string): Promise<Layer> {
  const mnt = join(work, `mnt-${sn.driver}`);
  await mkdir(mnt);
  await withMounted(await sn.prepare('base-a'), mnt, () => writeBase(mnt));
  await sn.commit('base', 'base-a');
  const upper = await sn.prepare('change', 'base');
  await withMounted(upper, mnt, () => writeChange(mnt));
  const differ = differFor(sn.driver);
  const lower = differ.needsParentView ? await sn.view('base-view', 'base') : undefined;
  try {
    return await readLayer(differ.diff({ upper, ...(lower && { lower }), tmpDir }));
  } finally {
    if (lower) await sn.remove('base-view');
  }
}

describe('btrfs commit differ', () => {
  it('writes the same layer tar for the same change as the overlay driver does', () =>
    withTmpDir('btrfs-vs-overlay', async (work) => {
      const mask = process.umask(0o022);
      try {
        const ov = await openSnapshotter(await Store.open(join(work, 'overlay-root')), 'overlay');
        const bt = await openOnBtrfs('differ');
        try {
          const overlayLayer = await layerFor(ov, work, work);
          const btrfsLayer = await layerFor(bt, work, work);
          assert.deepEqual(btrfsLayer.entries, overlayLayer.entries);
          assert.equal(btrfsLayer.digest, overlayLayer.digest);
          assert.ok(overlayLayer.entries.some((e) => e.includes('etc/.wh.b')), 'the change has whiteouts');
        } finally {
          await ov.close();
          await bt.close();
        }
      } finally {
        process.umask(mask);
      }
    }));
});

// ---- layer apply: the layer corpus gives the same trees as on overlay ------------------

interface CorpusCase {
  name: string;
  hostile: boolean;
  layers: number;
  error?: unknown;
}

const STARTED = Date.now() - 60_000;

/** Every entry of a tree: type, mode, owner, mtime, size, content hash, link target, link count, xattrs. */
async function fullListing(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const abs = join(root, p);
      const st = await lstat(abs);
      const xattrs: string[] = [];
      for (const x of (await llistxattr(abs)).sort()) xattrs.push(`${x}=${(await lgetxattr(abs, x)).toString('hex')}`);
      let detail = '';
      if (st.isFile()) detail = `${st.size} ${createHash('sha256').update(await readFile(abs)).digest('hex').slice(0, 16)} nlink=${st.nlink}`;
      else if (st.isSymbolicLink()) detail = `-> ${await readlink(abs)}`;
      else if (!st.isDirectory()) detail = `rdev=${st.rdev}`;
      // Implied parent directories get the time of the apply: equal as "recent", not to the second.
      const mtime = st.mtimeMs >= STARTED ? 'recent' : Math.floor(st.mtimeMs / 1000);
      out.push(`${p} ${st.mode.toString(8)} ${st.uid}:${st.gid} mtime=${mtime} ${detail} ${xattrs.join(',')}`);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk('');
  return out;
}

/** Applies `case`'s layers as a chain of snapshots on `sn`; returns the top's full listing. */
async function applyCase(sn: StorageSnapshotter, dir: string, c: CorpusCase, tmpDir: string): Promise<string[]> {
  let parent: string | undefined;
  for (let i = 0; i < c.layers; i++) {
    const key = `${c.name}-${i}`;
    const mounts = await sn.prepare(`${key}-a`, parent);
    await applyToMounts(createReadStream(join(dir, c.name, `layer-${i}.tar`)), mounts, { tmpDir, layer: `${c.name}/layer-${i}` });
    await sn.commit(key, `${key}-a`);
    parent = key;
  }
  const target = join(tmpDir, `view-${sn.driver}-${c.name}`);
  await mkdir(target);
  try {
    return await withMounted(await sn.view(`${c.name}-view`, parent), target, () => fullListing(target));
  } finally {
    await sn.remove(`${c.name}-view`);
    await rm(target, { recursive: true });
  }
}

describe('btrfs layer apply', () => {
  it('applies every case of the layer corpus to the same tree as overlay, with no overlay markers', () =>
    withTmpDir('btrfs-corpus', async (work) => {
      const corpus = join(work, 'corpus');
      await run(process.execPath, [new URL('../../../fixtures/layer-corpus.mjs', import.meta.url).pathname, corpus]);
      const names = (JSON.parse(await readFile(join(corpus, 'index.json'), 'utf8')) as { cases: string[] }).cases;
      const cases: CorpusCase[] = [];
      for (const n of names) cases.push(JSON.parse(await readFile(join(corpus, n, 'case.json'), 'utf8')) as CorpusCase);
      const normal = cases.filter((c) => !c.hostile && c.error === undefined);
      assert.ok(normal.length >= 20, `the corpus has its normal cases (${normal.length})`);
      const ov = await openSnapshotter(await Store.open(join(work, 'overlay-root')), 'overlay');
      const bt = await openOnBtrfs('corpus');
      try {
        for (const c of normal) {
          const want = await applyCase(ov, corpus, c, work);
          const got = await applyCase(bt, corpus, c, work);
          assert.deepEqual(got, want, `case ${c.name}`);
          assert.ok(got.length > 0 || c.name === 'empty-layers', `case ${c.name} made a tree`);
          for (const line of got) {
            assert.doesNotMatch(line, /trusted\.overlay\./, `case ${c.name}: no overlay xattr on btrfs`);
            assert.doesNotMatch(line, / 20000 .* rdev=0 /, `case ${c.name}: no whiteout device on btrfs`);
          }
        }
      } finally {
        await ov.close();
        await bt.close();
      }
    }));
});
