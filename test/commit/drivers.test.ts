// The same change committed on the overlay driver (overlay differ: the upper dir) and on
// the native driver (compare differ: parent view against the active tree) gives the same
// layer, byte for byte: the diff id and the chain are the same.
import assert from 'node:assert/strict';
import { appendFile, chmod, chown, link, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { commitSnapshot, LABEL_IMAGE } from '../../src/image/commit.js';
import { resolveLocalImage } from '../../src/image/local.js';
import { pullImage } from '../../src/image/pull.js';
import { lsetxattr, lutimes } from '../../src/native/index.js';
import { mountAll, openSnapshotter, unmountAll, type DriverName } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { treeListing } from '../helpers/images.js';
import { buildImageLayout, pushLayout, startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const T = 1_700_000_000;

/** A change that both differs express the same way (no directory removed and re-created). */
async function change(mnt: string): Promise<void> {
  await mkdir(join(mnt, 'new'));
  await writeFile(join(mnt, 'new/hello.txt'), 'hello\n');
  await link(join(mnt, 'new/hello.txt'), join(mnt, 'new/hard'));
  await symlink('../etc/config', join(mnt, 'new/link'));
  await writeFile(join(mnt, 'etc/newfile'), 'new\n');
  await appendFile(join(mnt, 'etc/config'), 'b=2\n');
  await link(join(mnt, 'etc/config'), join(mnt, 'etc/config-link'));
  await rm(join(mnt, 'data/del.txt'));
  await rm(join(mnt, 'deldir'), { recursive: true });
  for (const n of await readdir(join(mnt, 'refill'))) await rm(join(mnt, 'refill', n));
  await writeFile(join(mnt, 'refill/c'), 'c\n');
  await chown(join(mnt, 'perm/file'), 1234, 5678);
  await chmod(join(mnt, 'perm/file'), 0o640);
  await chmod(join(mnt, 'perm'), 0o700);
  await lsetxattr(join(mnt, 'new/hello.txt'), 'user.note', Buffer.from([0, 1, 0xff]));
  await lsetxattr(join(mnt, 'data/keep.txt'), 'user.note', 'kept');
  // Same times on both sides for everything the change wrote (a file's own, and its directory's).
  for (const p of ['new/hello.txt', 'new/link', 'new', 'etc/newfile', 'etc/config', 'etc', 'data', 'refill/c', 'refill']) {
    await lutimes(join(mnt, p), T, T);
  }
}

let dir: string;
let reg: RunningRegistry;
let base: string;

before(async () => {
  dir = await makeTmpDir('commit-drivers');
  reg = await startRegistry();
  base = `${reg.host}/drivers:1`;
  await buildImageLayout(join(dir, 'layout'), [
    { files: { 'etc/config': 'a=1\n', 'data/del.txt': 'x', 'data/keep.txt': 'k', 'deldir/sub/f': 'f' } },
    { files: { 'refill/a': 'a', 'refill/b': 'b', 'perm/file': 'p' } },
  ]);
  await pushLayout(join(dir, 'layout'), base);
});

after(async () => {
  await reg?.stop();
  if (dir) await removeTmpDir(dir);
});

async function commitOn(driver: DriverName): Promise<{ diffId: string; layer: string; listing: Map<string, string> }> {
  const store = await Store.open(join(dir, `root-${driver}`));
  const sn = await openSnapshotter(store, driver);
  const mnt = join(dir, `mnt-${driver}`);
  await mkdir(mnt);
  try {
    await pullImage(base, { store, snapshotter: sn });
    const img = await resolveLocalImage(store, base);
    await mountAll(await sn.prepare('work', img.chainIds.at(-1), { labels: { [LABEL_IMAGE]: img.name } }), mnt);
    try {
      await change(mnt);
      const r = await commitSnapshot({ store, snapshotter: sn, key: 'work', ref: `${reg.host}/out-${driver}:1` });
      return { diffId: r.diffId, layer: r.layer.digest, listing: await treeListing(mnt) };
    } finally {
      await unmountAll(mnt);
    }
  } finally {
    await sn.close();
  }
}

test('overlay and native drivers commit the same change as the same layer', async () => {
  const overlay = await commitOn('overlay');
  const native = await commitOn('native');
  assert.deepEqual(native.listing, overlay.listing, 'the two views show the same tree');
  assert.equal(native.diffId, overlay.diffId);
  assert.equal(native.layer, overlay.layer);
});
