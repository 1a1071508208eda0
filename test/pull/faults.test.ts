// `tslayer pull` when things go wrong: a connection cut mid-blob (resumed with Range), a
// registry serving bytes that do not match their digest, a truncated gzip layer, a layer
// whose media type lies about its compression, a config whose diff id does not match.
// After a failure the store must hold no blob of bad bytes and no committed snapshot of
// a layer that was not fully and correctly applied (and no temporary snapshot either).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { compress as zstdCompress } from 'zstd-napi';
import { chainIds } from '../../src/image/chainid.js';
import type { Digest } from '../../src/image/digest.js';
import { Store } from '../../src/store.js';
import { startProxy } from '../helpers/proxy.js';
import { runCli, TSLAYER_BIN } from '../helpers/cli.js';
import { hasBlob, listSnapshots, withImageMounted } from '../helpers/images.js';
import {
  buildImageLayout,
  pushLayout,
  startCuttingProxy,
  startRegistry,
  type BuiltLayout,
  type LayerSpec,
  type RunningRegistry,
} from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

describe('tslayer pull: faults', () => {
  let reg: RunningRegistry;
  const cleanups: Array<() => Promise<void>> = [];

  async function layout(label: string, layers: LayerSpec[]): Promise<BuiltLayout> {
    const dir = await makeTmpDir(`layout-${label}`);
    cleanups.push(() => removeTmpDir(dir));
    return buildImageLayout(dir, layers);
  }

  async function newRoot(): Promise<string> {
    const dir = await makeTmpDir('faults-root');
    cleanups.push(() => removeTmpDir(dir));
    return dir;
  }

  before(async () => {
    reg = await startRegistry();
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await reg?.stop();
  });

  /** No temporary (active) snapshot and no partial ingest is left in the store. */
  async function assertNoDebris(root: string): Promise<void> {
    const active = (await listSnapshots(root)).filter((s) => s.kind !== 'committed');
    assert.deepEqual(active, [], 'no temporary snapshot left');
    const store = await Store.open(root);
    const ingests = [];
    for await (const i of store.content.ingests()) ingests.push(i);
    assert.deepEqual(ingests, [], 'no partial ingest left');
  }

  it('a connection cut mid-blob is resumed with Range and the pull succeeds', async () => {
    const big = randomBytes(3 << 20); // incompressible: the gzip blob is ~3 MB too
    const built = await layout('cut', [{ files: { 'big.bin': big, 'small.txt': 'small\n' } }]);
    await pushLayout(built.dir, `${reg.host}/cut:latest`);
    const layer = built.images[0]!.layers[0]!;
    const proxy = await startCuttingProxy(reg.host, {
      cutAfterBytes: 1 << 20,
      match: (m, u) => m === 'GET' && u.includes(layer.digest),
    });
    try {
      const root = await newRoot();
      const ref = `${proxy.host}/cut:latest`;
      const r = await runCli(['--root', root, 'pull', ref]);
      assert.equal(r.code, 0, r.stderr);
      const blobGets = proxy.requests.filter((q) => q.method === 'GET' && q.url.includes(layer.digest));
      assert.equal(blobGets[0]!.cut, true, 'the first download was cut');
      assert.ok(blobGets.some((q) => /^bytes=\d+-$/.test(String(q.headers.range)) && !q.cut), 'resumed with a Range request');
      await withImageMounted(root, ref, async (dir) => {
        assert.ok((await readFile(join(dir, 'big.bin'))).equals(big));
      });
      await assertNoDebris(root);
    } finally {
      await proxy.close();
    }
  });

  // Random data is stored by gzip as is, so the flipped bytes are found by the digest
  // check at the end; in text the decompressor trips over them first. Either way the
  // message names the blob and nothing of it stays.
  for (const [kind, data] of [
    ['random', () => randomBytes(200_000)],
    ['compressible', () => Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i} ${i * 7919 % 1000}\n`).join(''))],
  ] as const) {
    it(`a blob whose bytes do not match its digest (${kind} data) fails naming the digest and leaves nothing of it`, async () => {
      const repo = `corrupt-${kind}`;
      const built = await layout(repo, [{ files: { 'data.bin': data() } }]);
      await pushLayout(built.dir, `${reg.host}/${repo}:latest`);
      const layer = built.images[0]!.layers[0]!;
      await reg.corruptBlob(layer.digest);
      const root = await newRoot();
      const r = await runCli(['--root', root, 'pull', `${reg.host}/${repo}:latest`]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^tslayer: pull: /);
      assert.ok(r.stderr.includes(layer.digest), r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line on stderr');
      assert.equal(await hasBlob(root, layer.digest), false, 'no blob of the bad bytes');
      assert.deepEqual(await listSnapshots(root), [], 'no snapshot of the bad layer');
      await assertNoDebris(root);
      // No image was recorded either.
      const images = await runCli(['--root', root, '--json', 'images']);
      assert.deepEqual(JSON.parse(images.stdout), []);
    });
  }

  it('a pull killed mid-layer leaves only debris that the next pull removes', async () => {
    // The first layer streams from the network into its snapshot (the others are stored first).
    const built = await layout('killed', [{ files: { 'big.bin': randomBytes(2 << 20) } }, { files: { 'top/f': 'top\n' } }]);
    await pushLayout(built.dir, `${reg.host}/killed:latest`);
    const big = built.images[0]!.layers[0]!;
    // A proxy that sends the first 256 KiB of the big layer and then stalls.
    const stall = await startProxy(reg.host, { stall: { digests: [big.digest], after: 256 << 10 } });
    const root = await newRoot();
    const child = spawn(process.execPath, [TSLAYER_BIN, '--root', root, 'pull', `${stall.host}/killed:latest`], { stdio: 'ignore' });
    const exited = new Promise((r) => child.on('close', r));
    try {
      // Wait until the big layer is being unpacked into a temporary snapshot, then kill -9.
      for (let i = 0; ; i++) {
        const snaps = await listSnapshots(root).catch(() => []);
        if (snaps.some((s) => s.kind === 'active')) break;
        if (i > 300) assert.fail('the pull never started unpacking the big layer');
        await sleep(20);
      }
      child.kill('SIGKILL');
      await exited;
    } finally {
      child.kill('SIGKILL');
      await stall.close();
    }
    assert.equal((await listSnapshots(root)).filter((s) => s.kind === 'active').length, 1, 'the killed pull left its temporary snapshot');
    const r = await runCli(['--root', root, 'pull', `${reg.host}/killed:latest`]);
    assert.equal(r.code, 0, r.stderr);
    const snaps = await listSnapshots(root);
    assert.ok(snaps.every((s) => s.kind === 'committed'), JSON.stringify(snaps));
    assert.equal(snaps.length, 2);
    // Ingest debris of the killed process (a download cut off, or one killed between
    // publishing its blob and removing its ingest directory) is the content store's to
    // clean (cleanupIngests, run by gc); it never becomes a blob or a snapshot.
  });

  // Nothing of the big layer reached its ingest yet (256 KiB sit below the 1 MiB rechunking),
  // so no ingest is kept either; staged bytes are kept and resumed (test/pull/resume.test.ts).
  it('Ctrl-C during a pull stops it with status 130 and removes its temporary snapshot (and its empty ingest)', async () => {
    const built = await layout('sigint', [{ files: { 'big.bin': randomBytes(2 << 20) } }, { files: { 'top/f': 'top\n' } }]);
    await pushLayout(built.dir, `${reg.host}/sigint:latest`);
    const stall = await startProxy(reg.host, { stall: { digests: [built.images[0]!.layers[0]!.digest], after: 256 << 10 } });
    const root = await newRoot();
    const child = spawn(process.execPath, [TSLAYER_BIN, '--root', root, 'pull', `${stall.host}/sigint:latest`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      for (let i = 0; ; i++) {
        const snaps = await listSnapshots(root).catch(() => []);
        if (snaps.some((s) => s.kind === 'active')) break;
        if (i > 300) assert.fail('the pull never started unpacking');
        await sleep(20);
      }
      child.kill('SIGINT');
      const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout')]);
      assert.equal(code, 130, stderr);
      assert.match(stderr, /interrupted/);
    } finally {
      child.kill('SIGKILL');
      await stall.close();
    }
    assert.deepEqual(await listSnapshots(root), []);
    await assertNoDebris(root);
  });

  it('a truncated gzip layer fails and leaves no committed snapshot of it', async () => {
    const built = await layout('trunc', [
      { files: { 'ok/file': 'fine\n' } },
      { files: { 'bad/data': randomBytes(100_000) } },
    ]);
    await rewriteImage(built, { layerBytes: (i, b) => (i === 1 ? b.subarray(0, Math.floor(b.length / 2)) : b) });
    await pushLayout(built.dir, `${reg.host}/trunc:latest`);
    const root = await newRoot();
    const r = await runCli(['--root', root, 'pull', `${reg.host}/trunc:latest`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tslayer: pull: .*(unexpected end|truncated)/i);
    const ids = chainIds(built.images[0]!.layers.map((l) => l.diffId as Digest));
    const snaps = await listSnapshots(root);
    assert.deepEqual(snaps.map((s) => [s.name, s.kind]), [[ids[0], 'committed']], 'only the good first layer is committed');
    await assertNoDebris(root);
  });

  it('a layer whose media type says gzip but holds zstd is refused', async () => {
    const built = await layout('liar', [{ files: { 'x/file': 'x\n' }, compression: 'none' }]);
    await rewriteImage(built, {
      layerBytes: (_i, b) => zstdCompress(b),
      mediaType: () => 'application/vnd.oci.image.layer.v1.tar+gzip',
    });
    await pushLayout(built.dir, `${reg.host}/liar:latest`);
    const root = await newRoot();
    const r = await runCli(['--root', root, 'pull', `${reg.host}/liar:latest`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /declared application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip \(gzip\) but its content is zstd/);
    assert.deepEqual(await listSnapshots(root), []);
    await assertNoDebris(root);
  });

  it('a layer that does not unpack to its config diff id is refused and not committed', async () => {
    const built = await layout('diffid', [{ files: { 'y/file': 'y\n' } }]);
    const wrong = `sha256:${createHash('sha256').update('something else').digest('hex')}`;
    await rewriteImage(built, { diffIds: () => [wrong] });
    await pushLayout(built.dir, `${reg.host}/diffid:latest`);
    const root = await newRoot();
    const r = await runCli(['--root', root, 'pull', `${reg.host}/diffid:latest`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`diff id ${built.images[0]!.layers[0]!.diffId}.*config says ${wrong}`));
    assert.deepEqual(await listSnapshots(root), []);
    await assertNoDebris(root);
  });
});

/**
 * Rewrites the single image of a layout in place: layer bytes, layer media types and the
 * config's diff ids; new blobs, a new config, manifest and index.json are written.
 */
async function rewriteImage(
  built: BuiltLayout,
  change: {
    layerBytes?: (i: number, b: Buffer) => Buffer;
    mediaType?: (i: number, mt: string) => string;
    diffIds?: (ids: string[]) => string[];
  },
): Promise<void> {
  const blobs = join(built.dir, 'blobs', 'sha256');
  const hex = (d: string) => d.slice('sha256:'.length);
  const put = async (data: Buffer) => {
    const h = createHash('sha256').update(data).digest('hex');
    await writeFile(join(blobs, h), data);
    return { digest: `sha256:${h}`, size: data.length };
  };
  const image = built.images[0]!;
  const manifest = JSON.parse(await readFile(join(blobs, hex(image.manifest.digest)), 'utf8'));
  const config = JSON.parse(await readFile(join(blobs, hex(image.config.digest)), 'utf8'));
  for (const [i, l] of (manifest.layers as Array<{ mediaType: string; digest: string; size: number }>).entries()) {
    if (change.layerBytes) Object.assign(l, await put(change.layerBytes(i, await readFile(join(blobs, hex(l.digest))))));
    if (change.mediaType) l.mediaType = change.mediaType(i, l.mediaType);
  }
  if (change.diffIds) config.rootfs.diff_ids = change.diffIds(config.rootfs.diff_ids);
  manifest.config = { ...manifest.config, ...(await put(Buffer.from(JSON.stringify(config)))) };
  const m = await put(Buffer.from(JSON.stringify(manifest)));
  const index = JSON.parse(await readFile(join(built.dir, 'index.json'), 'utf8'));
  index.manifests[0] = { ...index.manifests[0], ...m };
  await writeFile(join(built.dir, 'index.json'), JSON.stringify(index));
}

/**
 * An HTTP proxy to `target` that, for GETs of blob `digest`, sends `bytes` bytes of the
 * body and then sends nothing more (until closed): a download stuck mid-blob.
 */
