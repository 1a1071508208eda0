// `tslayer pull` end to end: the real CLI against a real docker-registry, images pushed
// with skopeo, the result checked by mounting the image's snapshots for real and
// comparing with umoci's unpack of the same image.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chainIds } from '../../src/image/chainid.js';
import type { Digest } from '../../src/image/digest.js';
import { runCli } from '../helpers/cli.js';
import { listSnapshots, treeListing, umociUnpack, withImageMounted } from '../helpers/images.js';
import {
  buildImageLayout,
  buildMultiArchLayout,
  pushLayout,
  skopeo,
  startRegistry,
  type BuiltLayout,
  type LayerSpec,
  type RunningRegistry,
} from '../helpers/registry.js';
import { makeLoopFs } from '../helpers/loop.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const HOST_ARCH = process.arch === 'arm64' ? 'arm64' : 'amd64';

describe('tslayer pull', () => {
  let reg: RunningRegistry;
  let work: string;
  const cleanups: Array<() => Promise<void>> = [];

  /** Builds an OCI layout of `layers` and pushes it as REPO:latest; returns the layout. */
  async function push(repo: string, layers: LayerSpec[]): Promise<BuiltLayout> {
    const dir = await makeTmpDir(`layout-${repo}`);
    cleanups.push(() => removeTmpDir(dir));
    const built = await buildImageLayout(dir, layers);
    await pushLayout(dir, `${reg.host}/${repo}:latest`);
    return built;
  }

  /** A fresh store root. */
  async function newRoot(): Promise<string> {
    const dir = await makeTmpDir('pull-root');
    cleanups.push(() => removeTmpDir(dir));
    return dir;
  }

  /** The digest the registry serves for a ref (what pull must print). */
  async function registryDigest(ref: string): Promise<string> {
    const inspected = JSON.parse(await skopeo(['inspect', '--tls-verify=false', '--no-tags', `docker://${ref}`])) as { Digest: string };
    return inspected.Digest;
  }

  const pull = (root: string, ...args: string[]) => runCli(['--root', root, 'pull', ...args]);

  let single: BuiltLayout;
  let whiteouts: BuiltLayout;
  let zstd: BuiltLayout;
  let plain: BuiltLayout;

  before(async () => {
    reg = await startRegistry();
    work = await makeTmpDir('pull-work');
    single = await push('single', [{ files: { 'hello.txt': 'hello\n', 'etc/os-release': 'ID=test\n' } }]);
    whiteouts = await push('whiteouts', [
      { files: { 'etc/a': 'a0\n', 'etc/b': 'b0\n', 'dir/x': 'x\n', 'dir/y': 'y\n', 'keep/k': 'k\n' } },
      { files: { 'etc/.wh.b': '', 'dir/.wh..wh..opq': '', 'dir/z': 'z\n', 'new/n': 'n\n' } },
      { files: { 'etc/a': 'a2\n', 'keep/k2': 'k2\n' } },
    ]);
    zstd = await push('zstd', [
      { files: { 'z/one': 'one\n' }, compression: 'zstd' },
      { files: { 'z/two': 'two\n' }, compression: 'zstd' },
    ]);
    plain = await push('plain', [{ files: { 'p/file': 'plain\n' }, compression: 'none' }]);
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await removeTmpDir(work).catch(() => {});
    await reg?.stop();
  });

  it('pulls a single-layer image, prints its digest and unpacks it', async () => {
    const root = await newRoot();
    const ref = `${reg.host}/single:latest`;
    const r = await pull(root, ref);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), await registryDigest(ref));
    await withImageMounted(root, ref, async (dir) => {
      assert.equal(await readFile(join(dir, 'hello.txt'), 'utf8'), 'hello\n');
      assert.equal(await readFile(join(dir, 'etc/os-release'), 'utf8'), 'ID=test\n');
    });
    const snaps = await listSnapshots(root);
    assert.deepEqual(snaps.map((s) => [s.name, s.kind]), [[single.images[0]!.layers[0]!.diffId, 'committed']]);
  });

  it('applies whiteouts and opaque directories: the tree equals umoci unpack of the same image', async () => {
    const root = await newRoot();
    const ref = `${reg.host}/whiteouts:latest`;
    const r = await pull(root, ref);
    assert.equal(r.code, 0, r.stderr);
    const umoci = await umociUnpack(whiteouts.dir, whiteouts.tag);
    try {
      await withImageMounted(root, ref, async (dir) => {
        const ours = await treeListing(dir);
        assert.equal(ours.has('etc/b'), false, 'etc/b was whited out');
        assert.equal(ours.has('dir/x'), false, 'dir was made opaque');
        assert.ok(ours.has('dir/z') && ours.has('keep/k') && ours.has('keep/k2'));
        assert.equal(await readFile(join(dir, 'etc/a'), 'utf8'), 'a2\n');
        assert.deepEqual(ours, await treeListing(umoci.rootfs));
      });
    } finally {
      await umoci.dispose();
    }
    // One committed snapshot per layer, chained by chain id.
    const ids = chainIds(whiteouts.images[0]!.layers.map((l) => l.diffId as Digest));
    const snaps = await listSnapshots(root);
    assert.deepEqual(
      snaps.map((s) => [s.name, s.parent]).sort(),
      ids.map((id, i) => [id, ids[i - 1]]).sort(),
    );
  });

  for (const driver of ['native', 'btrfs'] as const) {
    it(`with --driver ${driver} the unpacked tree is the same as umoci's`, async () => {
      // btrfs needs its store on btrfs: a loop filesystem for the test.
      const fs = driver === 'btrfs' ? await makeLoopFs('btrfs', 512 << 20) : undefined;
      try {
        const root = fs ? join(fs.mountpoint, 'root') : await newRoot();
        const ref = `${reg.host}/whiteouts:latest`;
        const r = await runCli(['--root', root, '--driver', driver, 'pull', ref]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal((await listSnapshots(root, driver)).length, 3);
        const umoci = await umociUnpack(whiteouts.dir, whiteouts.tag);
        try {
          await withImageMounted(root, ref, async (dir) => assert.deepEqual(await treeListing(dir), await treeListing(umoci.rootfs)), driver);
        } finally {
          await umoci.dispose();
        }
      } finally {
        await fs?.dispose();
      }
    });
  }

  it('pulls a zstd-compressed image', async () => {
    const root = await newRoot();
    const ref = `${reg.host}/zstd:latest`;
    const r = await pull(root, ref);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(zstd.images[0]!.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    await withImageMounted(root, ref, async (dir) => {
      assert.equal(await readFile(join(dir, 'z/one'), 'utf8'), 'one\n');
      assert.equal(await readFile(join(dir, 'z/two'), 'utf8'), 'two\n');
    });
  });

  it('pulls an image with an uncompressed layer', async () => {
    const root = await newRoot();
    const ref = `${reg.host}/plain:latest`;
    const r = await pull(root, ref);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(plain.images[0]!.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar');
    await withImageMounted(root, ref, async (dir) => {
      assert.equal(await readFile(join(dir, 'p/file'), 'utf8'), 'plain\n');
    });
  });

  it('pulls an image by digest and records it under the digest reference', async () => {
    const root = await newRoot();
    const digest = await registryDigest(`${reg.host}/single:latest`);
    const ref = `${reg.host}/single@${digest}`;
    const r = await runCli(['--root', root, '--json', 'pull', ref]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.name, ref);
    assert.equal(summary.digest, digest);
    assert.equal(summary.layers, 1);
    await withImageMounted(root, ref, async (dir) => {
      assert.equal(await readFile(join(dir, 'hello.txt'), 'utf8'), 'hello\n');
    });
  });

  it('picks the platform from a multi-arch index (--platform, default the host)', async () => {
    const dir = await makeTmpDir('layout-multi');
    cleanups.push(() => removeTmpDir(dir));
    const multi = await buildMultiArchLayout(dir, [
      { platform: { os: 'linux', architecture: 'amd64' }, layers: [{ files: { arch: 'amd64\n' } }] },
      { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, layers: [{ files: { arch: 'arm64\n' } }] },
    ]);
    const ref = `${reg.host}/multi:latest`;
    await pushLayout(dir, ref, { all: true });

    const root = await newRoot();
    const r = await runCli(['--root', root, '--json', 'pull', '--platform', 'linux/arm64', ref]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.digest, multi.top.digest, 'the image digest is the index digest');
    assert.equal(summary.manifest, multi.images[1]!.manifest.digest);
    assert.equal(summary.platform, 'linux/arm64/v8');
    await withImageMounted(root, ref, async (d) => assert.equal(await readFile(join(d, 'arch'), 'utf8'), 'arm64\n'));

    const root2 = await newRoot();
    const r2 = await pull(root2, ref);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(r2.stdout.trim(), multi.top.digest);
    await withImageMounted(root2, ref, async (d) => assert.equal(await readFile(join(d, 'arch'), 'utf8'), `${HOST_ARCH}\n`));

    const r3 = await pull(root2, '--platform', 'linux/s390x', ref);
    assert.equal(r3.code, 1);
    assert.match(r3.stderr, /^tslayer: pull: .*no manifest for platform linux\/s390x.*linux\/amd64.*linux\/arm64/);
  });

  it('pulling the same image twice downloads and unpacks nothing the second time', async () => {
    const root = await newRoot();
    const ref = `${reg.host}/whiteouts:latest`;
    const first = await runCli(['--root', root, '--json', 'pull', ref]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(JSON.parse(first.stdout).unpacked, 3);
    const before = await listSnapshots(root);
    const second = await runCli(['--root', root, '--json', 'pull', ref]);
    assert.equal(second.code, 0, second.stderr);
    const s = JSON.parse(second.stdout);
    assert.equal(s.unpacked, 0);
    assert.equal(s.existing, 3);
    assert.equal(s.bytes, 0);
    assert.deepEqual((await listSnapshots(root)).map((x) => x.name).sort(), before.map((x) => x.name).sort());
  });

  it('two images sharing a base share its snapshots, and rmi of one leaves them to the other', async () => {
    const base: LayerSpec = { files: { 'base/file': 'shared base\n', 'base/big': randomBytes(4096).toString('hex') } };
    const a = await push('share-a', [base, { files: { 'a/only': 'a\n' } }]);
    const b = await push('share-b', [base, { files: { 'b/only': 'b\n' } }]);
    assert.equal(a.images[0]!.layers[0]!.digest, b.images[0]!.layers[0]!.digest);
    const root = await newRoot();
    const ra = await runCli(['--root', root, '--json', 'pull', `${reg.host}/share-a`]);
    assert.equal(ra.code, 0, ra.stderr);
    const rb = await runCli(['--root', root, '--json', 'pull', `${reg.host}/share-b`]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(JSON.parse(rb.stdout).unpacked, 1, 'only the top layer of b is unpacked');

    const baseChain = a.images[0]!.layers[0]!.diffId;
    const snaps = await listSnapshots(root);
    assert.equal(snaps.filter((s) => s.name === baseChain).length, 1);
    assert.equal(snaps.filter((s) => s.parent === baseChain).length, 2);

    const rmi = await runCli(['--root', root, 'rmi', `${reg.host}/share-a`]);
    assert.equal(rmi.code, 0, rmi.stderr);
    assert.ok((await listSnapshots(root)).some((s) => s.name === baseChain));
    await withImageMounted(root, `${reg.host}/share-b`, async (d) => {
      assert.equal(await readFile(join(d, 'base/file'), 'utf8'), 'shared base\n');
      assert.equal(await readFile(join(d, 'b/only'), 'utf8'), 'b\n');
    });
  });

  it('an image with the same layers compressed differently unpacks nothing but stores its own blobs', async () => {
    const files = { 'same/a': 'same content\n', 'same/b': 'more\n' };
    const gz = await push('recompressed-gzip', [{ files, compression: 'gzip' }]);
    const zs = await push('recompressed-zstd', [{ files, compression: 'zstd' }]);
    assert.equal(gz.images[0]!.layers[0]!.diffId, zs.images[0]!.layers[0]!.diffId);
    const root = await newRoot();
    assert.equal((await pull(root, `${reg.host}/recompressed-gzip`)).code, 0);
    const r = await runCli(['--root', root, '--json', 'pull', `${reg.host}/recompressed-zstd`]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.unpacked, 0);
    assert.equal(s.bytes, zs.images[0]!.layers[0]!.size, 'the zstd blob was downloaded for the content store');
    const out = await makeTmpDir('export-recompressed');
    cleanups.push(() => removeTmpDir(out));
    const e = await runCli(['--root', root, 'export', `${reg.host}/recompressed-zstd`, join(out, 'layout'), '--format', 'oci']);
    assert.equal(e.code, 0, e.stderr);
  });

  it('two processes pulling the same image at once both succeed and commit each layer once', async () => {
    const root = await newRoot();
    const ref = `${reg.host}/whiteouts:latest`;
    const [r1, r2] = await Promise.all([pull(root, ref), pull(root, ref)]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(r2.code, 0, r2.stderr);
    const snaps = await listSnapshots(root);
    assert.equal(snaps.length, 3, JSON.stringify(snaps.map((s) => [s.name, s.kind])));
    assert.ok(snaps.every((s) => s.kind === 'committed'));
  });

  it('a Docker schema 2 image pulls, and exports as layouts skopeo reads', async () => {
    const dir = await makeTmpDir('layout-v2s2');
    cleanups.push(() => removeTmpDir(dir));
    await buildImageLayout(dir, [{ files: { 'docker/file': 'v2s2\n' } }, { files: { 'docker/two': '2\n' } }]);
    const ref = `${reg.host}/v2s2:latest`;
    await pushLayout(dir, ref, { format: 'v2s2' });
    const root = await newRoot();
    const r = await pull(root, ref);
    assert.equal(r.code, 0, r.stderr);
    const raw = JSON.parse(await skopeo(['inspect', '--tls-verify=false', '--raw', `docker://${ref}`]));
    assert.equal(raw.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    await withImageMounted(root, ref, async (d) => assert.equal(await readFile(join(d, 'docker/file'), 'utf8'), 'v2s2\n'));
    const out = await makeTmpDir('export-v2s2');
    cleanups.push(() => removeTmpDir(out));
    for (const [format, transport, path] of [
      ['oci', 'oci', join(out, 'layout')],
      ['docker-archive', 'docker-archive', join(out, 'img.tar')],
      ['oci-archive', 'oci-archive', join(out, 'oci.tar')],
    ] as const) {
      const e = await runCli(['--root', root, 'export', ref, path, '--format', format]);
      assert.equal(e.code, 0, e.stderr);
      const inspected = JSON.parse(await skopeo(['inspect', `${transport}:${path}`]));
      assert.equal(inspected.Layers.length, 2, format);
    }
  });

  it('a missing tag is exit 1 naming the reference', async () => {
    const root = await newRoot();
    const r = await pull(root, `${reg.host}/single:nope`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tslayer: pull: .*single:nope.*not found/);
  });
});
