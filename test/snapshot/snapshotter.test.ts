// What the shared snapshotter layer promises beyond containerd's suite: namespaces,
// stable error codes, crash debris cleanup, concurrent writers, usage, and the shape of
// the overlay driver's mounts.
import assert from 'node:assert/strict';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import { openSnapshotter, type StorageSnapshotter } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { withTmpDir } from '../helpers/tmp.js';

const isCode = (code: string) => (e: unknown) => {
  assert.ok(e instanceof TslayerError, String(e));
  assert.equal(e.code, code, e.message);
  return true;
};

async function withSnapshotter(
  fn: (sn: StorageSnapshotter) => Promise<void>,
  driver: 'overlay' | 'native' = 'overlay',
): Promise<void> {
  await withTmpDir('snapshotter', async (root) => {
    const sn = await openSnapshotter(await Store.open(root), driver);
    try {
      await fn(sn);
    } finally {
      await sn.close();
    }
  });
}

describe('snapshotter', () => {
  it('namespaces keep keys apart and share nothing but the id sequence', () =>
    withTmpDir('snapshotter-ns', async (root) => {
      const store = await Store.open(root);
      const a = await openSnapshotter(store, 'overlay', { namespace: 'a' });
      const b = await openSnapshotter(store, 'overlay', { namespace: 'b' });
      try {
        const ma = await a.prepare('same-key');
        const mb = await b.prepare('same-key');
        assert.notEqual(ma[0].source, mb[0].source, 'different storage');
        await a.commit('c', 'same-key');
        assert.equal((await b.stat('same-key')).kind, 'active', 'b is untouched by a commit in a');
        await assert.rejects(b.stat('c'), isCode('NOT_FOUND'));
        const names: string[] = [];
        await a.walk((i) => void names.push(i.name));
        assert.deepEqual(names, ['c']);
        await assert.rejects(openSnapshotter(store, 'overlay', { namespace: 'bad/ns' }), isCode('INVALID_ARGUMENT'));
      } finally {
        await a.close();
        await b.close();
      }
    }));

  it('errors carry stable codes', () =>
    withSnapshotter(async (sn) => {
      await assert.rejects(sn.stat('missing'), isCode('NOT_FOUND'));
      await assert.rejects(sn.prepare('x', 'missing-parent'), isCode('NOT_FOUND'));
      await assert.rejects(sn.prepare(''), isCode('INVALID_ARGUMENT'));
      await sn.prepare('active');
      await assert.rejects(sn.prepare('on-active', 'active'), isCode('INVALID_ARGUMENT'));
      await assert.rejects(sn.prepare('active'), isCode('ALREADY_EXISTS'));
      await sn.commit('committed', 'active');
      await assert.rejects(sn.mounts('committed'), isCode('FAILED_PRECONDITION'));
      await assert.rejects(sn.commit('again', 'committed'), isCode('FAILED_PRECONDITION'));
      await sn.view('view', 'committed');
      await assert.rejects(sn.commit('from-view', 'view'), isCode('FAILED_PRECONDITION'));
      await sn.prepare('a2');
      await assert.rejects(sn.commit('committed', 'a2'), isCode('ALREADY_EXISTS'));
      await assert.rejects(sn.remove('committed'), isCode('FAILED_PRECONDITION'));
      await assert.rejects(sn.remove('missing'), isCode('NOT_FOUND'));
      await assert.rejects(sn.walk(() => undefined, 'labels."unterminated'), isCode('INVALID_ARGUMENT'));
      await sn.close();
      await assert.rejects(sn.stat('view'), isCode('FAILED_PRECONDITION'));
    }));

  it('remove frees the storage; cleanup removes debris of dead processes and unrecorded ids only', () =>
    withSnapshotter(async (sn) => {
      const dir = sn.layout.root;
      await sn.prepare('keep');
      await sn.prepare('gone');
      const before = await readdir(dir);
      await sn.remove('gone');
      const live = await readdir(dir);
      assert.equal(live.length, before.length - 1, 'removed storage is gone');

      // What crashes leave: a build dir of a process that no longer exists, an id no record names.
      await mkdir(join(dir, 'new-999999999-77', 'fs'), { recursive: true });
      await mkdir(join(dir, '88', 'fs'), { recursive: true });
      // A build in progress in a live process (this one) must survive.
      await mkdir(join(dir, `new-${process.pid}-99`), { recursive: true });
      await mkdir(join(dir, 'not-ours'));
      await sn.cleanup();
      assert.deepEqual((await readdir(dir)).sort(), [...live, `new-${process.pid}-99`, 'not-ours'].sort());
      assert.equal((await sn.stat('keep')).kind, 'active');
    }));

  it('two writers racing for one key: exactly one wins, the other gets ALREADY_EXISTS and leaves no debris', () =>
    withTmpDir('snapshotter-race', async (root) => {
      // Two Store objects: two metadata handles competing for LevelDB's lock as two processes do.
      const s1 = await openSnapshotter(await Store.open(root), 'native');
      const s2 = await openSnapshotter(await Store.open(root), 'native');
      try {
        await s1.prepare('base-a');
        const base = (await s1.mounts('base-a'))[0].source;
        for (let i = 0; i < 50; i++) await writeFile(join(base, `f${i}`), 'x'.repeat(1000));
        await s1.commit('base', 'base-a');
        const results = await Promise.allSettled([s1.prepare('contended', 'base'), s2.prepare('contended', 'base')]);
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        isCode('ALREADY_EXISTS')(lost.reason);
        const entries = await readdir(s1.layout.root);
        assert.deepEqual(entries.filter((e) => e.startsWith('new-')), [], 'no build dir left');
        assert.equal(entries.length, 2, 'base and the winner only');
      } finally {
        await s1.close();
        await s2.close();
      }
    }));

  it('usage counts what an active snapshot writes, and a committed one keeps it', () =>
    withSnapshotter(async (sn) => {
      const m = await sn.prepare('u');
      const upper = m[0].source;
      const empty = await sn.usage('u');
      await writeFile(join(upper, 'big'), Buffer.alloc(1 << 20, 1));
      const full = await sn.usage('u');
      assert.ok(full.size >= empty.size + (1 << 20), JSON.stringify({ empty, full }));
      assert.equal(full.inodes, empty.inodes + 1);
      await sn.commit('uc', 'u');
      assert.deepEqual(await sn.usage('uc'), full);
      assert.deepEqual(await sn.usage('uc'), full, 'asked twice, same answer');
    }));

  it('overlay mounts: bind without parent, read-only bind for a one-parent view, lowerdir top first otherwise', () =>
    withSnapshotter(async (sn) => {
      const m0 = await sn.prepare('l0');
      assert.deepEqual(m0[0].options, ['rw', 'rbind']);
      assert.equal(m0[0].type, 'bind');
      await sn.commit('c0', 'l0');
      const v = await sn.view('v0', 'c0');
      assert.deepEqual(v, [{ type: 'bind', source: m0[0].source, options: ['ro', 'rbind'] }]);
      await sn.prepare('l1', 'c0');
      await sn.commit('c1', 'l1');
      const m2 = await sn.prepare('l2', 'c1');
      const lower = m2[0].options.find((o) => o.startsWith('lowerdir='))!;
      const ids = lower.slice('lowerdir='.length).split(':').map((p) => p.split('/').at(-2));
      assert.equal(ids.length, 2);
      assert.ok(Number(ids[0]) > Number(ids[1]), `top first: ${ids.join(', ')}`);
      assert.ok(m2[0].options.some((o) => o.startsWith('upperdir=')));
      const view2 = await sn.view('v2', 'c1');
      assert.ok(!view2[0].options.some((o) => o.startsWith('upperdir=')), 'a view has no upper');
      assert.equal((await stat(m2[0].options.find((o) => o.startsWith('upperdir='))!.slice(9))).mode & 0o777, 0o755);
    }));
});
