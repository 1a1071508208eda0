// `push` against real registries: what it sends and what it does not (HEAD, cross-repo
// mount), both upload styles, auth, and the CLI's commit and push commands.
import assert from 'node:assert/strict';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LABEL_IMAGE } from '../../src/image/commit.js';
import { resolveLocalImage } from '../../src/image/local.js';
import { pullImage } from '../../src/image/pull.js';
import { pushImage } from '../../src/image/push.js';
import { StaticCredentials } from '../../src/registry/credentials.js';
import { mountAll, openSnapshotter, unmountAll } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { runCli } from '../helpers/cli.js';
import { treeListing, umociUnpack } from '../helpers/images.js';
import { buildImageLayout, pushLayout, skopeo, skopeoInspect, startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

describe('push', () => {
  let dir: string;
  let reg: RunningRegistry;
  let store: Store;
  let src: string;

  before(async () => {
    dir = await makeTmpDir('push');
    reg = await startRegistry();
    src = `${reg.host}/src:1`;
    const layout = join(dir, 'layout');
    await buildImageLayout(layout, [
      { files: { 'etc/a': 'a\n', 'big/blob': Buffer.alloc(300_000, 7) } },
      { files: { 'etc/b': 'b\n' }, compression: 'none' },
    ]);
    await pushLayout(layout, src);
    store = await Store.open(join(dir, 'root'));
    const sn = await openSnapshotter(store, 'overlay');
    try {
      await pullImage(src, { store, snapshotter: sn });
    } finally {
      await sn.close();
    }
  });

  after(async () => {
    await reg?.stop();
    if (dir) await removeTmpDir(dir);
  });

  test('blobs the registry already has are not sent again', async () => {
    const r = await pushImage(src, { store });
    assert.equal(r.blobs, 3);
    assert.equal(r.existing, 3);
    assert.equal(r.uploaded, 0);
    assert.equal(r.bytes, 0);
  });

  test('blobs of another repository of the same registry are mounted, not uploaded', async () => {
    const r = await pushImage(src, { store, dest: `${reg.host}/copy:1` });
    assert.deepEqual([r.mounted, r.uploaded], [3, 0]);
    const inspected = await skopeoInspect(`${reg.host}/copy:1`);
    assert.equal(inspected.Digest, r.digest);
  });

  test('chunked uploads give the same image as the stored one', async () => {
    const r = await pushImage(src, { store, dest: `${reg.host}/chunked:1`, chunkSize: 64 << 10, mount: false });
    assert.deepEqual([r.uploaded, r.mounted, r.existing], [3, 0, 0]);
    assert.equal(r.digest, (await resolveLocalImage(store, src)).manifestDescriptor.digest);
    // skopeo checks every blob's digest on the way out.
    await skopeo(['copy', '--src-tls-verify=false', '--quiet', `docker://${reg.host}/chunked:1`, `oci:${join(dir, 'chunked')}:x`]);
  });

  test('a registry with auth gets the credentials; wrong ones fail with UNAUTHORIZED', async () => {
    const secured = await startRegistry({ auth: { htpasswd: { alice: 's3cret' } } });
    try {
      const dest = `${secured.host}/app:1`;
      const good = new StaticCredentials({ [secured.host]: { username: 'alice', password: 's3cret' } });
      const r = await pushImage(src, { store, dest, registry: { credentials: good } });
      assert.equal(r.uploaded, 3);
      assert.equal((await skopeoInspect(dest, { creds: secured.creds })).Digest, r.digest);
      const bad = new StaticCredentials({ [secured.host]: { username: 'alice', password: 'wrong' } });
      await assert.rejects(
        pushImage(src, { store, dest: `${secured.host}/other:1`, registry: { credentials: bad } }),
        (e: Error & { code?: string }) => e.code === 'UNAUTHORIZED',
      );
    } finally {
      await secured.stop();
    }
  });

  test('pushing an image the store does not have fails with NOT_FOUND', async () => {
    await assert.rejects(pushImage(`${reg.host}/missing:1`, { store }), (e: Error & { code?: string }) => e.code === 'NOT_FOUND');
  });

  test('the CLI commits a mounted snapshot and pushes the result; both print the manifest digest', async () => {
    const sn = await openSnapshotter(store, 'overlay');
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    try {
      const img = await resolveLocalImage(store, src);
      await mountAll(await sn.prepare('cli-work', img.chainIds.at(-1), { labels: { [LABEL_IMAGE]: img.name } }), mnt);
      await writeFile(join(mnt, 'etc/cli'), 'from the cli\n');
      const commit = await runCli(['--root', store.root, 'commit', 'cli-work', `${reg.host}/cli:1`, '-m', 'cli', '--compression', 'none']);
      assert.equal(commit.code, 0, commit.stderr);
      const digest = commit.stdout.trim();
      assert.match(digest, /^sha256:[0-9a-f]{64}$/);
      const push = await runCli(['--root', store.root, 'push', `${reg.host}/cli:1`, `${reg.host}/cli-pushed:1`]);
      assert.equal(push.code, 0, push.stderr);
      assert.equal(push.stdout.trim(), digest);

      const layout = join(dir, 'cli-layout');
      await skopeo(['copy', '--src-tls-verify=false', '--quiet', `docker://${reg.host}/cli-pushed:1`, `oci:${layout}:x`]);
      const unpacked = await umociUnpack(layout, 'x');
      try {
        assert.deepEqual(await treeListing(unpacked.rootfs), await treeListing(mnt));
      } finally {
        await unpacked.dispose();
      }

      const bad = await runCli(['--root', store.root, 'commit', 'no-such-key', `${reg.host}/cli:2`]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /^tslayer: .*no-such-key/);
    } finally {
      await unmountAll(mnt);
      await sn.remove('cli-work').catch(() => undefined);
      await sn.close();
    }
  });
});
