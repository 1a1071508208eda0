// Commit and push end to end with real peers: a busybox image built by umoci and pushed
// by skopeo is pulled into tslayer, mounted, changed, committed and pushed back; then
// umoci's unpack of what skopeo copies from the registry must equal tslayer's mounted
// view, and podman must pull the image and see the change when it runs it.
import assert from 'node:assert/strict';
import { appendFile, chmod, chown, link, mkdir, readdir, rm, symlink, writeFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createGunzip } from 'node:zlib';
import { buffer } from 'node:stream/consumers';
import { commitSnapshot, LABEL_IMAGE } from '../../src/image/commit.js';
import { pullImage } from '../../src/image/pull.js';
import { pushImage } from '../../src/image/push.js';
import { resolveLocalImage } from '../../src/image/local.js';
import { llistxattr, lgetxattr, lsetxattr } from '../../src/native/index.js';
import { mountAll, openSnapshotter, unmountAll, type StorageSnapshotter } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { buildLayeredImage, ROUNDTRIP_BASE_LAYERS } from '../helpers/busybox.js';
import { treeListing, umociUnpack, withImageMounted } from '../helpers/images.js';
import { makePodman } from '../helpers/podman.js';
import { skopeo, startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { readTar } from '../helpers/tarread.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const BINARY = Buffer.from([0, 0xff, 0x0a, 0x3d, 0x80, 1]); // not UTF-8, with NUL, newline and '='

/** user.* xattrs of every path under `root`: "path name" -> hex value. */
async function userXattrs(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      for (const x of await llistxattr(join(root, p))) {
        if (x.startsWith('user.')) out.set(`${p} ${x}`, (await lgetxattr(join(root, p), x)).toString('hex'));
      }
      if ((await lstat(join(root, p))).isDirectory()) await walk(p);
    }
  };
  await walk('');
  return out;
}

/** The change the issue lists, made through the mounted view as a container would. */
async function change(mnt: string): Promise<void> {
  // New files, in a new directory and in an existing one.
  await mkdir(join(mnt, 'new'));
  await writeFile(join(mnt, 'new/hello.txt'), 'hello from tslayer\n');
  await writeFile(join(mnt, 'etc/newfile'), 'new\n');
  // A file of a lower layer changed.
  await appendFile(join(mnt, 'etc/config'), 'changed=yes\n');
  // A deleted file and a deleted directory.
  await rm(join(mnt, 'data/del.txt'));
  await rm(join(mnt, 'deldir'), { recursive: true });
  // Directories emptied and refilled: child by child, and removed and re-created (opaque).
  for (const n of await readdir(join(mnt, 'refill'))) await rm(join(mnt, 'refill', n), { recursive: true });
  await writeFile(join(mnt, 'refill/c'), 'c\n');
  await rm(join(mnt, 'recreate'), { recursive: true });
  await mkdir(join(mnt, 'recreate'));
  await writeFile(join(mnt, 'recreate/only'), 'only\n');
  // chmod / chown, of a lower file and a lower directory.
  await chown(join(mnt, 'perm/file'), 1234, 5678);
  await chmod(join(mnt, 'perm/file'), 0o4750);
  await chmod(join(mnt, 'perm'), 0o700);
  // Hardlinks: between new files, and a new name for a lower file.
  await link(join(mnt, 'new/hello.txt'), join(mnt, 'new/hard'));
  await link(join(mnt, 'etc/config'), join(mnt, 'etc/config-link'));
  // Symlinks: a new one, and one replaced.
  await symlink('../etc/config', join(mnt, 'new/link'));
  await rm(join(mnt, 'data/sl'));
  await symlink('/etc/newfile', join(mnt, 'data/sl'));
  // Xattrs: on a new file (binary value) and on a lower file.
  await lsetxattr(join(mnt, 'new/hello.txt'), 'user.bin', BINARY);
  await lsetxattr(join(mnt, 'data/keep.txt'), 'user.note', 'kept');
}

describe('commit and push, round trip with real peers', () => {
  let dir: string;
  let reg: RunningRegistry;
  let store: Store;
  let sn: StorageSnapshotter;
  let mnt: string;
  const KEY = 'work';
  let base: string;

  before(async () => {
    dir = await makeTmpDir('commit-roundtrip');
    reg = await startRegistry();
    base = `${reg.host}/base:1`;
    const layout = join(dir, 'layout');
    await mkdir(join(dir, 'umoci'));
    await buildLayeredImage(layout, 'base', join(dir, 'umoci'), ROUNDTRIP_BASE_LAYERS);
    await skopeo(['copy', '--dest-tls-verify=false', '--quiet', `oci:${layout}:base`, `docker://${base}`]);

    store = await Store.open(join(dir, 'root'));
    sn = await openSnapshotter(store, 'overlay');
    await pullImage(base, { store, snapshotter: sn });
    const img = await resolveLocalImage(store, base);
    mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const mounts = await sn.prepare(KEY, img.chainIds.at(-1), { labels: { [LABEL_IMAGE]: img.name } });
    await mountAll(mounts, mnt);
    await change(mnt);
  });

  after(async () => {
    if (mnt) await unmountAll(mnt).catch(() => undefined);
    await sn?.close();
    await reg?.stop();
    if (dir) await removeTmpDir(dir);
  });

  test('the pushed image unpacked by umoci equals the mounted view, and podman runs it and sees the change', async () => {
    const ref = `${reg.host}/changed:1`;
    const result = await commitSnapshot({ store, snapshotter: sn, key: KEY, ref, message: 'the change' });
    assert.match(result.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(result.base, `${reg.host}/base:1`);
    const pushed = await pushImage(ref, { store });
    assert.equal(pushed.digest, result.digest, 'the registry has the manifest we stored');

    // The container's view, and the view of the new image's committed snapshot.
    const want = await treeListing(mnt);
    const wantX = await userXattrs(mnt);
    assert.ok(wantX.size >= 2);
    await withImageMounted(store.root, ref, async (view) => {
      assert.deepEqual(await treeListing(view), want, 'the committed snapshot is the container view');
      assert.deepEqual(await userXattrs(view), wantX);
    });

    const layout = join(dir, 'pulled');
    await skopeo(['copy', '--src-tls-verify=false', '--quiet', `docker://${ref}`, `oci:${layout}:changed`]);
    const unpacked = await umociUnpack(layout, 'changed');
    try {
      assert.deepEqual(await treeListing(unpacked.rootfs), want);
      assert.deepEqual(await userXattrs(unpacked.rootfs), wantX);
    } finally {
      await unpacked.dispose();
    }

    const podman = await makePodman(join(dir, 'podman'));
    try {
      await podman.pull(ref);
      assert.equal(await podman.exec(ref, ['/bin/cat', '/new/hello.txt']), 'hello from tslayer\n');
      assert.equal(await podman.exec(ref, ['/bin/cat', '/etc/config']), 'a=1\nchanged=yes\n');
      assert.equal(await podman.exec(ref, ['/bin/sh', '-c', 'test -e /data/del.txt || test -e /deldir || echo gone']), 'gone\n');
      assert.equal(await podman.exec(ref, ['/bin/ls', '/recreate', '/refill']), '/recreate:\nonly\n\n/refill:\nc\n');
      assert.equal(await podman.exec(ref, ['/bin/stat', '-c', '%a %u:%g', '/perm/file']), '4750 1234:5678\n');
    } finally {
      await podman.dispose();
    }
  });

  test('the config has the new diff id and a history entry with the message', async () => {
    const ref = `${reg.host}/changed:2`;
    await commitSnapshot({ store, snapshotter: sn, key: KEY, ref, message: 'second' });
    const img = await resolveLocalImage(store, ref);
    const baseImg = await resolveLocalImage(store, base);
    assert.equal(img.config.rootfs.diff_ids.length, baseImg.config.rootfs.diff_ids.length + 1);
    assert.deepEqual(img.config.rootfs.diff_ids.slice(0, -1), baseImg.config.rootfs.diff_ids);
    const last = img.config.history!.at(-1)!;
    assert.equal(last.comment, 'second');
    assert.equal(last.created_by, 'tslayer commit');
    assert.equal(last.created, img.config.created);
    assert.deepEqual(img.config.config, baseImg.config.config, 'the runtime config (cmd, env) is kept');
    assert.equal(img.manifest.layers.at(-1)!.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  });

  test('committing the same change twice gives the same layer digest', async () => {
    const a = await commitSnapshot({ store, snapshotter: sn, key: KEY, ref: `${reg.host}/twice:a` });
    const b = await commitSnapshot({ store, snapshotter: sn, key: KEY, ref: `${reg.host}/twice:b`, message: 'other message' });
    assert.equal(a.layer.digest, b.layer.digest);
    assert.equal(a.diffId, b.diffId);
    assert.equal(a.chainId, b.chainId);
    // zstd and none are deterministic too, and carry the same tar.
    for (const compression of ['zstd', 'none'] as const) {
      const x = await commitSnapshot({ store, snapshotter: sn, key: KEY, ref: `${reg.host}/twice:${compression}1`, compression });
      const y = await commitSnapshot({ store, snapshotter: sn, key: KEY, ref: `${reg.host}/twice:${compression}2`, compression });
      assert.equal(x.layer.digest, y.layer.digest, compression);
      assert.equal(x.diffId, a.diffId, `${compression} layer holds the same tar`);
    }
  });

  test('the active snapshot stays mounted and usable after a commit', async () => {
    await writeFile(join(mnt, 'after-commit'), 'still writable\n');
    const r = await commitSnapshot({ store, snapshotter: sn, key: KEY, ref: `${reg.host}/after:1` });
    await withImageMounted(store.root, `${reg.host}/after:1`, async (view) => {
      assert.deepEqual(await treeListing(view), await treeListing(mnt));
    });
    assert.equal((await sn.stat(KEY)).kind, 'active');
    assert.ok(r.entries > 0);
    await rm(join(mnt, 'after-commit'));
  });

  test('a commit without changes makes a valid empty layer', async () => {
    const img = await resolveLocalImage(store, base);
    await sn.prepare('untouched', img.chainIds.at(-1), { labels: { [LABEL_IMAGE]: img.name } });
    try {
      const r = await commitSnapshot({ store, snapshotter: sn, key: 'untouched', ref: `${reg.host}/empty:1` });
      assert.equal(r.entries, 0);
      assert.equal(r.tarSize, 1024);
      const tarBytes = await buffer(store.content.createReadStream(r.layer.digest).pipe(createGunzip()));
      assert.deepEqual(readTar(tarBytes), []);
      const pushed = await pushImage(`${reg.host}/empty:1`, { store });
      assert.equal(pushed.digest, r.digest);
      const podman = await makePodman(join(dir, 'podman-empty'));
      try {
        await podman.pull(`${reg.host}/empty:1`);
        assert.equal(await podman.exec(`${reg.host}/empty:1`, ['/bin/cat', '/etc/config']), 'a=1\n');
      } finally {
        await podman.dispose();
      }
    } finally {
      await sn.remove('untouched');
    }
  });

  test('a snapshot without a parent commits to a one-layer image', async () => {
    const scratch = join(dir, 'scratch-mnt');
    await mkdir(scratch);
    await mountAll(await sn.prepare('from-scratch'), scratch);
    try {
      await writeFile(join(scratch, 'only-file'), 'alone\n');
      const r = await commitSnapshot({ store, snapshotter: sn, key: 'from-scratch', ref: `${reg.host}/scratch:1` });
      assert.equal(r.base, undefined);
      const img = await resolveLocalImage(store, `${reg.host}/scratch:1`);
      assert.deepEqual(img.config.rootfs.diff_ids, [r.diffId]);
      assert.equal(img.config.os, 'linux');
      await withImageMounted(store.root, `${reg.host}/scratch:1`, async (view) => {
        assert.deepEqual([...(await treeListing(view)).keys()], ['only-file']);
      });
    } finally {
      await unmountAll(scratch);
      await sn.remove('from-scratch');
    }
  });

  test('commit refuses a committed snapshot and names it', async () => {
    const img = await resolveLocalImage(store, base);
    await assert.rejects(
      commitSnapshot({ store, snapshotter: sn, key: img.chainIds.at(-1)!, ref: `${reg.host}/nope:1` }),
      (e: Error & { code?: string }) => e.code === 'FAILED_PRECONDITION' && e.message.includes('committed'),
    );
  });
});
