// `tslayer rmi --no-prune` + `tslayer gc` as docker/podman users know them: rmi --no-prune
// removes the record, gc then frees the blobs and committed snapshots nothing references.
// (Plain `tslayer rmi` frees what the image alone used at once: test/cli/rmi.test.ts.) Real CLI, real
// registry, real store, real mounts; the lock against operations in progress is held by
// real other processes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { GcReport } from '../../src/care/gc.js';
import { chainIds } from '../../src/image/chainid.js';
import { LABEL_COMMIT } from '../../src/image/commit.js';
import type { Digest } from '../../src/image/digest.js';
import { ownerToken } from '../../src/image/owner.js';
import { LABEL_UNPACK, LABEL_UNPACK_OWNER } from '../../src/image/unpack.js';
import { openSnapshotter, type Info } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { holdGcLock, killChild } from '../helpers/gclock.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { hasBlob, listSnapshots } from '../helpers/images.js';
import { mountAt } from '../helpers/leftovers.js';
import { buildImageLayout, pushLayout, startRegistry, type BuiltLayout, type RunningRegistry } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';


/** A CLI run that can be asked whether it has finished yet. */
function started(run: Promise<CliResult>): { done: () => boolean; result: Promise<CliResult> } {
  let finished = false;
  const result = run.finally(() => (finished = true));
  return { done: () => finished, result };
}

describe('tslayer rmi --no-prune + gc', () => {
  let reg: RunningRegistry;
  let dir: string;
  let root: string;
  let imgA: BuiltLayout;
  let imgB: BuiltLayout;
  let refA: string;
  let refB: string;
  const cli = (...args: string[]) => runCli(['--root', root, ...args]);
  const ok = async (...args: string[]): Promise<string> => {
    const r = await cli(...args);
    assert.equal(r.code, 0, `tslayer ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const gcJson = async (...args: string[]): Promise<GcReport> => JSON.parse(await ok('--json', 'gc', ...args)) as GcReport;

  const blobsOf = (img: BuiltLayout): string[] => [img.top.digest, img.images[0]!.config.digest, ...img.images[0]!.layers.map((l) => l.digest)];
  const chainOf = (img: BuiltLayout): string[] => chainIds(img.images[0]!.layers.map((l) => l.diffId as Digest));
  const snapshotNames = async (): Promise<string[]> => (await listSnapshots(root)).map((i) => i.name).sort();
  const allBlobs = async (): Promise<string[]> => {
    const store = await Store.open(root);
    const out: string[] = [];
    for await (const b of store.content.walk()) out.push(b.digest);
    return out.sort();
  };

  let lastTarget = '';
  const mkTarget = async (): Promise<string> => {
    lastTarget = join(dir, `mnt-${Math.random().toString(36).slice(2)}`);
    await mkdir(lastTarget);
    return lastTarget;
  };

  /** Mounts SOURCE with the CLI, checks files, unmounts; returns the key. */
  async function mountAndRead(source: string, files: Record<string, string>, extra: string[] = []): Promise<string> {
    const target = await mkTarget();
    const key = (await ok('mount', source, target, ...extra)).trim();
    try {
      for (const [path, want] of Object.entries(files)) assert.equal(await readFile(join(target, path), 'utf8'), want, path);
    } finally {
      await ok('umount', target);
    }
    assert.equal(mountAt(target), undefined);
    return key;
  }

  before(async () => {
    reg = await startRegistry();
    dir = await makeTmpDir('cli-gc');
    root = join(dir, 'root');
    const base = { files: { 'etc/os-release': 'ID=gc-test\n', 'bin/sh': 'shell\n' } };
    imgA = await buildImageLayout(join(dir, 'layout-a'), [base, { files: { 'app/a': 'only in A\n' } }]);
    imgB = await buildImageLayout(join(dir, 'layout-b'), [base, { files: { 'app/b': 'only in B\n' } }]);
    assert.equal(imgA.images[0]!.layers[0]!.digest, imgB.images[0]!.layers[0]!.digest, 'the two images share their base layer');
    refA = `${reg.host}/gc/a:1`;
    refB = `${reg.host}/gc/b:1`;
    await pushLayout(imgA.dir, refA);
    await pushLayout(imgB.dir, refB);
    await ok('pull', refA);
    await ok('pull', refB);
  });
  after(async () => {
    await reg?.stop();
    await removeTmpDir(dir); // fails the suite if anything is still mounted under it
  });

  it('gc with every image referenced removes nothing', async () => {
    const before = await allBlobs();
    const r = await gcJson();
    assert.deepEqual(r.blobs, []);
    assert.deepEqual(r.snapshots, []);
    assert.equal(r.bytes, 0);
    assert.deepEqual(await allBlobs(), before);
    assert.deepEqual(await snapshotNames(), [...new Set([...chainOf(imgA), ...chainOf(imgB)])].sort());
  });

  it('rmi --no-prune removes the record only; gc --dry-run lists what gc would remove and removes nothing', async () => {
    const blobsBefore = await allBlobs();
    const snapsBefore = await snapshotNames();
    await ok('rmi', '--no-prune', refA);
    assert.deepEqual(await allBlobs(), blobsBefore, 'rmi leaves the blobs');
    assert.deepEqual(await snapshotNames(), snapsBefore, 'rmi leaves the snapshots');

    const uniqueA = blobsOf(imgA).filter((d) => !blobsOf(imgB).includes(d));
    assert.equal(uniqueA.length, 3, 'manifest, config, top layer');
    const r = await gcJson('--dry-run');
    assert.equal(r.dryRun, true);
    assert.deepEqual(r.blobs.map((b) => b.digest).sort(), [...uniqueA].sort());
    assert.deepEqual(r.snapshots.map((s) => s.name), [chainOf(imgA)[1]]);
    assert.deepEqual(await allBlobs(), blobsBefore, '--dry-run removed no blob');
    assert.deepEqual(await snapshotNames(), snapsBefore, '--dry-run removed no snapshot');

    const human = await ok('gc', '--dry-run');
    assert.match(human, /^would remove 3 blobs \(\d[\d.]* k?B\), 1 snapshot$/m);
    for (const d of uniqueA) assert.ok(human.includes(`blob ${d} `), human);
  });

  it('gc after rmi removes only the image\'s own blobs and snapshots; the other image still mounts and reads right', async () => {
    const uniqueA = blobsOf(imgA).filter((d) => !blobsOf(imgB).includes(d));
    const r = await cli('gc');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^removed 3 blobs \(\d[\d.]* k?B\), 1 snapshot\n$/);
    for (const d of uniqueA) assert.equal(await hasBlob(root, d), false, `${d} removed`);
    for (const d of blobsOf(imgB)) assert.equal(await hasBlob(root, d), true, `${d} kept`);
    assert.deepEqual(await snapshotNames(), [...chainOf(imgB)].sort());

    const key = await mountAndRead(refB, { 'etc/os-release': 'ID=gc-test\n', 'bin/sh': 'shell\n', 'app/b': 'only in B\n' });
    await ok('snapshots', 'rm', key);
    const again = await gcJson();
    assert.deepEqual([again.blobs, again.snapshots], [[], []], 'a second gc finds nothing');
  });

  it('an active snapshot keeps its parent chain after rmi of its image (the blobs go) and still mounts', async () => {
    const key = await mountAndRead(refB, { 'app/b': 'only in B\n' }, ['--name', 'keep-b']);
    assert.equal(key, 'keep-b');
    await ok('rmi', '--no-prune', refB);
    const r = await gcJson();
    assert.deepEqual(r.blobs.map((b) => b.digest).sort(), [...blobsOf(imgB)].sort(), 'every blob of B goes');
    assert.equal(r.bytes, r.blobs.reduce((n, b) => n + b.size, 0));
    assert.deepEqual(r.snapshots, []);
    assert.deepEqual(await snapshotNames(), [...chainOf(imgB), 'keep-b'].sort());
    // Its changes and its layers are all still there.
    await mountAndRead('keep-b', { 'etc/os-release': 'ID=gc-test\n', 'app/b': 'only in B\n' });
  });

  it('with no images and no snapshots left, gc leaves an empty store that fsck passes', async () => {
    await ok('snapshots', 'rm', 'keep-b');
    const r = await gcJson();
    assert.deepEqual(
      r.snapshots.map((s) => s.name),
      [chainOf(imgB)[1], chainOf(imgB)[0]],
      'children first',
    );
    assert.deepEqual(await allBlobs(), []);
    assert.deepEqual(await snapshotNames(), []);
    const ids = (await readdir(join(root, 'snapshots', 'overlay'))).filter((n) => /^[0-9]+$/.test(n));
    assert.deepEqual(ids, [], 'no snapshot storage left');
    assert.deepEqual(await readdir(join(root, 'content', 'ingest')), []);
    const fsck = await cli('fsck');
    assert.equal(fsck.code, 0, fsck.stderr);
    assert.match(fsck.stdout, /checked 0 blobs .*0 images, 0 snapshots: 0 problems/);
  });

  it("leaves containerd's snapshots alone; removes dead temporaries, interrupted ingests and dangling links", async () => {
    const store = await Store.open(root);
    const sn = await openSnapshotter(store, 'overlay');
    const k8s = await openSnapshotter(store, 'overlay', { namespace: 'k8s.io' });
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    try {
      // containerd's, by label, by key shape, by namespace: all committed and unreferenced.
      await sn.prepare('c1', undefined);
      await sn.commit('labelled', 'c1', { labels: { 'containerd.io/snapshot.ref': 'sha256:1' } });
      await sn.prepare('default/3/extract', 'labelled');
      await sn.commit('default/4/sha256:2', 'default/3/extract');
      await k8s.prepare('k1');
      await k8s.commit('in-k8s', 'k1');
      // Ours: unreferenced committed, with a dead unpack's temporary and a dead commit's view on it.
      await sn.prepare('o1');
      await sn.commit('orphan', 'o1');
      await sn.prepare('unpack-dead', 'orphan', { labels: { [LABEL_UNPACK]: 'x', [LABEL_UNPACK_OWNER]: `${bootId}/99999999/1` } });
      await sn.view('commit-view-dead', 'orphan', { labels: { [LABEL_COMMIT]: 'somekey' } });
      // A live process's unpack (this one's) and its parent stay.
      await sn.prepare('u1');
      await sn.commit('live-parent', 'u1');
      await sn.prepare('unpack-live', 'live-parent', { labels: { [LABEL_UNPACK]: 'y', [LABEL_UNPACK_OWNER]: await ownerToken() } });
      // An interrupted download and a short link to a snapshot long gone.
      const ingest = await store.content.openIngest('interrupted', { digest: `sha256:${'ab'.repeat(32)}` as Digest });
      await ingest.write(Buffer.from('half a layer'));
      await ingest.close();
      await mkdir(join(root, 'snapshots', 'overlay', 'l'), { recursive: true });
      await symlink('../99999/fs', join(root, 'snapshots', 'overlay', 'l', 'zz'));

      const dry = await gcJson('--dry-run');
      assert.equal(dry.ingests, 1);
      const r = await gcJson();
      const removed = Object.fromEntries(r.snapshots.map((s) => [s.name, s.reason]));
      assert.deepEqual(removed, { 'unpack-dead': 'stale-unpack', 'commit-view-dead': 'stale-commit', orphan: 'unreferenced' });
      assert.deepEqual(dry.snapshots.map((s) => s.name).sort(), r.snapshots.map((s) => s.name).sort(), 'dry run listed the same');
      assert.equal(r.ingests, 1);
      assert.equal(r.links, 1);
      assert.deepEqual(await readdir(join(root, 'snapshots', 'overlay', 'l')), []);

      const names = async (s: typeof sn) => {
        const out: Info[] = [];
        await s.walk((i) => void out.push(i));
        return out.map((i) => i.name).sort();
      };
      assert.deepEqual(await names(sn), ['default/4/sha256:2', 'labelled', 'live-parent', 'unpack-live']);
      assert.deepEqual(await names(k8s), ['in-k8s']);
    } finally {
      await sn.close();
      await k8s.close();
    }
  });

  it('gc waits while another process holds the shared lock (a pull in progress) and proceeds once it is killed', async () => {
    const holder = await holdGcLock(root, 'shared');
    try {
      const t0 = Date.now();
      const gc = started(cli('gc'));
      await sleep(1800);
      assert.equal(gc.done(), false, 'gc must wait for the operation in progress');
      await killChild(holder); // the kernel drops a dead process's flock
      const r = await gc.result;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /Waiting for a pull, import or commit in progress/);
      assert.match(r.stdout, /^removed \d+ blobs/);
      assert.ok(Date.now() - t0 >= 1800);
    } finally {
      await killChild(holder);
    }
  });

  it('import waits while gc holds the lock, and completes after', async () => {
    const holder = await holdGcLock(root, 'exclusive');
    const ref = 'localhost/gc/imported:1';
    try {
      const imp = started(cli('import', imgA.dir, ref));
      await sleep(1200);
      assert.equal(imp.done(), false, 'import must wait for gc');
      assert.doesNotMatch(await ok('images'), /gc\/imported/);
      await killChild(holder);
      const r = await imp.result;
      assert.equal(r.code, 0, r.stderr);
      await mountAndRead(ref, { 'app/a': 'only in A\n' }, ['--readonly']).then((key) => ok('snapshots', 'rm', key));
      const after = await gcJson();
      assert.deepEqual(after.blobs, [], 'the imported image references all it stored');
    } finally {
      await killChild(holder);
    }
  });

  it('gc collects the snapshots of every driver in the store, whatever --driver says', async () => {
    const ref = 'localhost/gc/imported:1';
    const nativeKey = (await ok('--driver', 'native', 'mount', ref, await mkTarget(), '--readonly')).trim();
    await ok('umount', lastTarget);
    await ok('--driver', 'native', 'snapshots', 'rm', nativeKey);
    await ok('rmi', '--no-prune', ref);
    const r = await gcJson();
    const byDriver = (d: string) => r.snapshots.filter((s) => s.driver === d).map((s) => s.name);
    assert.deepEqual(byDriver('overlay'), [...chainOf(imgA)].reverse());
    assert.deepEqual(byDriver('native'), [...chainOf(imgA)].reverse());
    assert.deepEqual(await listSnapshots(root, 'native'), []);
    assert.deepEqual(r.blobs.map((b) => b.digest).sort(), [...blobsOf(imgA)].sort());
  });

  it('a damaged document of a recorded image stops gc before it removes anything', async () => {
    const ref = 'localhost/gc/damaged:1';
    await ok('import', imgB.dir, ref);
    const store = await Store.open(root);
    const orphan = `sha256:${createHash('sha256').update('orphan blob').digest('hex')}` as Digest;
    await store.content.put(Readable.from([Buffer.from('orphan blob')]), { digest: orphan });
    const manifest = store.content.blobPath(imgB.top.digest as Digest);
    const bytes = await readFile(manifest);
    await chmod(manifest, 0o644);
    await writeFile(manifest, Buffer.from(bytes.toString('latin1').replace(/[a-f]/g, 'a'), 'latin1')); // same size, other digest

    const r = await cli('gc');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tslayer: gc: gc removed nothing: image localhost\/gc\/damaged:1: .*fsck --repair/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.equal(await hasBlob(root, orphan), true, 'nothing removed');

    // The way out the message gives: fsck --repair drops the corrupt manifest, rmi the record.
    assert.equal((await cli('fsck', '--repair')).code, 1, 'the image stays broken until removed');
    await ok('rmi', ref);
    const after = await gcJson();
    assert.ok(after.blobs.some((b) => b.digest === orphan));
    assert.deepEqual(await allBlobs(), []);
  });
});
