// `tslayer mount` of an image against a gc of the same store: from resolving the image to
// preparing the container's snapshot (an unpack for a driver the image was not unpacked
// for, in between), mount holds the gc lock shared, so it waits for a gc in progress and
// a gc never sees its half-made snapshots as garbage. The gc is stood in for by a real
// other process holding the lock exclusive.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { GcReport } from '../../src/care/gc.js';
import { holdGcLock, killChild } from '../helpers/gclock.js';
import { runCli } from '../helpers/cli.js';
import { listSnapshots } from '../helpers/images.js';
import { mountAt } from '../helpers/leftovers.js';
import { buildImageLayout, type BuiltLayout } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';


describe('tslayer mount and the gc lock', () => {
  let dir: string;
  let root: string;
  let img: BuiltLayout;
  const ref = 'localhost/mount-lock/app:1';
  const cli = (...args: string[]) => runCli(['--root', root, ...args]);
  const ok = async (...args: string[]): Promise<string> => {
    const r = await cli(...args);
    assert.equal(r.code, 0, `tslayer ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    dir = await makeTmpDir('cli-mount-lock');
    root = join(dir, 'root');
    img = await buildImageLayout(join(dir, 'layout'), [{ files: { 'etc/os-release': 'ID=lock\n' } }, { files: { 'app/x': 'x\n' } }]);
    await ok('import', img.dir, ref);
  });
  after(async () => {
    await removeTmpDir(dir);
  });

  for (const driver of ['overlay', 'native'] as const) {
    const what = driver === 'native' ? 'an image it must first unpack for the native driver' : 'an image already unpacked';
    it(`mount of ${what} waits while gc holds the lock, then mounts it, and gc after keeps what it uses`, async () => {
      const target = join(dir, `mnt-${driver}`);
      await mkdir(target);
      const holder = await holdGcLock(root, 'exclusive');
      let done = false;
      const run = cli('--driver', driver, 'mount', ref, target).finally(() => (done = true));
      try {
        await sleep(1200);
        assert.equal(done, false, 'mount must wait for the gc');
        assert.equal(mountAt(target), undefined, 'nothing is mounted while the gc runs');
        assert.deepEqual(await listSnapshots(root, driver).then((s) => s.filter((i) => i.kind === 'active')), [], 'no snapshot is prepared meanwhile');
      } finally {
        await killChild(holder);
      }
      const r = await run;
      assert.equal(r.code, 0, r.stderr);
      const key = r.stdout.trim();
      try {
        assert.equal(await readFile(join(target, 'app/x'), 'utf8'), 'x\n');
        assert.equal(await readFile(join(target, 'etc/os-release'), 'utf8'), 'ID=lock\n');
        const report = JSON.parse(await ok('--json', 'gc')) as GcReport;
        assert.deepEqual(report.snapshots, [], 'the image and its mount reference every snapshot');
        assert.deepEqual(report.blobs, [], 'the image references every blob');
        assert.equal(await readFile(join(target, 'app/x'), 'utf8'), 'x\n', 'still readable after the gc');
      } finally {
        await ok('umount', target);
        await ok('--driver', driver, 'snapshots', 'rm', key);
      }
    });
  }
});
