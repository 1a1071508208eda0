// `tslayer rmi` as docker/podman users know it: the record goes, and with it the blobs and
// committed snapshots (the layers) that no other image, no active or view snapshot (a
// mounted container) and nothing of containerd's uses; `--no-prune` removes the record
// only. Real CLI, real registry, real store, real mounts; the gc lock is held by real other
// processes, and rmi is killed for real (SIGKILL) half-way.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { GcReport, RmiReport } from '../../src/care/gc.js';
import { chainIds } from '../../src/image/chainid.js';
import type { Digest } from '../../src/image/digest.js';
import { openSnapshotter, type DriverName } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { runCli, TSLAYER_BIN, type CliResult } from '../helpers/cli.js';
import { holdGcLock, killChild } from '../helpers/gclock.js';
import { hasBlob, listSnapshots } from '../helpers/images.js';
import { mountAt } from '../helpers/leftovers.js';
import { buildImageLayout, buildMultiArchLayout, pushLayout, startRegistry, type BuiltLayout, type LayerFiles, type RunningRegistry } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const blobsOf = (img: BuiltLayout, i = 0): string[] => [img.top.digest, img.images[i]!.config.digest, ...img.images[i]!.layers.map((l) => l.digest)];
const chainOf = (img: BuiltLayout, i = 0): string[] => chainIds(img.images[i]!.layers.map((l) => l.diffId as Digest));
const sorted = <T>(xs: Iterable<T>): T[] => [...xs].sort();

describe('tslayer rmi', () => {
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
  const rmiJson = async (...args: string[]): Promise<RmiReport> => JSON.parse(await ok('--json', 'rmi', ...args)) as RmiReport;
  const gcJson = async (): Promise<GcReport> => JSON.parse(await ok('--json', 'gc')) as GcReport;

  const snapshotNames = async (driver: DriverName = 'overlay'): Promise<string[]> => sorted((await listSnapshots(root, driver)).map((i) => i.name));
  const allBlobs = async (): Promise<string[]> => {
    const store = await Store.open(root);
    const out: string[] = [];
    for await (const b of store.content.walk()) out.push(b.digest);
    return out.sort();
  };
  /** The snapshot ids that have storage under snapshots/<driver>/. */
  const storageIds = async (driver: DriverName = 'overlay'): Promise<string[]> =>
    sorted((await readdir(join(root, 'snapshots', driver)).catch(() => [] as string[])).filter((n) => /^[0-9]+$/.test(n)));
  /** Ids the metadata records for `driver`. */
  const recordedIds = async (driver: DriverName = 'overlay'): Promise<string[]> => {
    const store = await Store.open(root);
    return store.metadata.read(async (tx) => sorted((await tx.list(`snapshots/${driver}/`)).map(([k]) => /\/ids\/([0-9]+)$/.exec(k)?.[1]).filter((x): x is string => x !== undefined)));
  };

  const mkTarget = async (): Promise<string> => {
    const t = join(dir, `mnt-${Math.random().toString(36).slice(2)}`);
    await mkdir(t);
    return t;
  };
  /** Mounts SOURCE with the CLI, checks files, unmounts and removes the snapshot. */
  async function mountAndRead(source: string, files: Record<string, string>, extra: string[] = []): Promise<void> {
    const target = await mkTarget();
    const key = (await ok(...extra, 'mount', source, target, '--readonly')).trim();
    try {
      for (const [path, want] of Object.entries(files)) assert.equal(await readFile(join(target, path), 'utf8'), want, path);
    } finally {
      await ok('umount', target);
      await ok(...extra, 'snapshots', 'rm', key);
    }
    assert.equal(mountAt(target), undefined);
  }

  const base = { files: { 'etc/os-release': 'ID=rmi-test\n', 'bin/sh': 'shell\n' } };
  const filesA = { 'etc/os-release': 'ID=rmi-test\n', 'app/a': 'only in A\n' };
  const filesB = { 'etc/os-release': 'ID=rmi-test\n', 'app/b': 'only in B\n' };

  before(async () => {
    reg = await startRegistry();
    dir = await makeTmpDir('cli-rmi');
    root = join(dir, 'root');
    imgA = await buildImageLayout(join(dir, 'layout-a'), [base, { files: { 'app/a': 'only in A\n' } }]);
    imgB = await buildImageLayout(join(dir, 'layout-b'), [base, { files: { 'app/b': 'only in B\n' } }]);
    assert.equal(imgA.images[0]!.layers[0]!.digest, imgB.images[0]!.layers[0]!.digest, 'the two images share their base layer');
    refA = `${reg.host}/rmi/a:1`;
    refB = `${reg.host}/rmi/b:1`;
    await pushLayout(imgA.dir, refA);
    await pushLayout(imgB.dir, refB);
  });
  after(async () => {
    await reg?.stop();
    await removeTmpDir(dir); // fails the suite if anything is still mounted under it
  });

  it('frees exactly what only the image used: its blobs and top snapshot go, the shared base stays; --json says what went', async () => {
    await ok('pull', refA);
    await ok('pull', refB);
    const idsBefore = await storageIds();
    assert.equal(idsBefore.length, 3, 'a shared base and two tops');

    const r = await rmiJson(refA);
    const uniqueA = blobsOf(imgA).filter((d) => !blobsOf(imgB).includes(d));
    assert.equal(uniqueA.length, 3, 'manifest, config, top layer');
    assert.equal(r.ref, refA);
    assert.equal(r.digest, imgA.top.digest);
    assert.equal(r.pruned, true);
    assert.deepEqual(sorted(r.blobs.map((b) => b.digest)), sorted(uniqueA));
    const sizes = new Map([imgA.top, imgA.images[0]!.config, ...imgA.images[0]!.layers].map((b) => [b.digest, b.size]));
    for (const b of r.blobs) assert.equal(b.size, sizes.get(b.digest), b.digest);
    assert.equal(r.bytes, r.blobs.reduce((n, b) => n + b.size, 0));
    assert.deepEqual(r.snapshots, [{ driver: 'overlay', name: chainOf(imgA)[1], kind: 'committed', reason: 'unreferenced' }]);
    assert.deepEqual(r.skipped, []);

    // On disk: exactly that, storage included; B is whole and mounts.
    assert.deepEqual(await allBlobs(), sorted(blobsOf(imgB)));
    assert.deepEqual(await snapshotNames(), sorted(chainOf(imgB)));
    assert.deepEqual(await storageIds(), await recordedIds());
    assert.equal((await storageIds()).length, 2);
    assert.doesNotMatch(await ok('images'), /rmi\/a/);
    await mountAndRead(refB, filesB);
    const again = await gcJson();
    assert.deepEqual([again.blobs, again.snapshots], [[], []], 'nothing left for gc');
  });

  it('human output: "Untagged: REF", then what was deleted; nothing to delete for a second tag of the same image', async () => {
    await ok('pull', refA);
    const alias = `${reg.host}/rmi/a-alias:1`;
    await pushLayout(imgA.dir, alias);
    await ok('pull', alias);
    const blobs = await allBlobs();

    const first = await cli('rmi', alias);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, `Untagged: ${alias}\n`, 'the other tag keeps everything');
    assert.deepEqual(await allBlobs(), blobs);

    const second = await cli('rmi', refA);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, new RegExp(`^Untagged: ${refA.replace(/[.]/g, '\\.')}\nDeleted: 3 blobs \\(\\d[\\d.]* k?B\\), 1 snapshot\n$`));
    assert.equal(second.stderr, '');
  });

  it('keeps what a mounted container (an active snapshot) uses: the blobs go, its parent chain stays and it still reads', async () => {
    const target = await mkTarget();
    assert.equal((await ok('mount', refB, target, '--name', 'container-b')).trim(), 'container-b');
    try {
      await writeFile(join(target, 'app/new'), 'written in the container\n');
      const r = await rmiJson(refB);
      assert.deepEqual(sorted(r.blobs.map((b) => b.digest)), sorted(blobsOf(imgB)), 'every blob of B goes');
      assert.deepEqual(r.snapshots, [], 'its layers are the container\'s');
      assert.deepEqual(await snapshotNames(), sorted([...chainOf(imgB), 'container-b']));
      assert.deepEqual(await storageIds(), await recordedIds());
      for (const [path, want] of Object.entries({ ...filesB, 'app/new': 'written in the container\n' })) {
        assert.equal(await readFile(join(target, path), 'utf8'), want, path);
      }
    } finally {
      await ok('umount', target);
    }
    // Once the container is gone, gc frees the chain (rmi only frees what the image it removes held).
    await ok('snapshots', 'rm', 'container-b');
    const g = await gcJson();
    assert.deepEqual(g.snapshots.map((s) => s.name), [...chainOf(imgB)].reverse());
    assert.deepEqual(await storageIds(), []);
    assert.deepEqual(await allBlobs(), []);
  });

  it("keeps a layer containerd's snapshots build on (tslayer serve), and what a read-only view uses", async () => {
    await ok('pull', refA);
    const store = await Store.open(root);
    const sn = await openSnapshotter(store, 'overlay');
    try {
      // containerd's: a committed snapshot on A's base (its label says whose it is).
      await sn.prepare('default/7/extract', chainOf(imgA)[0]);
      await sn.commit('default/8/sha256:theirs', 'default/7/extract', { labels: { 'containerd.io/snapshot.ref': 'x' } });
      // Ours: a view on A's top.
      await sn.view('a-view', chainOf(imgA)[1]);
    } finally {
      await sn.close();
    }
    const r = await rmiJson(refA);
    assert.deepEqual(r.snapshots, []);
    assert.deepEqual(await snapshotNames(), sorted([...chainOf(imgA), 'default/8/sha256:theirs', 'a-view']));

    await ok('snapshots', 'rm', 'a-view');
    await ok('snapshots', 'rm', 'default/8/sha256:theirs');
    const g = await gcJson();
    assert.deepEqual(g.snapshots.map((s) => s.name), [...chainOf(imgA)].reverse());
    assert.deepEqual(await storageIds(), []);
  });

  it('--no-prune removes the record only; gc frees the rest', async () => {
    await ok('pull', refA);
    const blobs = await allBlobs();
    const names = await snapshotNames();
    const human = await cli('rmi', '--no-prune', refA);
    assert.equal(human.code, 0, human.stderr);
    assert.equal(human.stdout, `Untagged: ${refA}\n`);
    assert.deepEqual(await allBlobs(), blobs);
    assert.deepEqual(await snapshotNames(), names);
    assert.doesNotMatch(await ok('images'), /rmi\/a/);

    await ok('pull', refA);
    const j = await rmiJson('--no-prune', refA);
    assert.deepEqual(j, { ref: refA, digest: imgA.top.digest, pruned: false, blobs: [], snapshots: [], bytes: 0, skipped: [] });
    const g = await gcJson();
    assert.deepEqual(sorted(g.blobs.map((b) => b.digest)), sorted(blobsOf(imgA)));
    assert.deepEqual(g.snapshots.map((s) => s.name), [...chainOf(imgA)].reverse());
  });

  it('frees the snapshots of every driver in the store (overlay and native), whatever --driver says', async () => {
    await ok('pull', refA);
    await ok('pull', refB);
    await mountAndRead(refA, filesA, ['--driver', 'native']); // unpacks A's chain for native too
    await mountAndRead(refB, filesB, ['--driver', 'native']);
    assert.deepEqual(await snapshotNames('native'), sorted(new Set([...chainOf(imgA), ...chainOf(imgB)])));

    const r = await rmiJson(refA); // --driver overlay (the default)
    const byDriver = (d: string) => r.snapshots.filter((s) => s.driver === d).map((s) => s.name);
    assert.deepEqual(byDriver('overlay'), [chainOf(imgA)[1]]);
    assert.deepEqual(byDriver('native'), [chainOf(imgA)[1]]);
    for (const d of ['overlay', 'native'] as const) {
      assert.deepEqual(await snapshotNames(d), sorted(chainOf(imgB)), d);
      assert.deepEqual(await storageIds(d), await recordedIds(d), `${d}: no storage without a record`);
    }
    await mountAndRead(refB, filesB, ['--driver', 'native']);

    const rb = await rmiJson('--driver', 'native', refB);
    assert.deepEqual(sorted(rb.snapshots.map((s) => `${s.driver} ${s.name}`)), sorted(['overlay', 'native'].flatMap((d) => chainOf(imgB).map((c) => `${d} ${c}`))));
    assert.deepEqual(rb.snapshots.filter((s) => s.driver === 'overlay').map((s) => s.name), [...chainOf(imgB)].reverse(), 'children first');
    for (const d of ['overlay', 'native'] as const) assert.deepEqual(await storageIds(d), [], d);
    assert.deepEqual(await allBlobs(), []);
  });

  it('an image index: the index, the pulled platform\'s manifest, config and layers go', async () => {
    const multi = await buildMultiArchLayout(join(dir, 'layout-multi'), [
      { platform: { os: 'linux', architecture: 'amd64' }, layers: [{ files: { 'arch': 'amd64\n' } }] },
      { platform: { os: 'linux', architecture: 'arm64' }, layers: [{ files: { 'arch': 'arm64\n' } }] },
    ]);
    const ref = `${reg.host}/rmi/multi:1`;
    await pushLayout(multi.dir, ref, { all: true });
    await ok('pull', ref, '--platform', 'linux/amd64');
    const r = await rmiJson(ref);
    const amd64 = [multi.top.digest, multi.images[0]!.manifest.digest, multi.images[0]!.config.digest, ...multi.images[0]!.layers.map((l) => l.digest)];
    assert.deepEqual(sorted(r.blobs.map((b) => b.digest)), sorted(amd64), 'index, amd64 manifest, config, layer');
    assert.deepEqual(r.snapshots.map((s) => s.name), chainOf(multi, 0));
    assert.deepEqual(await allBlobs(), []);
    assert.deepEqual(await storageIds(), []);
  });

  it('waits while a pull, import or commit holds the gc lock (and says so); --no-prune does not wait', async () => {
    await ok('pull', refA);
    const holder = await holdGcLock(root, 'shared');
    try {
      const noPrune = await cli('rmi', '--no-prune', refA);
      assert.equal(noPrune.code, 0, noPrune.stderr);
      await ok('pull', refA); // a pull takes the lock shared too: no wait either

      let finished = false;
      const run = cli('rmi', refA).finally(() => (finished = true));
      await sleep(1800);
      assert.equal(finished, false, 'rmi must wait for the operation in progress');
      assert.deepEqual(await allBlobs(), sorted(blobsOf(imgA)), 'and remove nothing meanwhile');
      await killChild(holder); // the kernel drops a dead process's flock
      const r = await run;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /Waiting for a pull, import or commit in progress/);
      assert.match(r.stdout, /^Untagged: .*\nDeleted: 4 blobs/);
      assert.deepEqual(await allBlobs(), []);
    } finally {
      await killChild(holder);
    }
  });

  it('a damaged document of another image stops rmi before it removes anything; rmi of the damaged image itself works', async () => {
    await ok('pull', refA);
    const damaged = 'localhost/rmi/damaged:1';
    await ok('import', imgB.dir, damaged);
    const store = await Store.open(root);
    const manifest = store.content.blobPath(imgB.top.digest as Digest);
    const bytes = await readFile(manifest);
    await chmod(manifest, 0o644);
    await writeFile(manifest, Buffer.from(bytes.toString('latin1').replace(/[a-f]/g, 'a'), 'latin1')); // same size, other digest
    const blobs = await allBlobs();
    const names = await snapshotNames();

    const r = await cli('rmi', refA);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tslayer: rmi: rmi removed nothing: image localhost\/rmi\/damaged:1: .*fsck --repair.*rmi --no-prune/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(await ok('images'), /rmi\/a/, 'the record stays too');
    assert.deepEqual(await allBlobs(), blobs);
    assert.deepEqual(await snapshotNames(), names);

    // The way out: rmi the damaged image (what it referenced cannot be read: left for gc).
    const d = await cli('--json', 'rmi', damaged);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stderr, /^tslayer: rmi: warning: image localhost\/rmi\/damaged:1: .*left for `tslayer gc`\n$/);
    assert.ok((JSON.parse(d.stdout) as RmiReport).blobs.some((b) => b.digest === imgB.top.digest), 'its own (damaged) manifest goes');
    await rmiJson(refA);
    await gcJson();
    assert.deepEqual(await allBlobs(), []);
    assert.deepEqual(await storageIds(), []);
    const fsck = await cli('fsck');
    assert.equal(fsck.code, 0, fsck.stderr);
  });
});

/** Runs `tslayer ARGS`, SIGKILLs it once `when` says so (or it ends); resolves with how it ended. */
function runUntil(args: string[], when: () => Promise<boolean>): Promise<{ killed: boolean; result: CliResult }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSLAYER_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ killed, result: { code, signal, stdout, stderr } }));
    void (async () => {
      while (child.exitCode === null && child.signalCode === null) {
        if (await when().catch(() => false)) {
          killed = child.kill('SIGKILL');
          return;
        }
        await sleep(2);
      }
    })();
  });
}

describe('tslayer rmi killed with SIGKILL half-way', () => {
  let reg: RunningRegistry;
  let dir: string;
  let img: BuiltLayout;
  let ref: string;

  before(async () => {
    reg = await startRegistry();
    dir = await makeTmpDir('cli-rmi-kill');
    // A top layer of many files, so that freeing it takes a while.
    const many: LayerFiles = {};
    for (let d = 0; d < 40; d++) for (let f = 0; f < 250; f++) many[`data/d${d}/f${f}`] = `${d}/${f}\n`;
    img = await buildImageLayout(join(dir, 'layout'), [{ files: { 'etc/os-release': 'ID=kill\n' } }, { files: { ...many, 'app/top': 'top layer\n' } }]);
    ref = `${reg.host}/rmi/kill:1`;
    await pushLayout(img.dir, ref);
  });
  after(async () => {
    await reg?.stop();
    await removeTmpDir(dir);
  });

  // Where it is killed: before it has done anything, once the record is gone (the blobs go
  // next), once the layers' storage is being freed.
  const points: Array<[string, (root: string) => Promise<boolean>]> = [
    ['at once', async () => true],
    ['once a blob is gone', async (root) => !(await hasBlobQuick(root, img.images[0]!.layers[1]!.digest))],
    ['while the storage is freed', (root) => beingFreed(root)],
  ];
  for (const [where, when] of points) {
    it(`killed ${where}: the store stays sound; a pull brings the image back whole; gc frees what is left`, async () => {
      const root = join(dir, `root-${where.replace(/\W+/g, '-')}`);
      const cli = (...args: string[]) => runCli(['--root', root, ...args], { timeoutMs: 120_000 });
      const ok = async (...args: string[]) => {
        const r = await cli(...args);
        assert.equal(r.code, 0, `tslayer ${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      };
      await ok('pull', ref);
      const { killed, result } = await runUntil(['--root', root, 'rmi', ref], () => when(root));
      if (!killed) assert.equal(result.code, 0, result.stderr); // it may have finished first

      // Whatever it got to: no snapshot record without its storage (fsck), and a pull of the
      // image gives it back whole (a recorded layer with its data gone would read empty).
      const fsck1 = await cli('fsck');
      assert.equal(fsck1.code, 0, `${fsck1.stdout}${fsck1.stderr}`);
      await ok('pull', ref);
      const target = join(dir, `mnt-${Math.random().toString(36).slice(2)}`);
      await mkdir(target);
      const key = (await ok('mount', ref, target, '--readonly')).trim();
      try {
        assert.equal(await readFile(join(target, 'etc/os-release'), 'utf8'), 'ID=kill\n');
        assert.equal(await readFile(join(target, 'app/top'), 'utf8'), 'top layer\n');
        assert.equal(await readFile(join(target, 'data/d39/f249'), 'utf8'), '39/249\n');
      } finally {
        await ok('umount', target);
        await ok('snapshots', 'rm', key);
      }
      await ok('rmi', ref);
      await ok('gc');
      const store = await Store.open(root);
      const blobs: string[] = [];
      for await (const b of store.content.walk()) blobs.push(b.digest);
      assert.deepEqual(blobs, []);
      await waitFor(async () => (await readdir(join(root, 'snapshots', 'overlay'))).filter((n) => /^[0-9]+$/.test(n) || n.startsWith('new-')).length === 0);
      const fsck2 = await cli('fsck');
      assert.equal(fsck2.code, 0, fsck2.stderr);
      assert.match(fsck2.stdout, /checked 0 blobs .*0 images, 0 snapshots: 0 problems/);
    });
  }
});

async function hasBlobQuick(root: string, digest: string): Promise<boolean> {
  return stat(join(root, 'content', 'blobs', 'sha256', digest.slice('sha256:'.length))).then(() => true, () => false);
}

/** Whether the top layer's storage (the one with data/d0..d39) has started to go. */
async function beingFreed(root: string): Promise<boolean> {
  const base = join(root, 'snapshots', 'overlay');
  for (const id of await readdir(base)) {
    if (!/^[0-9]+$/.test(id)) continue;
    const entries = await readdir(join(base, id, 'fs', 'data')).catch(() => undefined);
    if (entries !== undefined && entries.length < 40) return true;
  }
  return false;
}

/** Polls `cond` until it holds (orphaned rm(1)s of a killed rmi may still be finishing). */
async function waitFor(cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(20);
  }
}
