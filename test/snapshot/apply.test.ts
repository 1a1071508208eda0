// applyToMounts: a layer tar lands where an active snapshot's mounts say (overlay upper
// dir with whiteouts, or the bind source with real deletions), or through a temporary
// mount for anything else; read-only mounts are refused.
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import tarStream from 'tar-stream';
import { TslayerError } from '../../src/errors.js';
import { applyToMounts } from '../../src/snapshot/apply.js';
import { mountAll, openSnapshotter, unmountAll, type Mount } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { withTmpDir } from '../helpers/tmp.js';

type Entry = { name: string; type?: 'file' | 'directory'; body?: string };

function tar(entries: Entry[]): Readable {
  const pack = tarStream.pack();
  for (const e of entries) {
    const type = e.type ?? 'file';
    pack.entry({ name: e.name, type, mode: type === 'directory' ? 0o755 : 0o644, mtime: new Date(0) }, e.body ?? '');
  }
  pack.finalize();
  return pack as unknown as Readable;
}

const LAYER1: Entry[] = [
  { name: 'a/', type: 'directory' },
  { name: 'a/x', body: 'x\n' },
  { name: 'b', body: 'b1\n' },
];
const LAYER2: Entry[] = [
  { name: 'a/.wh.x' },
  { name: 'b', body: 'b2\n' },
  { name: 'c', body: 'c\n' },
];

describe('applyToMounts', () => {
  for (const driver of ['overlay', 'native'] as const) {
    it(`${driver}: two layers applied through prepare mounts give the merged tree, whiteout included`, () =>
      withTmpDir(`apply-${driver}`, async (dir) => {
        const store = await Store.open(join(dir, 'root'));
        const sn = await openSnapshotter(store, driver);
        const target = join(dir, 'mnt');
        await mkdir(target);
        try {
          let parent: string | undefined;
          for (const [i, layer] of [LAYER1, LAYER2].entries()) {
            const r = await applyToMounts(tar(layer), await sn.prepare(`p${i}`, parent), { tmpDir: store.tmpDir, layer: `layer ${i}` });
            assert.equal(r.entries, layer.length);
            await sn.commit(`c${i}`, `p${i}`);
            parent = `c${i}`;
          }
          await mountAll(await sn.view('v', parent), target);
          try {
            assert.deepEqual((await readdir(target)).sort(), ['a', 'b', 'c']);
            assert.deepEqual(await readdir(join(target, 'a')), [], 'a/x is whited out');
            assert.equal(await readFile(join(target, 'b'), 'utf8'), 'b2\n');
          } finally {
            await unmountAll(target);
          }
        } finally {
          await sn.close();
        }
      }));
  }

  it('mounts that name no directory are mounted on a temporary directory under tmp and unmounted again', () =>
    withTmpDir('apply-fallback', async (dir) => {
      const tmp = join(dir, 'tmp');
      await mkdir(tmp);
      const m: Mount[] = [{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }];
      const r = await applyToMounts(tar(LAYER1), m, { tmpDir: tmp });
      assert.equal(r.entries, 3);
      assert.deepEqual(await readdir(tmp), [], 'the temporary mount point is gone');
    }));

  it('a read-only view is refused', () =>
    withTmpDir('apply-ro', async (dir) => {
      const store = await Store.open(dir);
      const sn = await openSnapshotter(store, 'overlay');
      try {
        await sn.prepare('p');
        await sn.commit('c', 'p');
        await assert.rejects(
          applyToMounts(tar(LAYER1), await sn.view('v', 'c'), { tmpDir: store.tmpDir }),
          (e: unknown) => e instanceof TslayerError && e.code === 'FAILED_PRECONDITION',
        );
      } finally {
        await sn.close();
      }
    }));
});
