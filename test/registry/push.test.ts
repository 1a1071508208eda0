// Pushing to a real docker-registry: blobs (monolithic, chunked, skipped, mounted) and
// manifests, then read back by skopeo as an independent client.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import type { Descriptor, Index, Manifest } from '../../src/image/descriptor.js';
import type { Digest } from '../../src/image/digest.js';
import { MediaType } from '../../src/image/mediatype.js';
import { parseReference } from '../../src/image/reference.js';
import { RegistryClient } from '../../src/registry/client.js';
import {
  buildImageLayout,
  collect,
  skopeoInspect,
  startCuttingProxy,
  startRegistry,
  type CuttingProxy,
  type RunningRegistry,
} from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;

/** A blob in a temp file, with an opener that reads it from any offset (as a store would). */
async function fileBlob(dir: string, name: string, data: Buffer, mediaType = MediaType.OciLayer as string) {
  const path = join(dir, name);
  await writeFile(path, data);
  const desc: Descriptor = { mediaType, digest: sha256(data), size: data.length };
  const opened: number[] = [];
  const open = (offset: number) => {
    opened.push(offset);
    return createReadStream(path, { start: offset });
  };
  return { desc, data, open, opened };
}

function noise(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  let h = createHash('sha256').update(seed).digest();
  for (let i = 0; i < n; i += h.length) {
    h.copy(out, i);
    h = createHash('sha256').update(h).digest();
  }
  return out;
}

describe('registry client: push to a real registry', () => {
  let reg: RunningRegistry;
  let proxy: CuttingProxy; // cuts nothing: records what the client sends
  let tmp: string;
  const client = new RegistryClient();
  // Requests go through the recording proxy so tests can see them.
  const ref = (s: string) => parseReference(`${proxy.host}/${s}`);
  const sent = (from: number) => proxy.requests.slice(from).map((r) => `${r.method} ${r.url.replace(/\?.*/, '')}`);

  before(async () => {
    reg = await startRegistry();
    proxy = await startCuttingProxy(reg.host, { cutAfterBytes: 0, times: 0 });
    tmp = await makeTmpDir('registry-push');
  });
  after(async () => {
    client.close();
    await proxy?.close();
    await reg?.stop();
    if (tmp) await removeTmpDir(tmp);
  });

  it('uploads a blob monolithically (POST then one PUT ?digest=)', async () => {
    const b = await fileBlob(tmp, 'mono', noise(200_000, 'mono'));
    const mark = proxy.requests.length;
    await client.pushBlob(ref('push/mono'), b.desc, b.open);
    const calls = sent(mark);
    assert.deepEqual(calls.map((c) => c.split(' ')[0]), ['HEAD', 'POST', 'PUT']);
    const put = proxy.requests.slice(mark).find((r) => r.method === 'PUT')!;
    assert.ok(put.url.includes(`digest=${encodeURIComponent(b.desc.digest)}`) || put.url.includes(`digest=${b.desc.digest}`), put.url);
    assert.equal(put.headers['content-length'], String(b.desc.size));
    assert.deepEqual(await collect(client.fetchBlob(ref('push/mono'), b.desc)), b.data);
  });

  it('uploads a blob in PATCH chunks with Content-Range, then closes with PUT', async () => {
    const b = await fileBlob(tmp, 'chunked', noise(300_000, 'chunked'));
    const mark = proxy.requests.length;
    await client.pushBlob(ref('push/chunked'), b.desc, b.open, { chunkSize: 64 << 10 });
    const reqs = proxy.requests.slice(mark);
    const patches = reqs.filter((r) => r.method === 'PATCH');
    assert.equal(patches.length, Math.ceil(300_000 / (64 << 10)));
    assert.deepEqual(
      patches.map((p) => p.headers['content-range']),
      [0, 1, 2, 3, 4].map((i) => `${i * 65536}-${Math.min((i + 1) * 65536, 300_000) - 1}`),
    );
    assert.deepEqual(b.opened, [0, 65536, 131072, 196608, 262144]);
    assert.equal(reqs.at(-1)!.method, 'PUT');
    assert.equal(reqs.at(-1)!.headers['content-length'], '0');
    assert.deepEqual(await collect(client.fetchBlob(ref('push/chunked'), b.desc)), b.data);
  });

  it('a chunk upload broken mid-PATCH is taken up again and the blob arrives whole', async () => {
    const b = await fileBlob(tmp, 'broken-chunk', noise(400_000, 'broken-chunk'));
    const cutter = await startCuttingProxy(reg.host, {
      cutRequestAfterBytes: 100_000,
      match: (m) => m === 'PATCH',
      times: 1,
    });
    const c = new RegistryClient();
    try {
      const r = parseReference(`${cutter.host}/push/broken-chunk`);
      await c.pushBlob(r, b.desc, b.open, { chunkSize: 256 << 10 });
      const kinds = cutter.requests.map((q) => `${q.method}${q.fault ? `(${q.fault})` : ''}`);
      // After the break the client asks for the session's status (GET). distribution 2.8
      // refuses a session whose stored size no longer matches its state token, so the client
      // opens a new session (POST) and sends the blob again from 0; a registry that keeps the
      // session answers 204 with its Range and the next PATCH starts there.
      assert.deepEqual(kinds.slice(0, 4), ['HEAD', 'POST', 'PATCH(upload-cut)', 'GET'], kinds.join(' '));
      assert.equal(kinds.at(-1), 'PUT');
      const patches = cutter.requests.filter((q) => q.method === 'PATCH');
      const restartedAt = Number(String(patches[1]!.headers['content-range']).split('-')[0]);
      assert.ok(b.opened.includes(restartedAt), `${b.opened} / ${restartedAt}`);
      assert.deepEqual(await collect(c.fetchBlob(r, b.desc)), b.data);
    } finally {
      c.close();
      await cutter.close();
    }
  });

  it('skips a blob the repository already has (HEAD only)', async () => {
    const b = await fileBlob(tmp, 'again', noise(10_000, 'again'));
    await client.pushBlob(ref('push/again'), b.desc, b.open);
    const mark = proxy.requests.length;
    b.opened.length = 0;
    await client.pushBlob(ref('push/again'), b.desc, b.open);
    assert.deepEqual(sent(mark), [`HEAD /v2/push/again/blobs/${b.desc.digest}`]);
    assert.deepEqual(b.opened, []);
  });

  it('mounts a blob from another repository instead of uploading it', async () => {
    const b = await fileBlob(tmp, 'mount', noise(50_000, 'mount'));
    await client.pushBlob(ref('push/source'), b.desc, b.open);
    const mark = proxy.requests.length;
    b.opened.length = 0;
    await client.pushBlob(ref('push/target'), b.desc, b.open, { mountFrom: 'push/source' });
    const reqs = proxy.requests.slice(mark);
    assert.deepEqual(reqs.map((r) => r.method), ['HEAD', 'POST']);
    const post = new URL(reqs[1]!.url, 'http://x');
    assert.equal(post.searchParams.get('mount'), b.desc.digest);
    assert.equal(post.searchParams.get('from'), 'push/source');
    assert.deepEqual(b.opened, []);
    assert.equal(await client.hasBlob(ref('push/target'), b.desc.digest), true);
  });

  it('falls back to an upload when the mount source lacks the blob', async () => {
    const b = await fileBlob(tmp, 'nomount', noise(5_000, 'nomount'));
    await client.pushBlob(ref('push/target2'), b.desc, b.open, { mountFrom: 'push/nowhere' });
    assert.equal(await client.hasBlob(ref('push/target2'), b.desc.digest), true);
    assert.deepEqual(b.opened, [0]);
  });

  it('bytes that do not match the digest are refused with EINTEGRITY', async () => {
    const b = await fileBlob(tmp, 'liar', Buffer.from('the real bytes\n'));
    const other = Buffer.from('other bytes!!!\n'); // same length, other digest
    await assert.rejects(
      client.pushBlob(ref('push/liar'), b.desc, () => Readable.from([other])),
      (e: unknown) => e instanceof TslayerError && e.code === 'EINTEGRITY' && e.message.includes(b.desc.digest),
    );
    assert.equal(await client.hasBlob(ref('push/liar'), b.desc.digest), false);
  });

  it('a failing or short source is reported as such, not as a registry error', async () => {
    const b = await fileBlob(tmp, 'short', noise(20_000, 'short'));
    const short = () => Readable.from([b.data.subarray(0, 1000)]);
    await assert.rejects(client.pushBlob(ref('push/short'), b.desc, short), (e: unknown) => e instanceof TslayerError && e.code === 'EBADSIZE');
    const broken = () => createReadStream(join(tmp, 'does-not-exist'));
    await assert.rejects(client.pushBlob(ref('push/short'), b.desc, broken), (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT');
    await assert.rejects(
      client.pushBlob(ref('push/short'), b.desc, broken, { chunkSize: 4096 }),
      (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT',
    );
  });

  it('refuses to send a manifest over 4 MiB', async () => {
    const big = Buffer.alloc((4 << 20) + 1, 0x20);
    await assert.rejects(client.putManifest(ref('push/huge:v1'), MediaType.OciManifest, big), (e: unknown) => e instanceof TslayerError && e.code === 'EBADSIZE');
  });

  it('pushes a manifest by tag and an index by digest; skopeo reads them back', async () => {
    const layout = await buildImageLayout(join(tmp, 'img'), [
      { files: { 'etc/a': 'a\n' }, compression: 'gzip' },
      { files: { 'etc/b': 'b\n' }, compression: 'zstd' },
    ]);
    const blobs = [layout.images[0]!.config, ...layout.images[0]!.layers];
    const r = ref('push/image:v1');
    for (const bl of blobs) {
      const path = join(layout.dir, 'blobs', 'sha256', bl.digest.slice(7));
      await client.pushBlob(r, bl as Descriptor, (off) => createReadStream(path, { start: off }), { chunkSize: 100 });
    }
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: layout.images[0]!.config as Descriptor,
      layers: layout.images[0]!.layers.map(({ mediaType, digest, size }) => ({ mediaType, digest: digest as Digest, size })),
    };
    const body = Buffer.from(JSON.stringify(manifest, null, 2));
    const digest = await client.putManifest(r, MediaType.OciManifest, body);
    assert.equal(digest, sha256(body));

    // An independent client sees exactly what we pushed.
    const raw = await skopeoInspect(`${reg.host}/push/image:v1`, { raw: true });
    assert.deepEqual(raw, manifest);
    const info = await skopeoInspect(`${reg.host}/push/image:v1`);
    assert.equal(info.Digest, digest);
    assert.equal(info.Architecture, 'amd64');
    assert.equal(info.Os, 'linux');
    assert.deepEqual(info.Layers, manifest.layers.map((l) => l.digest));

    // An index over it, pushed by digest (no tag).
    const index: Index = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [{ mediaType: MediaType.OciManifest, digest, size: body.length, platform: { os: 'linux', architecture: 'amd64' } }],
    };
    const ibody = Buffer.from(JSON.stringify(index));
    const idigest = sha256(ibody);
    const byDigest = parseReference(`${proxy.host}/push/image@${idigest}`);
    assert.equal(await client.putManifest(byDigest, MediaType.OciIndex, ibody), idigest);
    assert.deepEqual(await skopeoInspect(`${reg.host}/push/image@${idigest}`, { raw: true }), index);
    const back = await client.resolve(byDigest);
    assert.equal(back.descriptor.mediaType, MediaType.OciIndex);
    assert.deepEqual(back.body, ibody);
  });

  it('refuses a manifest whose bytes do not match the digest in the ref', async () => {
    const wrong = parseReference(`${proxy.host}/push/image@${sha256('something else')}`);
    await assert.rejects(
      client.putManifest(wrong, MediaType.OciIndex, Buffer.from('{"schemaVersion":2,"manifests":[]}')),
      (e: unknown) => e instanceof TslayerError && e.code === 'EINTEGRITY' && e.message.includes(sha256('something else')),
    );
  });

  it('a manifest naming blobs the registry lacks is refused (not INTERNAL)', async () => {
    const missing: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: sha256('missing layer'), size: 13 };
    const m: Manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: { ...missing, mediaType: MediaType.OciConfig }, layers: [missing] };
    await assert.rejects(
      client.putManifest(ref('push/broken:v1'), MediaType.OciManifest, Buffer.from(JSON.stringify(m))),
      (e: unknown) => e instanceof TslayerError && e.code !== 'INTERNAL' && /MANIFEST_BLOB_UNKNOWN|BLOB_UNKNOWN/.test(e.message),
    );
  });
});
