// Runs INSIDE the dm VM with the loop module loaded (test/devmapper/driver.test.ts): the
// driver without --dm-pool makes a loopback thin pool on sparse files under the store
// root (Docker's loop-lvm), says it is for testing, reuses it, and gives the space of a
// removed snapshot back to the data file (discard passes down to the loop file). The root
// is on a tmpfs: a loop device over the guest's hostfs cannot punch holes, so the pool
// would (rightly) turn discard passdown off there.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { mountAll, openSnapshotter, unmountAll } from '../../../src/snapshot/index.js';
import { Store } from '../../../src/store.js';
import { makeTmpDir, removeTmpDir } from '../../helpers/tmp.js';

let scratch: string;
before(async () => {
  scratch = await makeTmpDir('dm-loopback');
  await mkdir(join(scratch, 'root'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1G', 'tmpfs', join(scratch, 'root')]);
});
after(async () => {
  // The pool holds the loop devices: take it down, then the loops, before the files go.
  for (const line of execFileSync('dmsetup', ['ls'], { encoding: 'utf8' }).split('\n')) {
    const name = line.split(/\s+/)[0];
    if (name?.startsWith('tslayer-')) execFileSync('dmsetup', ['remove', name]);
  }
  execFileSync('losetup', ['-D']);
  if (scratch) {
    // Loop devices let go of their files a moment after they are detached.
    for (let i = 0; ; i++) {
      try {
        execFileSync('umount', [join(scratch, 'root')], { stdio: 'ignore' });
        break;
      } catch (e) {
        if (i >= 50) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await removeTmpDir(scratch);
  }
});

const allocated = async (p: string) => (await stat(p)).blocks * 512;

it('makes a loopback pool under the root without --dm-pool, warns it is for testing, and reuses it', async () => {
  const root = join(scratch, 'root');
  const warnings: string[] = [];
  const open = async () =>
    openSnapshotter(await Store.open(root), 'devmapper', { driverOptions: { dmBaseSize: 256 * 1024 ** 2 }, warn: (m) => warnings.push(m) });
  let sn = await open();
  const data = join(root, 'snapshots/devmapper/pool/data');
  const mnt = join(scratch, 'mnt');
  await mkdir(mnt);
  try {
    await sn.prepare('a');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /loopback thin pool .*for testing only/);
    assert.equal((await stat(data)).size, 100 * 1024 ** 3, 'a 100 GiB sparse data file');
    assert.equal((await stat(join(root, 'snapshots/devmapper/pool/metadata'))).size, 2 * 1024 ** 3);
    assert.match(execFileSync('dmsetup', ['status', (await sn.mounts('a'))[0]!.source.replace('/dev/mapper/', '').replace(/-\d+$/, '-pool')], { encoding: 'utf8' }), / discard_passdown /);

    await sn.commit('A', 'a');
    const m = await sn.prepare('b', 'A');
    await mountAll(m, mnt);
    try {
      await writeFile(join(mnt, 'big'), randomBytes(16 << 20));
    } finally {
      await unmountAll(mnt);
    }
    const full = await allocated(data);
    await sn.close();

    sn = await open(); // the same pool again, no second one
    assert.equal(execFileSync('dmsetup', ['ls'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('-pool')).length, 1);
    await sn.remove('b');
    const freed = full - (await allocated(data));
    assert.ok(freed >= 15 << 20, `removing b gave ${freed} bytes back to the data file, expected its 16 MiB`);
  } finally {
    await sn.close();
  }
});
