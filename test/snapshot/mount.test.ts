// mountAll / unmountAll: overlay through the new mount API (lowerdir+) and through
// mount(2) (the old-kernel path, absolute and relative), binds, and refusals that leave
// nothing mounted. Real mounts; every test unmounts in finally.
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import { escapeOverlayPath, mountAll, splitLowerdir, unmountAll, type MountOptions } from '../../src/snapshot/mount.js';
import type { Mount } from '../../src/snapshot/types.js';
import { mountAt } from '../helpers/leftovers.js';
import { withTmpDir } from '../helpers/tmp.js';

/** `n` lower dirs under `base` (named by `name`), each with its own file and a shared `top`; top first. */
async function makeLowers(base: string, n: number, name = (i: number) => `l${i}`): Promise<string[]> {
  const lowers: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = join(base, name(i));
    await mkdir(d, { recursive: true });
    await writeFile(join(d, `only-${i}`), `${i}\n`);
    await writeFile(join(d, 'top'), `layer ${i}\n`);
    lowers.unshift(d);
  }
  return lowers;
}

function overlay(lowers: string[], upper?: { upper: string; work: string }): Mount {
  const options = upper
    ? [`workdir=${escapeOverlayPath(upper.work)}`, `upperdir=${escapeOverlayPath(upper.upper)}`]
    : [];
  options.push(`lowerdir=${lowers.map(escapeOverlayPath).join(':')}`);
  return { type: 'overlay', source: 'overlay', options };
}

async function withMount<T>(m: Mount[], target: string, opts: MountOptions, fn: () => Promise<T>): Promise<T> {
  await mountAll(m, target, opts);
  try {
    return await fn();
  } finally {
    await unmountAll(target);
  }
}

const isCode = (code: string) => (e: unknown) => e instanceof TslayerError && e.code === code;

describe('mountAll and unmountAll', () => {
  for (const api of ['auto', 'legacy'] as const) {
    it(`overlay (${api === 'auto' ? 'lowerdir+' : 'mount(2)'}): the top layer wins and writes land in the upper dir`, () =>
      withTmpDir('mount-overlay', async (dir) => {
        const lowers = await makeLowers(join(dir, 'layers'), 3);
        const upper = join(dir, 'upper');
        const work = join(dir, 'work');
        const target = join(dir, 'mnt');
        await Promise.all([mkdir(upper), mkdir(work), mkdir(target)]);
        await withMount([overlay(lowers, { upper, work })], target, { overlayApi: api }, async () => {
          assert.equal(await readFile(join(target, 'top'), 'utf8'), 'layer 2\n');
          assert.equal((await readdir(target)).length, 4);
          await writeFile(join(target, 'new'), 'new\n');
        });
        assert.equal(await readFile(join(upper, 'new'), 'utf8'), 'new\n');
      }));
  }

  it('overlay through mount(2) with too long absolute paths falls back to relative ones, whole', () =>
    withTmpDir('mount-relative', async (dir) => {
      // 150 layers under a long directory name: ~20 KiB absolute, ~1 KiB relative.
      const base = join(dir, 'x'.repeat(100), 'snapshots');
      const lowers = await makeLowers(base, 150);
      const target = join(dir, 'mnt');
      await mkdir(target);
      const cwd = process.cwd();
      await withMount([overlay(lowers)], target, { overlayApi: 'legacy' }, async () => {
        assert.equal(await readFile(join(target, 'top'), 'utf8'), 'layer 149\n');
        assert.equal((await readdir(target)).length, 151, 'every layer is in the mount');
      });
      assert.equal(process.cwd(), cwd, 'the working directory is restored');
    }));

  it('overlay through mount(2) that cannot fit a page is refused, not truncated', () =>
    withTmpDir('mount-toolong', async (dir) => {
      const lowers = await makeLowers(dir, 200, (i) => `layers/a-rather-long-layer-name-${i}`);
      const target = join(dir, 'mnt');
      await mkdir(target);
      await assert.rejects(mountAll([overlay(lowers)], target, { overlayApi: 'legacy' }), isCode('FAILED_PRECONDITION'));
      assert.equal(mountAt(target), undefined);
    }));

  it('overlay with more lowers than the kernel stacks (501) is an error and leaves nothing mounted', () =>
    withTmpDir('mount-501', async (dir) => {
      const lowers = await makeLowers(join(dir, 'layers'), 501);
      const target = join(dir, 'mnt');
      await mkdir(target);
      await assert.rejects(mountAll([overlay(lowers)], target), (e: unknown) => {
        assert.ok(isCode('FAILED_PRECONDITION')(e), String(e));
        assert.match((e as Error).message, /501 layers/);
        return true;
      });
      assert.equal(mountAt(target), undefined);
      // 500 is fine.
      await withMount([overlay(lowers.slice(1))], target, {}, async () => {
        assert.equal(await readFile(join(target, 'top'), 'utf8'), 'layer 499\n');
        assert.equal((await readdir(target)).length, 501);
      });
    }));

  for (const api of ['auto', 'legacy'] as const) {
    it(`layer paths with ':' and ',' are escaped and mount (${api})`, () =>
      withTmpDir('mount-escape', async (dir) => {
        const lowers = await makeLowers(join(dir, 'we:ird,dirs'), 2, (i) => `l:${i},x`);
        assert.deepEqual(splitLowerdir(lowers.map(escapeOverlayPath).join(':')), lowers);
        const target = join(dir, 'mnt');
        await mkdir(target);
        await withMount([overlay(lowers)], target, { overlayApi: api }, async () => {
          assert.equal(await readFile(join(target, 'top'), 'utf8'), 'layer 1\n');
        });
      }));
  }

  it('a read-only bind refuses writes; a read-write bind writes through', () =>
    withTmpDir('mount-bind', async (dir) => {
      const src = join(dir, 'src');
      const target = join(dir, 'mnt');
      await Promise.all([mkdir(src), mkdir(target)]);
      await withMount([{ type: 'bind', source: src, options: ['ro', 'rbind'] }], target, {}, () =>
        assert.rejects(writeFile(join(target, 'f'), 'x'), { code: 'EROFS' }),
      );
      await withMount([{ type: 'bind', source: src, options: ['rw', 'rbind'] }], target, {}, () =>
        writeFile(join(target, 'f'), 'x'),
      );
      assert.equal(await readFile(join(src, 'f'), 'utf8'), 'x');
    }));

  it('unmountAll takes off every stacked mount and reports how many; 0 where nothing is mounted', () =>
    withTmpDir('mount-stack', async (dir) => {
      const [a, b, target] = [join(dir, 'a'), join(dir, 'b'), join(dir, 'mnt')];
      await Promise.all([mkdir(a), mkdir(b), mkdir(target)]);
      await mountAll(
        [
          { type: 'bind', source: a, options: ['rbind'] },
          { type: 'bind', source: b, options: ['rbind', 'ro'] },
        ],
        target,
      );
      assert.equal(await unmountAll(target), 2);
      assert.equal(await unmountAll(target), 0);
      assert.equal(await unmountAll(join(dir, 'does-not-exist')), 0);
    }));

  it('when a later mount fails, the earlier ones are taken off again', () =>
    withTmpDir('mount-rollback', async (dir) => {
      const [a, target] = [join(dir, 'a'), join(dir, 'mnt')];
      await Promise.all([mkdir(a), mkdir(target)]);
      await assert.rejects(
        mountAll(
          [
            { type: 'bind', source: a, options: ['rbind'] },
            { type: 'bind', source: join(dir, 'missing'), options: ['rbind'] },
          ],
          target,
        ),
        { code: 'ENOENT' },
      );
      assert.equal(mountAt(target), undefined);
    }));
});
