// The registry client against a real docker-registry: manifests, indexes, verified and
// resumed blob downloads, and the errors a puller sees.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TslayerError } from '../../src/errors.js';
import type { Descriptor, Index, Manifest } from '../../src/image/descriptor.js';
import type { Digest } from '../../src/image/digest.js';
import { MediaType } from '../../src/image/mediatype.js';
import { parseReference } from '../../src/image/reference.js';
import { RegistryClient } from '../../src/registry/client.js';
import { selectPlatform } from '../../src/registry/platform.js';
import {
  buildImageLayout,
  buildMultiArchLayout,
  collect,
  freePort,
  pushLayout,
  startCuttingProxy,
  startRegistry,
  type BuiltLayout,
  type RunningRegistry,
} from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function isErr(code: string, ...parts: string[]) {
  return (e: unknown) => {
    assert.ok(e instanceof TslayerError, `not a TslayerError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should name ${p}`);
    return true;
  };
}

describe('registry client: pull from a real registry', () => {
  let reg: RunningRegistry;
  let tmp: string;
  let oci: BuiltLayout; // gzip + zstd + uncompressed layers, OCI media types
  let big: BuiltLayout; // one 2 MiB uncompressed layer, for broken downloads
  let multi: BuiltLayout; // index over linux/amd64 and linux/arm64/v8
  let docker: BuiltLayout; // pushed as Docker schema 2
  const client = new RegistryClient({ retries: 2 });
  const ref = (s: string) => parseReference(`${reg.host}/${s}`);
  const blobFile = (l: BuiltLayout, d: string) => join(l.dir, 'blobs', 'sha256', d.slice('sha256:'.length));

  before(async () => {
    reg = await startRegistry();
    tmp = await makeTmpDir('registry-pull');
    oci = await buildImageLayout(join(tmp, 'oci'), [
      { files: { 'etc/hello': 'hello\n', 'bin/tool': Buffer.alloc(5000, 7) }, compression: 'gzip' },
      { files: { 'etc/zstd': 'zstd layer\n' }, compression: 'zstd' },
      { files: { 'etc/plain': 'plain tar\n' }, compression: 'none' },
    ]);
    big = await buildImageLayout(join(tmp, 'big'), [
      { files: { 'data/random': createHash('sha512').update('seed').digest().toString('hex').repeat(16_384) }, compression: 'none' },
    ]);
    multi = await buildMultiArchLayout(join(tmp, 'multi'), [
      { platform: { os: 'linux', architecture: 'amd64' }, layers: [{ files: { arch: 'amd64\n' } }] },
      { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, layers: [{ files: { arch: 'arm64\n' } }] },
    ]);
    docker = await buildImageLayout(join(tmp, 'docker'), [{ files: { 'etc/docker': 'v2s2\n' }, compression: 'gzip' }]);
    await pushLayout(oci.dir, `${reg.host}/test/oci:v1`);
    await pushLayout(big.dir, `${reg.host}/test/big:v1`);
    await pushLayout(multi.dir, `${reg.host}/test/multi:v1`, { all: true });
    await pushLayout(docker.dir, `${reg.host}/test/docker:v1`, { format: 'v2s2' });
  });

  after(async () => {
    client.close();
    await reg?.stop();
    if (tmp) await removeTmpDir(tmp);
  });

  it('resolves an OCI manifest by tag: exact bytes, sha256 digest, media type', async () => {
    const { descriptor, body } = await client.resolve(ref('test/oci:v1'));
    assert.equal(descriptor.mediaType, MediaType.OciManifest);
    assert.equal(descriptor.digest, oci.top.digest);
    assert.equal(descriptor.size, body.length);
    assert.deepEqual(body, await readFile(blobFile(oci, oci.top.digest)));
  });

  it('resolves by digest, and by tag@digest (the digest wins)', async () => {
    const byDigest = await client.resolve(ref(`test/oci@${oci.top.digest}`));
    assert.equal(byDigest.descriptor.digest, oci.top.digest);
    const both = await client.resolve(ref(`test/oci:nonexistent@${oci.top.digest}`));
    assert.equal(both.descriptor.digest, oci.top.digest);
  });

  it('resolves a Docker schema 2 manifest with its own media types', async () => {
    const { descriptor, body } = await client.resolve(ref('test/docker:v1'));
    assert.equal(descriptor.mediaType, MediaType.DockerManifest);
    const m = JSON.parse(body.toString()) as Manifest;
    assert.equal(m.config.mediaType, MediaType.DockerConfig);
    assert.equal(m.layers[0]!.mediaType, MediaType.DockerLayerGzip);
    // Same layer bytes as the OCI layout it was converted from.
    assert.equal(m.layers[0]!.digest, docker.images[0]!.layers[0]!.digest);
    const layer = await collect(client.fetchBlob(ref('test/docker:v1'), m.layers[0]!));
    assert.equal(sha256(layer), m.layers[0]!.digest);
  });

  it('resolves an index and selects a platform manifest, fetched verified by digest', async () => {
    const { descriptor, body } = await client.resolve(ref('test/multi:v1'));
    assert.equal(descriptor.mediaType, MediaType.OciIndex);
    const index = JSON.parse(body.toString()) as Index;
    const arm = selectPlatform(index, 'linux/arm64');
    assert.equal(arm.digest, multi.images[1]!.manifest.digest);
    assert.equal(selectPlatform(index, 'linux/amd64').digest, multi.images[0]!.manifest.digest);
    const got = await client.getManifest(ref('test/multi:v1'), arm.digest);
    assert.equal(got.mediaType, MediaType.OciManifest);
    assert.equal(sha256(got.body), arm.digest);
    assert.throws(() => selectPlatform(index, 'linux/riscv64'), isErr('NOT_FOUND', 'linux/riscv64', 'linux/amd64', 'linux/arm64'));
  });

  it('streams every layer verified: gzip, zstd and uncompressed', async () => {
    const m = JSON.parse((await client.resolve(ref('test/oci:v1'))).body.toString()) as Manifest;
    assert.deepEqual(m.layers.map((l) => l.mediaType), [MediaType.OciLayerGzip, MediaType.OciLayerZstd, MediaType.OciLayer]);
    for (const desc of [m.config, ...m.layers]) {
      let progress = 0;
      const bytes = await collect(client.fetchBlob(ref('test/oci:v1'), desc, { onProgress: (n) => (progress = n) }));
      assert.deepEqual(bytes, await readFile(blobFile(oci, desc.digest)));
      assert.equal(progress, desc.size);
    }
  });

  it('continues a stored partial download from an offset and verifies the whole', async () => {
    const desc = big.images[0]!.layers[0]! as Descriptor;
    const file = blobFile(big, desc.digest);
    const whole = await readFile(file);
    const offset = 777_777;
    const rest = await collect(client.fetchBlob(ref('test/big:v1'), desc, {
      offset,
      prefix: createReadStream(file, { end: offset - 1 }),
    }));
    assert.deepEqual(rest, whole.subarray(offset));

    // A wrong prefix makes the whole fail verification.
    const wrong = client.fetchBlob(ref('test/big:v1'), desc, {
      offset: 10,
      prefix: createReadStream(file, { start: 1, end: 10 }),
    });
    await assert.rejects(collect(wrong), isErr('EINTEGRITY', desc.digest));

    // Without the prefix the whole cannot be verified: refused up front, unless verify is off.
    assert.throws(() => client.fetchBlob(ref('test/big:v1'), desc, { offset }), isErr('INVALID_ARGUMENT', desc.digest));
    const unverified = await collect(client.fetchBlob(ref('test/big:v1'), desc, { offset, verify: false }));
    assert.deepEqual(unverified, whole.subarray(offset));
  });

  it('resumes a download cut mid-blob with a Range request and delivers the right bytes', async () => {
    const proxy = await startCuttingProxy(reg.host, { cutAfterBytes: 300_000 });
    try {
      const desc = big.images[0]!.layers[0]! as Descriptor;
      const r = parseReference(`${proxy.host}/test/big:v1`);
      const bytes = await collect(client.fetchBlob(r, desc));
      assert.equal(bytes.length, desc.size);
      assert.equal(sha256(bytes), desc.digest);
      const gets = proxy.requests.filter((q) => q.method === 'GET' && q.url.includes(`/blobs/${desc.digest}`));
      assert.equal(gets.length, 2, JSON.stringify(gets));
      assert.equal(gets[0]!.cut, true);
      assert.equal(gets[0]!.headers.range, undefined);
      const m = /^bytes=(\d+)-$/.exec(String(gets[1]!.headers.range));
      assert.ok(m, `second request has a Range header: ${gets[1]!.headers.range}`);
      assert.ok(Number(m[1]) > 0 && Number(m[1]) <= 300_000, `resumed at ${m[1]}`);
    } finally {
      await proxy.close();
    }
  });

  it('gives up with UNAVAILABLE when resumed downloads keep breaking without progress', async () => {
    const proxy = await startCuttingProxy(reg.host, { cutAfterBytes: 0, times: 1000 });
    const c = new RegistryClient({ retries: 2 });
    try {
      const desc = big.images[0]!.layers[0]! as Descriptor;
      await assert.rejects(collect(c.fetchBlob(parseReference(`${proxy.host}/test/big:v1`), desc)), isErr('UNAVAILABLE', desc.digest, proxy.host));
      const gets = proxy.requests.filter((q) => q.method === 'GET' && q.url.includes('/blobs/'));
      assert.ok(gets.length >= 3 && gets.length <= 9, `${gets.length} requests`);
    } finally {
      c.close();
      await proxy.close();
    }
  });

  it('retries 5xx answers with backoff, then gives up with UNAVAILABLE', async () => {
    const isManifest = (m: string, u: string) => m === 'GET' && u.includes('/manifests/');
    const flaky = await startCuttingProxy(reg.host, { failWith: 503, times: 2, match: isManifest });
    const c = new RegistryClient({ retries: 2 });
    try {
      const { descriptor } = await c.resolve(parseReference(`${flaky.host}/test/oci:v1`));
      assert.equal(descriptor.digest, oci.top.digest);
      assert.deepEqual(flaky.requests.map((q) => q.fault ?? 'ok'), ['failed', 'failed', 'ok']);
    } finally {
      c.close();
      await flaky.close();
    }
    const down = await startCuttingProxy(reg.host, { failWith: 502, times: 100, match: isManifest });
    const c1 = new RegistryClient({ retries: 1 });
    try {
      await assert.rejects(c1.resolve(parseReference(`${down.host}/test/oci:v1`)), isErr('UNAVAILABLE', down.host, '502'));
      assert.equal(down.requests.length, 2);
    } finally {
      c1.close();
      await down.close();
    }
  });

  it('follows a blob redirect to another host (as to blob storage)', async () => {
    const proxy = await startCuttingProxy(reg.host, { redirect: true });
    try {
      const desc = oci.images[0]!.layers[0]! as Descriptor;
      const bytes = await collect(client.fetchBlob(parseReference(`${proxy.host}/test/oci:v1`), desc));
      assert.equal(sha256(bytes), desc.digest);
      assert.deepEqual(proxy.requests.map((q) => [q.host.split(':')[0], q.fault ?? 'ok']), [['127.0.0.1', 'redirected'], ['localhost', 'ok']]);
    } finally {
      await proxy.close();
    }
  });

  it('a blob corrupted in the registry storage fails with EINTEGRITY naming the digest', async () => {
    const layout = await buildImageLayout(join(tmp, 'corrupt'), [{ files: { victim: Buffer.alloc(64 << 10, 1) }, compression: 'none' }]);
    await pushLayout(layout.dir, `${reg.host}/test/corrupt:v1`);
    const desc = layout.images[0]!.layers[0]! as Descriptor;
    await reg.corruptBlob(desc.digest);
    await assert.rejects(collect(client.fetchBlob(ref('test/corrupt:v1'), desc)), isErr('EINTEGRITY', desc.digest, 'expected', 'got sha256:'));
  });

  it('a descriptor size that does not match the blob fails with EBADSIZE', async () => {
    const desc = oci.images[0]!.layers[0]! as Descriptor;
    await assert.rejects(collect(client.fetchBlob(ref('test/oci:v1'), { ...desc, size: desc.size - 1 })), isErr('EBADSIZE', desc.digest));
    await assert.rejects(collect(client.fetchBlob(ref('test/oci:v1'), { ...desc, size: desc.size + 1 })), isErr('EBADSIZE', desc.digest));
  });

  it('a missing manifest is NOT_FOUND naming the ref; a missing blob is NOT_FOUND naming the digest', async () => {
    await assert.rejects(client.resolve(ref('test/oci:nope')), isErr('NOT_FOUND', `${reg.host}/test/oci:nope`));
    await assert.rejects(client.resolve(ref('test/absent:v1')), isErr('NOT_FOUND', `${reg.host}/test/absent:v1`));
    const missing = `sha256:${'0'.repeat(64)}` as Digest;
    await assert.rejects(client.getManifest(ref('test/oci:v1'), missing), isErr('NOT_FOUND'));
    await assert.rejects(
      collect(client.fetchBlob(ref('test/oci:v1'), { mediaType: MediaType.OciLayer, digest: missing, size: 1 })),
      isErr('NOT_FOUND', missing),
    );
    assert.equal(await client.hasBlob(ref('test/oci:v1'), missing), false);
    assert.equal(await client.hasBlob(ref('test/oci:v1'), oci.images[0]!.config.digest as Digest), true);
  });

  it('a registry nobody listens on is UNAVAILABLE naming it', async () => {
    const port = await freePort();
    const c = new RegistryClient({ retries: 1 });
    const started = Date.now();
    await assert.rejects(c.resolve(parseReference(`127.0.0.1:${port}/x:y`)), isErr('UNAVAILABLE', `127.0.0.1:${port}`, 'connection refused'));
    assert.ok(Date.now() - started < 5000);
    c.close();
  });
});
