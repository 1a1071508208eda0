// Mounts containerd can perform: containerd 1.6's own lowerdir compaction reproduced,
// deep stacks rewritten to short links that fit one page, and those mounted exactly the
// way containerd does it (chdir + one mount(2) call with the option string).
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import { MS, mount } from '../../src/native/index.js';
import { ContainerdMounts, MOUNT_DATA_LIMIT, containerdMountCall, fitsContainerd, shortName } from '../../src/serve/mounts.js';
import { unmountAll, type Mount } from '../../src/snapshot/index.js';
import { withTmpDir } from '../helpers/tmp.js';

/** Mounts `m` at `target` as containerd 1.6's mount.Mount does: compaction, chdir, one mount(2). */
async function mountLikeContainerd(m: Mount, target: string): Promise<void> {
  const { chdir, data } = containerdMountCall(m.options);
  assert.ok(data.length <= MOUNT_DATA_LIMIT, `data fits a page (${data.length} bytes)`);
  const flags = m.options.includes('ro') ? MS.RDONLY : 0;
  const cwd = process.cwd();
  const abs = resolve(target);
  if (chdir) process.chdir(chdir);
  try {
    await mount(m.source, abs, m.type, flags, data);
  } finally {
    process.chdir(cwd);
  }
}

/** An overlay Mount over layers `ids` (top first) of a driver root, as the overlay driver writes it. */
function overlayOf(root: string, ids: string[], upper?: string): Mount {
  const options = ['index=off'];
  if (upper) options.push(`workdir=${join(root, upper, 'work')}`, `upperdir=${join(root, upper, 'fs')}`);
  options.push(`lowerdir=${ids.map((id) => join(root, id, 'fs')).join(':')}`);
  return { type: 'overlay', source: 'overlay', options };
}

describe('containerd mount option compaction (as mount/mount_linux.go does it)', () => {
  it('short option strings pass unchanged, flags are left out of the data', () => {
    const r = containerdMountCall(['ro', 'index=off', 'lowerdir=/a/1/fs:/a/2/fs', 'nosuid']);
    assert.deepEqual(r, { chdir: '', data: 'index=off,lowerdir=/a/1/fs:/a/2/fs' });
  });

  it('long ones are made relative to the parent of the lowerdirs\' common prefix, lowerdir moved last', () => {
    const root = `/${'r'.repeat(100)}/snapshots`;
    const ids = Array.from({ length: 40 }, (_, i) => String(100 + i));
    const m = overlayOf(root, ids, '999');
    const r = containerdMountCall(m.options);
    // Common prefix ".../snapshots/1" -> Go's path.Dir -> ".../snapshots".
    assert.equal(r.chdir, `${root}/`);
    assert.equal(
      r.data,
      `index=off,workdir=${root}/999/work,upperdir=${root}/999/fs,lowerdir=${ids.map((id) => `${id}/fs`).join(':')}`,
    );
  });

  it('"defaults" ends up in the data, as containerd\'s table has it with no flag', () => {
    assert.equal(containerdMountCall(['defaults', 'rw']).data, 'defaults');
  });
});

describe('deep stacks for containerd', () => {
  it('a stack that fits keeps its real paths', async () => {
    await withTmpDir('serve-mounts', async (tmp) => {
      const cm = new ContainerdMounts(tmp);
      const m = overlayOf(tmp, ['3', '2', '1'], '4');
      assert.deepEqual(await cm.adapt([m]), [m]);
      await assert.rejects(readdir(cm.linkDir), { code: 'ENOENT' });
    });
  });

  it('short link names are the ids in base 62', () => {
    assert.equal(shortName('0'), '0');
    assert.equal(shortName('61'), 'Z');
    assert.equal(shortName('62'), '10');
    assert.equal(shortName('916132831'), 'ZZZZZ');
  });

  it('a 500-layer stack of a store with 7-digit ids gets short links that fit one page and point at the layers', async () => {
    await withTmpDir('serve-mounts', async (tmp) => {
      const cm = new ContainerdMounts(tmp);
      const ids = Array.from({ length: 500 }, (_, i) => String(5_000_000 + 500 - i)); // top first
      const m = overlayOf(tmp, ids, String(5_000_000 + 501));
      assert.equal(fitsContainerd(m.options), false, 'the real paths would not fit');
      const [a] = await cm.adapt([m]);
      assert.ok(fitsContainerd(a.options));
      const lower = a.options.find((o) => o.startsWith('lowerdir='))!.slice('lowerdir='.length).split(':');
      assert.equal(lower.length, 500, 'every layer, in order');
      for (const [i, l] of lower.entries()) {
        assert.equal(l, join(cm.linkDir, shortName(ids[i])));
        assert.equal(await readlink(l), `../${ids[i]}/fs`);
      }
      // upper and work keep their real paths; a second adapt reuses the links.
      assert.ok(a.options.includes(`upperdir=${join(tmp, String(5_000_000 + 501), 'fs')}`));
      assert.deepEqual(await cm.adapt([m]), [a]);
    });
  });

  it('a stack that would not fit even with short links is refused, never truncated', async () => {
    await withTmpDir('serve-mounts', async (tmp) => {
      const cm = new ContainerdMounts(join(tmp, 'driver'));
      // Layers outside the driver's root cannot be shortened.
      const elsewhere = Array.from({ length: 300 }, (_, i) => join(tmp, `other-place-${i}-${'y'.repeat(30)}`));
      const m: Mount = { type: 'overlay', source: 'overlay', options: [`lowerdir=${elsewhere.join(':')}`] };
      await assert.rejects(cm.adapt([m]), (e: unknown) => {
        assert.ok(e instanceof TslayerError);
        assert.equal(e.code, 'FAILED_PRECONDITION');
        assert.match(e.message, /300 layers.*truncate/);
        return true;
      });
    });
  });

  it('prune removes the links of removed snapshots only', async () => {
    await withTmpDir('serve-mounts', async (tmp) => {
      const cm = new ContainerdMounts(tmp);
      const ids = Array.from({ length: 400 }, (_, i) => String(5_000_000 + i));
      for (const id of ids) await mkdir(join(tmp, id, 'fs'), { recursive: true });
      await cm.adapt([overlayOf(tmp, ids)]);
      assert.equal((await readdir(cm.linkDir)).length, 400);
      for (const id of ids.slice(0, 100)) await rm(join(tmp, id), { recursive: true });
      assert.equal(await cm.prune(), 100);
      assert.equal((await readdir(cm.linkDir)).length, 300);
      assert.equal(await cm.prune(), 0);
    });
  });

  it('mounted the way containerd mounts (chdir + one mount(2)), a 200-layer stack of short links shows every layer', async () => {
    await withTmpDir('serve-mounts', async (tmp) => {
      // Long ids under a root of a couple of hundred bytes: past a page even after containerd's compaction.
      const root = join(tmp, 'd'.repeat(200), 'driver');
      const cm = new ContainerdMounts(root);
      const LAYERS = 200;
      const ids = Array.from({ length: LAYERS }, (_, i) => String(1e14 + LAYERS - 1 - i)); // top first
      for (const [i, id] of ids.entries()) {
        await mkdir(join(root, id, 'fs'), { recursive: true });
        await writeFile(join(root, id, 'fs', `only-${id}`), id);
        await writeFile(join(root, id, 'fs', 'top'), `layer ${LAYERS - 1 - i}\n`);
      }
      const upper = String(1e14 + LAYERS);
      await mkdir(join(root, upper, 'fs'), { recursive: true });
      await mkdir(join(root, upper, 'work'));
      const m = overlayOf(root, ids, upper);
      assert.ok(containerdMountCall(m.options).data.length > MOUNT_DATA_LIMIT, 'the real paths overflow a page');
      const [a] = await cm.adapt([m]);
      const target = join(tmp, 'rootfs');
      await mkdir(target);
      await mountLikeContainerd(a, target);
      try {
        assert.equal(await readFile(join(target, 'top'), 'utf8'), `layer ${LAYERS - 1}\n`);
        const names = await readdir(target);
        assert.equal(names.filter((n) => n.startsWith('only-')).length, LAYERS, 'every layer is there');
        await writeFile(join(target, 'new'), 'x');
        assert.equal(await readFile(join(root, upper, 'fs', 'new'), 'utf8'), 'x', 'writes land in the upper dir');
      } finally {
        await unmountAll(target);
      }
    });
  });
});
