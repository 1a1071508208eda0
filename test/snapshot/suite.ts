/**
 * containerd's snapshotter test suite (snapshots/testsuite), ported case by case so that
 * every driver runs the same checks. A driver's test file calls:
 *
 *   snapshotterSuite('overlay', (root) => makeMySnapshotter(root), { maxLowerLayers: 500 });
 *
 * `make` gets an empty directory to keep its state in and returns a Snapshotter; the
 * suite closes it. Tests mount for real (root), and every mount is undone in `finally`;
 * the temp dir's removal fails the test if anything is still mounted under it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import { mountAll, splitLowerdir, unmountAll } from '../../src/snapshot/mount.js';
import type { Info, Mount, Snapshotter } from '../../src/snapshot/types.js';
import {
  apply,
  checkDirectoryEqual,
  checkDirectoryEqualWithApplier,
  chown,
  createDir,
  createFile,
  hardlink,
  removeAll,
  renamePath,
  type Applier,
} from '../helpers/fstest.js';
import { mountAt } from '../helpers/leftovers.js';
import { withTmpDir } from '../helpers/tmp.js';

export type MakeSnapshotter = (root: string) => Promise<Snapshotter>;

export interface SuiteOptions {
  /** The most lower layers one mount can take (overlayfs: 500); checked to fail beyond. */
  maxLowerLayers?: number;
  /**
   * Depth of the deep-stack case (default 500). A driver that copies each snapshot
   * (native) pays O(depth^2) file copies for it and stacks nothing, so it may ask for less.
   */
  deepLayers?: number;
}

const gcRoot = () => ({ labels: { 'containerd.io/gc.root': new Date().toISOString() } });

function codeOf(e: unknown): string | undefined {
  return e instanceof TslayerError ? e.code : undefined;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.equal(codeOf(e), code, `expected ${code}, got ${String(e)}`);
    return true;
  });
}

/** Mounts, runs fn, unmounts whatever happens. */
async function withMounted<T>(mounts: Mount[], target: string, fn: () => Promise<T>): Promise<T> {
  await mountAll(mounts, target);
  try {
    return await fn();
  } finally {
    await unmountAll(target);
  }
}

/** Applies `a` to an active snapshot through its mounts (on a fresh temp dir). */
async function applyToMounts(m: Mount[], work: string, a: Applier): Promise<void> {
  const td = await mkdtemp(join(work, 'prepare'));
  try {
    await withMounted(m, td, () => a(td));
  } finally {
    await rm(td, { recursive: true, force: true });
  }
}

async function createSnapshot(sn: Snapshotter, parent: string | undefined, work: string, a: Applier): Promise<string> {
  const n = `snap-${randomBytes(6).toString('hex')}`;
  const prepare = `${n}-prepare`;
  const m = await sn.prepare(prepare, parent, gcRoot());
  await applyToMounts(m, work, a);
  await sn.commit(n, prepare, gcRoot());
  return n;
}

async function checkSnapshot(sn: Snapshotter, work: string, name: string, check: string): Promise<void> {
  const td = await mkdtemp(join(work, 'check'));
  const view = `${name}-view`;
  try {
    const m = await sn.view(view, name, gcRoot());
    try {
      await withMounted(m, td, () => checkDirectoryEqual(check, td));
    } finally {
      await sn.remove(view);
    }
  } finally {
    await rm(td, { recursive: true, force: true });
  }
}

/** Builds a chain, one snapshot per applier, checking each against a flat directory. */
async function checkSnapshots(sn: Snapshotter, work: string, ...as: Applier[]): Promise<void> {
  const flat = await mkdtemp(join(work, 'flat'));
  let parent: string | undefined;
  for (const [i, a] of as.entries()) {
    const s = await createSnapshot(sn, parent, work, a);
    await a(flat);
    try {
      await checkSnapshot(sn, work, s, flat);
    } catch (e) {
      throw new Error(`snapshot ${i + 1} differs from the flat tree: ${(e as Error).message}`);
    }
    parent = s;
  }
}

/** Writes into an active snapshot without mounting where its mounts allow (the applier fast path). */
async function writeThroughMounts(m: Mount[], work: string, a: Applier): Promise<void> {
  if (m.length === 1 && m[0].type === 'bind' && !m[0].options.includes('ro')) return a(m[0].source);
  const upper = m.length === 1 && m[0].type === 'overlay' ? m[0].options.find((o) => o.startsWith('upperdir=')) : undefined;
  if (upper) return a(splitLowerdir(upper.slice('upperdir='.length))[0]);
  return applyToMounts(m, work, a);
}

export function snapshotterSuite(name: string, make: MakeSnapshotter, opts: SuiteOptions = {}): void {
  describe(`snapshotter suite: ${name}`, () => {
    let mask = 0;
    before(() => {
      mask = process.umask(0); // modes in the cases are exact, as in containerd's suite
    });
    after(() => {
      process.umask(mask);
    });

    const test = (title: string, fn: (sn: Snapshotter, work: string) => Promise<void>) =>
      it(title, () =>
        withTmpDir(`snapshot-suite-${name}`, async (tmp) => {
          const root = join(tmp, 'root');
          const work = join(tmp, 'work');
          await mkdir(root);
          await mkdir(work);
          const sn = await make(root);
          try {
            await fn(sn, work);
          } finally {
            await sn.close();
          }
        }),
      );

    test('Basic: prepare, commit, prepare on top, commit, view the chain, remove in order', async (sn, work) => {
      const initial = apply(
        createFile('/foo', 'foo\n', 0o777),
        createDir('/a', 0o755),
        createDir('/a/b', 0o755),
        createDir('/a/b/c', 0o755),
      );
      const diff = apply(createFile('/bar', 'bar\n', 0o777), createFile('/foo', 'bar\n', 0o777), removeAll('/a/b'));

      const preparing = join(work, 'preparing');
      await mkdir(preparing);
      let mounts = await sn.prepare(preparing, undefined, gcRoot());
      assert.ok(mounts.length >= 1, 'expected mounts');
      await withMounted(mounts, preparing, () => initial(preparing));

      const committed = join(work, 'committed');
      await sn.commit(committed, preparing, gcRoot());
      const si = await sn.stat(committed);
      assert.equal(si.parent, undefined);
      assert.equal(si.kind, 'committed');
      await rejectsWith(sn.stat(preparing), 'NOT_FOUND');

      const next = join(work, 'nextlayer');
      await mkdir(next);
      mounts = await sn.prepare(next, committed, gcRoot());
      await withMounted(mounts, next, async () => {
        await checkDirectoryEqualWithApplier(next, initial, work);
        await diff(next);
      });
      const ni = await sn.stat(next);
      assert.equal(ni.parent, committed);
      assert.equal(ni.kind, 'active');

      const nextCommitted = join(work, 'committed-next');
      await sn.commit(nextCommitted, next, gcRoot());
      const si2 = await sn.stat(nextCommitted);
      assert.equal(si2.parent, committed);
      assert.equal(si2.kind, 'committed');
      await rejectsWith(sn.stat(next), 'NOT_FOUND');

      const walked = new Map<string, Info>();
      await sn.walk((i) => {
        walked.set(i.name, i);
      });
      assert.deepEqual(walked.get(si.name), si);
      assert.deepEqual(walked.get(si2.name), si2);

      const nextnext = join(work, 'nextnextlayer');
      await mkdir(nextnext);
      mounts = await sn.view(nextnext, nextCommitted, gcRoot());
      await withMounted(mounts, nextnext, () => checkDirectoryEqualWithApplier(nextnext, apply(initial, diff), work));

      await sn.remove(nextnext);
      await assert.rejects(sn.remove(committed), /remove/);
      await sn.remove(nextCommitted);
      await sn.remove(committed);
    });

    test('StatActive: a prepared snapshot stats as active with no parent', async (sn, work) => {
      const preparing = join(work, 'preparing');
      await mkdir(preparing);
      const mounts = await sn.prepare(preparing, undefined, gcRoot());
      assert.ok(mounts.length >= 1);
      await withMounted(mounts, preparing, async () => {
        await writeFile(join(preparing, 'foo'), 'foo\n', { mode: 0o777 });
        const si = await sn.stat(preparing);
        assert.equal(si.name, preparing);
        assert.equal(si.kind, 'active');
        assert.equal(si.parent, undefined);
      });
    });

    test('StatCommitted: a committed snapshot stats as committed under its new name', async (sn, work) => {
      const preparing = join(work, 'preparing');
      await mkdir(preparing);
      const mounts = await sn.prepare(preparing, undefined, gcRoot());
      await withMounted(mounts, preparing, async () => {
        await writeFile(join(preparing, 'foo'), 'foo\n', { mode: 0o777 });
        const committed = join(work, 'committed');
        await sn.commit(committed, preparing, gcRoot());
        const si = await sn.stat(committed);
        assert.equal(si.name, committed);
        assert.equal(si.kind, 'committed');
        assert.equal(si.parent, undefined);
      });
    });

    test('Transitivity: A <- B: B names A as parent, A has none', async (sn, work) => {
      const preparing = join(work, 'preparing');
      const next = join(work, 'next');
      await mkdir(preparing);
      await mkdir(next);
      const snapA = join(work, 'snapA');
      const snapB = join(work, 'snapB');
      await withMounted(await sn.prepare(preparing, undefined, gcRoot()), preparing, async () => {
        await writeFile(join(preparing, 'foo'), 'foo\n');
        await sn.commit(snapA, preparing, gcRoot());
        await withMounted(await sn.prepare(next, snapA, gcRoot()), next, async () => {
          await writeFile(join(next, 'foo'), 'foo bar\n');
          await sn.commit(snapB, next, gcRoot());
        });
      });
      const siA = await sn.stat(snapA);
      const siB = await sn.stat(snapB);
      const siParentB = await sn.stat(siB.parent!);
      assert.equal(siA.parent, undefined);
      assert.equal(siB.parent, snapA);
      assert.equal(siParentB.parent, undefined);
    });

    test('PrepareView: a key taken by prepare or view cannot be taken again (ALREADY_EXISTS)', async (sn, work) => {
      const preparing = join(work, 'preparing');
      await mkdir(preparing);
      const snapA = join(work, 'snapA');
      await withMounted(await sn.prepare(preparing, undefined, gcRoot()), preparing, () =>
        sn.commit(snapA, preparing, gcRoot()),
      );
      const newLayer = join(work, 'newlayer');
      await sn.prepare(newLayer, snapA, gcRoot());
      await rejectsWith(sn.view(newLayer, snapA, gcRoot()), 'ALREADY_EXISTS');
      const prepLayer = join(work, 'prepLayer');
      await sn.prepare(prepLayer, snapA, gcRoot());
      await rejectsWith(sn.prepare(prepLayer, snapA, gcRoot()), 'ALREADY_EXISTS');
      const viewLayer = join(work, 'viewLayer');
      await sn.view(viewLayer, snapA, gcRoot());
      await rejectsWith(sn.view(viewLayer, snapA, gcRoot()), 'ALREADY_EXISTS');
    });

    test('Update: labels are replaced, set and removed by fieldpath; kind, parent and created are not', async (sn) => {
      const t1 = Date.now();
      await sn.prepare('c1-a', undefined, gcRoot());
      await sn.commit('c1', 'c1-a', gcRoot());
      await sn.prepare('c2-a', 'c1', gcRoot());
      await sn.commit('c2', 'c2-a', gcRoot());
      await sn.prepare('a1', 'c2', gcRoot());
      await sn.prepare('a2', undefined, gcRoot());
      await sn.view('v1', 'c2', gcRoot());
      await sn.view('v2', undefined, gcRoot());
      const t2 = Date.now();
      const cases: Array<{ name: string; kind: Info['kind']; parent?: string }> = [
        { name: 'c1', kind: 'committed' },
        { name: 'c2', kind: 'committed', parent: 'c1' },
        { name: 'a1', kind: 'active', parent: 'c2' },
        { name: 'a2', kind: 'active' },
        { name: 'v1', kind: 'view', parent: 'c2' },
        { name: 'v2', kind: 'view' },
      ];
      for (const tc of cases) {
        let st = await sn.stat(tc.name);
        assert.ok(st.created.getTime() >= t1 && st.created.getTime() <= t2, `${tc.name}: created in range`);
        assert.equal(st.created.getTime(), st.updated.getTime(), `${tc.name}: updated == created`);
        assert.equal(st.kind, tc.kind);
        assert.equal(st.parent, tc.parent);
        assert.equal(st.name, tc.name);
        const createdAt = st.created.getTime();
        const rootTime = new Date().toISOString();
        let expected: Record<string, string> = { l1: 'v1', l2: 'v2', l3: 'v3', 'containerd.io/gc.root': rootTime };
        const u1 = Date.now();
        st = await sn.update({ ...st, parent: 'doesnotexist', labels: expected });
        const u2 = Date.now();
        assert.equal(st.created.getTime(), createdAt);
        assert.ok(st.updated.getTime() >= u1 && st.updated.getTime() <= u2, `${tc.name}: updated in range`);
        assert.equal(st.kind, tc.kind);
        assert.equal(st.parent, tc.parent);
        assert.equal(st.name, tc.name);
        assert.deepEqual(st.labels, expected);

        expected = { l1: 'updated', l3: 'v3', 'containerd.io/gc.root': rootTime };
        st = await sn.update({ ...st, labels: { l1: 'updated', l4: 'v4' } }, ['labels.l1', 'labels.l2']);
        assert.deepEqual(st.labels, expected);

        expected = { l4: 'v4', 'containerd.io/gc.root': rootTime };
        st = await sn.update({ ...st, labels: expected }, ['labels']);
        assert.deepEqual(st.labels, expected);
        assert.deepEqual((await sn.stat(tc.name)).labels, expected, 'update is stored');

        await rejectsWith(sn.update({ ...st, parent: 'doesnotexist' }, ['parent']), 'INVALID_ARGUMENT');
      }
    });

    test('Remove: a removed key can be reused by prepare, view and commit', async (sn) => {
      await sn.prepare('committed-a', undefined, gcRoot());
      await sn.commit('committed-1', 'committed-a', gcRoot());
      await sn.prepare('reuse-1', 'committed-1', gcRoot());
      await sn.remove('reuse-1');
      await sn.view('reuse-1', 'committed-1', gcRoot());
      await sn.remove('reuse-1');
      await sn.prepare('reuse-1', undefined, gcRoot());
      await sn.remove('committed-1');
      await sn.commit('committed-1', 'reuse-1', gcRoot());
    });

    test('Walk: filters on kind, name, parent and labels select the right snapshots', async (sn) => {
      const o = { labels: { 'containerd.io/gc.root': 'check-walk' } };
      const wl = (l: string) => ({ labels: { l, 'containerd.io/gc.root': 'check-walk' } });
      await sn.prepare('a-np', undefined, o);
      await sn.prepare('p-tmp', undefined, o);
      await sn.commit('p', 'p-tmp', o);
      await sn.prepare('a', 'p', o);
      await sn.view('v', 'p', o);
      await sn.prepare('p-wl-tmp', undefined, o);
      await sn.commit('p-wl', 'p-wl-tmp', wl('1'));
      await sn.prepare('a-wl', 'p-wl', wl('2'));
      await sn.view('v-wl', 'p-wl', wl('3'));
      await sn.prepare('a-np-wl', undefined, wl('2'));
      const cases: Array<[string[], string[]]> = [
        [['a-np', 'p', 'a', 'v', 'p-wl', 'a-wl', 'v-wl', 'a-np-wl'], ['labels."containerd.io/gc.root"==check-walk']],
        [['a-np', 'a', 'a-wl', 'a-np-wl'], ['kind==active,labels."containerd.io/gc.root"==check-walk']],
        [['v', 'v-wl'], ['kind==view,labels."containerd.io/gc.root"==check-walk']],
        [['p', 'p-wl'], ['kind==committed,labels."containerd.io/gc.root"==check-walk']],
        [['p', 'a-np-wl'], ['name==p', 'name==a-np-wl']],
        [['a-wl'], ['name==a-wl,labels.l']],
        [['a', 'v'], ['parent==p']],
        [['a', 'v', 'a-wl', 'v-wl'], ['parent!="",labels."containerd.io/gc.root"==check-walk']],
        [['p-wl', 'a-wl', 'v-wl', 'a-np-wl'], ['labels.l']],
        [['a-wl', 'a-np-wl'], ['labels.l==2']],
      ];
      for (const [i, [matches, filters]] of cases.entries()) {
        const actual: string[] = [];
        await sn.walk((info) => {
          actual.push(info.name);
        }, ...filters);
        assert.deepEqual(actual.sort(), [...matches].sort(), `case ${i}: ${filters.join(' | ')}`);
      }
    });

    test('LayerFileUpdate: a file changed in an upper layer shows the new content, five times over', async (sn, work) => {
      const l1 = apply(
        createDir('/etc', 0o700),
        createFile('/etc/hosts', 'mydomain 10.0.0.1', 0o644),
        createFile('/etc/profile', 'PATH=/usr/bin', 0o644),
      );
      const l2 = apply(
        createFile('/etc/hosts', 'mydomain 10.0.0.2', 0o644),
        createFile('/etc/profile', 'PATH=/usr/bin', 0o666),
        createDir('/root', 0o700),
        createFile('/root/.bashrc', 'PATH=/usr/sbin:/usr/bin', 0o644),
      );
      for (let i = 0; i < 5; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000))); // next second boundary
        await checkSnapshots(sn, work, l1, l2);
      }
    });

    test('RemoveDirectoryInLowerLayer: a directory removed and recreated hides the lower one', async (sn, work) => {
      await checkSnapshots(
        sn,
        work,
        apply(createDir('/lib', 0o700), createFile('/lib/hidden', '', 0o644)),
        apply(removeAll('/lib'), createDir('/lib', 0o700), createFile('/lib/not-hidden', '', 0o644)),
        apply(createFile('/lib/newfile', '', 0o644)),
      );
    });

    test('Chown: ownership changed in an upper layer applies to lower files and directories', async (sn, work) => {
      await checkSnapshots(
        sn,
        work,
        apply(
          createDir('/opt', 0o700),
          createDir('/opt/a', 0o700),
          createDir('/opt/a/b', 0o700),
          createFile('/opt/a/b/file.txt', 'hello', 0o644),
        ),
        apply(chown('/opt', 1, 1), chown('/opt/a', 1, 1), chown('/opt/a/b', 1, 1), chown('/opt/a/b/file.txt', 1, 1)),
      );
    });

    test('DirectoryPermissionOnCommit: owners of recreated and chowned directories survive commit', async (sn, work) => {
      await checkSnapshots(
        sn,
        work,
        apply(
          createDir('/dir1', 0o700),
          createDir('/dir2', 0o700),
          createDir('/dir3', 0o700),
          createDir('/dir4', 0o700),
          createFile('/dir4/f1', '...', 0o644),
          createDir('/dir5', 0o700),
          createFile('/dir5/f1', '...', 0o644),
          chown('/dir1', 1, 1),
          chown('/dir2', 1, 1),
          chown('/dir3', 1, 1),
          chown('/dir5', 1, 1),
          chown('/dir5/f1', 1, 1),
        ),
        apply(chown('/dir2', 0, 0), removeAll('/dir3'), chown('/dir4', 1, 1), chown('/dir4/f1', 1, 1)),
        apply(
          createDir('/dir3', 0o700),
          chown('/dir3', 1, 1),
          removeAll('/dir5'),
          createDir('/dir5', 0o700),
          chown('/dir5', 1, 1),
        ),
      );
    });

    test('RemoveIntermediateSnapshot: a parent cannot be removed before its child (FAILED_PRECONDITION)', async (sn, work) => {
      const base = join(work, 'base');
      await mkdir(base);
      await withMounted(await sn.prepare(base, undefined, gcRoot()), base, async () => {
        const committedBase = join(work, 'committed-base');
        await sn.commit(committedBase, base, gcRoot());
        const intermediate = join(work, 'intermediate');
        await sn.prepare(intermediate, committedBase, gcRoot());
        const committedInter = join(work, 'committed-inter');
        await sn.commit(committedInter, intermediate, gcRoot());
        const top = join(work, 'toplayer');
        await sn.prepare(top, committedInter, gcRoot());
        await rejectsWith(sn.remove(committedInter), 'FAILED_PRECONDITION');
        await sn.remove(top);
        await sn.remove(committedInter);
      });
      await sn.remove(join(work, 'committed-base'));
    });

    test('DeletedFilesInChildSnapshot: a file deleted in a child stays deleted in its children', async (sn, work) => {
      await checkSnapshots(
        sn,
        work,
        apply(createFile('/foo', 'foo\n', 0o777), createFile('/foobar', 'foobar\n', 0o777)),
        apply(removeAll('/foobar')),
        apply(),
      );
    });

    test('MoveFileFromLowerLayer: a lower file hard-linked elsewhere and removed keeps its content', async (sn, work) => {
      await checkSnapshots(
        sn,
        work,
        apply(
          createDir('/dir1', 0o700),
          createFile('/dir1/f1', 'Hello', 0o644),
          createDir('dir2', 0o700),
          createFile('dir2/f2', '...', 0o644),
        ),
        apply(
          createDir('/dir3', 0o700),
          createFile('/dir3/f1', 'Hello', 0o644),
          removeAll('/dir1'),
          hardlink('dir2/f2', 'dir3/f2'),
          removeAll('dir2/f2'),
        ),
      );
    });

    test('Rename: renamed lower directories and files (and a rename over a lower file) commit correctly', async (sn, work) => {
      await checkSnapshots(
        sn,
        work,
        apply(
          createDir('/dir1', 0o700),
          createDir('/somefiles', 0o700),
          createFile('/somefiles/f1', 'was here first!', 0o644),
          createFile('/somefiles/f2', 'nothing interesting', 0o644),
        ),
        apply(
          renamePath('/dir1', '/dir2'),
          createFile('/somefiles/f1-overwrite', 'new content 1', 0o644),
          renamePath('/somefiles/f1-overwrite', '/somefiles/f1'),
          renamePath('/somefiles/f2', '/somefiles/f3'),
        ),
      );
    });

    test('ViewReadonly: a mounted view refuses writes', async (sn, work) => {
      const preparing = join(work, 'preparing');
      await sn.prepare(preparing, undefined, gcRoot());
      const committed = join(work, 'committed');
      await sn.commit(committed, preparing, gcRoot());
      const view = join(work, 'view');
      const m = await sn.view(view, committed, gcRoot());
      const mp = join(work, 'view-mount');
      await mkdir(mp);
      await withMounted(m, mp, () => assert.rejects(writeFile(join(mp, 'testfile'), 'testcontent'), { code: 'EROFS' }));
      await sn.remove(view);
      await sn.remove(committed);
    });

    test('StatInWalk: stat may be called from inside a walk and agrees with it', async (sn) => {
      const prefix = 'stats-in-walk-';
      await sn.prepare(`${prefix}c1-a`, undefined, gcRoot());
      await sn.commit(`${prefix}c1`, `${prefix}c1-a`, gcRoot());
      await sn.prepare(`${prefix}c2-a`, `${prefix}c1`, gcRoot());
      await sn.commit(`${prefix}c2`, `${prefix}c2-a`, gcRoot());
      await sn.prepare(`${prefix}a1`, `${prefix}c2`, gcRoot());
      await sn.view(`${prefix}v1`, `${prefix}c2`, gcRoot());
      let n = 0;
      await sn.walk(async (si) => {
        if (!si.name.startsWith(prefix)) return;
        assert.deepEqual(await sn.stat(si.name), si);
        n++;
      });
      assert.equal(n, 4);
    });

    test('CloseTwice: close is idempotent', async (sn) => {
      const n = `closeTwice-${randomBytes(4).toString('hex')}`;
      await sn.prepare(`${n}-prepare`, undefined, gcRoot());
      await sn.commit(n, `${n}-prepare`, gcRoot());
      await sn.remove(n);
      await sn.close();
      await sn.close();
    });

    test('RootPermission: the root of a new snapshot is mode 0755', async (sn, work) => {
      const preparing = join(work, 'preparing');
      await mkdir(preparing);
      await withMounted(await sn.prepare(preparing, undefined, gcRoot()), preparing, async () => {
        assert.equal((await stat(preparing)).mode & 0o777, 0o755);
      });
    });

    test('128LayersMount: every one of 128 stacked layers mounts equal to the same changes applied flat', async (sn, work) => {
      const appliers: Applier[] = [
        apply(
          createFile('/bottom', 'way at the bottom\n', 0o777),
          createFile('/overwriteme', 'FIRST!\n', 0o777),
          createDir('/ADDHERE', 0o755),
          createDir('/ONLYME', 0o755),
          createFile('/ONLYME/bottom', 'bye!\n', 0o777),
        ),
      ];
      for (let i = 1; i <= 127; i++) {
        appliers.push(
          apply(
            createFile('/overwriteme', `${i} WAS HERE!\n`, 0o777),
            createFile(`/ADDHERE/file-${i}`, 'same\n', 0o755),
            removeAll('/ONLYME'),
            createDir('/ONLYME', 0o755),
            createFile(`/ONLYME/file-${i}`, 'only me!\n', 0o777),
          ),
        );
      }
      const flat = join(work, 'flat');
      await mkdir(flat);
      let parent: string | undefined;
      for (const [i, a] of appliers.entries()) {
        const preparing = join(work, `prepare-layer-${i}`);
        await mkdir(preparing);
        const mounts = await sn.prepare(preparing, parent, gcRoot());
        await withMounted(mounts, preparing, async () => {
          await checkDirectoryEqual(preparing, flat).catch((e: Error) => {
            throw new Error(`[layer ${i}] before apply: ${e.message}`);
          });
          await a(flat);
          await a(preparing);
          await checkDirectoryEqual(preparing, flat).catch((e: Error) => {
            throw new Error(`[layer ${i}] after apply: ${e.message}`);
          });
        });
        parent = join(work, `committed-${i}`);
        await sn.commit(parent, preparing, gcRoot());
      }
      const view = join(work, 'fullview');
      await mkdir(view);
      await withMounted(await sn.view(view, parent, gcRoot()), view, () => checkDirectoryEqual(view, flat));
    });

    // Beyond containerd's suite: the depth tslayer promises (and overlayfs's limit, where there is one).
    const LAYERS = opts.deepLayers ?? 500;
    test(`${LAYERS}LayersMount: a stack of ${LAYERS} layers mounts whole and the top layer wins`, async (sn, work) => {
      let parent: string | undefined;
      for (let i = 0; i < LAYERS; i++) {
        const key = `layer-${i}-prepare`;
        const m = await sn.prepare(key, parent, gcRoot());
        await writeThroughMounts(m, work, async (dir) => {
          await writeFile(join(dir, 'top'), `layer ${i}\n`);
          await writeFile(join(dir, `only-${i}`), `${i}\n`);
        });
        parent = `layer-${i}`;
        await sn.commit(parent, key, gcRoot());
      }
      const target = join(work, 'deep-view');
      await mkdir(target);
      await withMounted(await sn.view('deep-view', parent, gcRoot()), target, async () => {
        assert.equal(await readFile(join(target, 'top'), 'utf8'), `layer ${LAYERS - 1}\n`);
        const names = await readdir(target);
        assert.equal(names.length, LAYERS + 1, 'every layer contributes its own file');
        assert.equal(await readFile(join(target, 'only-0'), 'utf8'), '0\n', 'the bottom layer is there');
      });
      await sn.remove('deep-view');

      const max = opts.maxLowerLayers;
      if (max === undefined || max !== LAYERS) return;
      // One layer more than the filesystem can stack: an error, never a truncated mount.
      const over = await sn.prepare('over-prepare', parent, gcRoot());
      await writeThroughMounts(over, work, (dir) => writeFile(join(dir, 'top'), 'over\n'));
      await sn.commit('over', 'over-prepare', gcRoot());
      const m = await sn.view('view-over', 'over', gcRoot());
      const t2 = join(work, 'view-over');
      await mkdir(t2);
      await assert.rejects(mountAll(m, t2), (e: unknown) => codeOf(e) === 'FAILED_PRECONDITION');
      assert.equal(mountAt(t2), undefined, 'nothing is mounted after a refused stack');
    });
  });
}
