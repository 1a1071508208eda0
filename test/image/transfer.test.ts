// `tslayer import` and `tslayer export` against the real peer: skopeo writes the
// archives tslayer imports (oci layout, oci-archive, docker-archive), and skopeo and
// umoci read what tslayer exports. Trees are compared with umoci's unpack of the source.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { runCli } from '../helpers/cli.js';
import { listSnapshots, treeListing, umociUnpack, withImageMounted } from '../helpers/images.js';
import { buildImageLayout, buildMultiArchLayout, skopeo, type BuiltLayout } from '../helpers/registry.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const execFileP = promisify(execFile);

describe('tslayer import / export', () => {
  let work: string;
  let src: BuiltLayout;
  let expected: Map<string, string>;
  let n = 0;
  const fresh = async (label: string) => {
    const d = join(work, `${label}-${n++}`);
    await mkdir(d);
    return d;
  };
  const cli = (root: string, ...args: string[]) => runCli(['--root', root, ...args]);

  before(async () => {
    work = await makeTmpDir('transfer');
    src = await buildImageLayout(join(work, 'src'), [
      { files: { 'etc/a': 'a\n', 'etc/b': 'b\n', 'usr/bin/tool': 'tool v1\n' } },
      // (umoci, the reference here, cannot read zstd layers: pull tests cover zstd)
      { files: { 'etc/.wh.b': '', 'usr/bin/tool': 'tool v2\n', 'data/x': 'x'.repeat(100_000) } },
      { files: { 'data/y': 'y\n' }, compression: 'none' },
    ]);
    const u = await umociUnpack(src.dir, src.tag);
    try {
      expected = await treeListing(u.rootfs);
    } finally {
      await u.dispose();
    }
  });

  after(async () => {
    await removeTmpDir(work);
  });

  async function assertImageTree(root: string, ref: string): Promise<void> {
    await withImageMounted(root, ref, async (dir) => assert.deepEqual(await treeListing(dir), expected));
  }

  it('imports an OCI layout written by skopeo (named by REF)', async () => {
    const dir = join(await fresh('skopeo-oci'), 'layout');
    await skopeo(['copy', '--quiet', `oci:${src.dir}:${src.tag}`, `oci:${dir}:v1`]);
    const root = await fresh('root');
    const r = await cli(root, 'import', dir, 'example.com/imported/oci:v1');
    assert.equal(r.code, 0, r.stderr);
    const written = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.equal(r.stdout.trim(), written.manifests[0]!.digest, 'prints the digest of the imported manifest');
    await assertImageTree(root, 'example.com/imported/oci:v1');
  });

  it('imports an oci-archive written by skopeo', async () => {
    const file = join(await fresh('skopeo-oci-archive'), 'image.tar');
    await skopeo(['copy', '--quiet', `oci:${src.dir}:${src.tag}`, `oci-archive:${file}:v1`]);
    const root = await fresh('root');
    const r = await runCli(['--root', root, '--json', 'import', file, 'example.com/imported/ociarchive:v1']);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.format, 'oci-archive');
    assert.equal(result.images[0].layers, 3);
    await assertImageTree(root, 'example.com/imported/ociarchive:v1');
  });

  it('imports a docker-archive written by skopeo, named by its RepoTags', async () => {
    const file = join(await fresh('skopeo-docker-archive'), 'image.tar');
    await skopeo(['copy', '--quiet', `oci:${src.dir}:${src.tag}`, `docker-archive:${file}:example.com/from/docker:v2`]);
    const root = await fresh('root');
    const r = await runCli(['--root', root, '--json', 'import', file]);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.format, 'docker-archive');
    assert.deepEqual(result.images[0].names, ['example.com/from/docker:v2']);
    await assertImageTree(root, 'example.com/from/docker:v2');
    // The uncompressed layers of a docker-archive have the same diff ids: same snapshots.
    const root2 = await fresh('root');
    assert.equal((await cli(root2, 'import', src.dir, 'x/y:z')).code, 0);
    assert.deepEqual(
      (await listSnapshots(root)).map((s) => s.name).sort(),
      (await listSnapshots(root2)).map((s) => s.name).sort(),
    );
  });

  it('imports a gzip-compressed docker-archive (docker save | gzip)', async () => {
    const d = await fresh('gz');
    const file = join(d, 'image.tar');
    await skopeo(['copy', '--quiet', `oci:${src.dir}:${src.tag}`, `docker-archive:${file}:example.com/gz/img:1`]);
    await pipeline(createReadStream(file), createGzip(), createWriteStream(`${file}.gz`));
    const root = await fresh('root');
    const r = await cli(root, 'import', `${file}.gz`);
    assert.equal(r.code, 0, r.stderr);
    await assertImageTree(root, 'example.com/gz/img:1');
  });

  it('imports a legacy docker save archive (<id>/layer.tar, repeated layers as symlinks)', async () => {
    // As docker < 25 writes it: per-layer directories, the second use of a layer a symlink.
    const d = await fresh('legacy');
    const file = join(d, 'legacy.tar');
    const root = await fresh('root');
    // Unpack the layers ourselves from skopeo's uncompressed docker-archive.
    const dockerFile = join(d, 'skopeo.tar');
    await skopeo(['copy', '--quiet', `oci:${src.dir}:${src.tag}`, `docker-archive:${dockerFile}:legacy/img:1`]);
    const files = await readTar(dockerFile);
    const manifest = JSON.parse(files.get('manifest.json')!.toString('utf8'))[0] as { Config: string; Layers: string[] };
    const pack = tar.pack();
    const out = pipeline(pack, createWriteStream(file));
    const add = (name: string, data: Buffer) => new Promise<void>((res, rej) => pack.entry({ name }, data, (e) => (e ? rej(e) : res())));
    const layerPaths: string[] = [];
    const symlink = (name: string, linkname: string) =>
      new Promise<void>((res, rej) => pack.entry({ name, type: 'symlink', linkname }, (e) => (e ? rej(e) : res())));
    for (const [i, l] of manifest.Layers.entries()) {
      const id = `${i}`.padStart(64, 'f');
      await add(`${id}/VERSION`, Buffer.from('1.0'));
      await add(`${id}/json`, Buffer.from('{}'));
      if (i === 0) {
        // The layer's bytes live in another layer directory; this one links to them.
        const other = 'e'.repeat(64);
        await add(`${other}/layer.tar`, files.get(l)!);
        await symlink(`${id}/layer.tar`, `../${other}/layer.tar`);
      } else {
        await add(`${id}/layer.tar`, files.get(l)!);
      }
      layerPaths.push(`${id}/layer.tar`);
    }
    await add(manifest.Config, files.get(manifest.Config)!);
    await add('manifest.json', Buffer.from(JSON.stringify([{ Config: manifest.Config, RepoTags: ['legacy/img:1'], Layers: layerPaths }])));
    await add('repositories', Buffer.from(JSON.stringify({ 'legacy/img': { '1': layerPaths.length } })));
    pack.finalize();
    await out;
    const r = await cli(root, 'import', file);
    assert.equal(r.code, 0, r.stderr);
    await assertImageTree(root, 'docker.io/legacy/img:1');
  });

  it('imports a docker save archive of docker 25+ (blobs/sha256/..., with oci-layout and index.json)', async () => {
    const d = await fresh('docker25');
    const skopeoFile = join(d, 'skopeo.tar');
    await skopeo(['copy', '--quiet', `oci:${src.dir}:${src.tag}`, `docker-archive:${skopeoFile}:new/docker:25`]);
    const files = await readTar(skopeoFile);
    const old = JSON.parse(files.get('manifest.json')!.toString('utf8'))[0] as { Config: string; Layers: string[] };
    const blob = (b: Buffer) => `blobs/sha256/${createHash('sha256').update(b).digest('hex')}`;
    const file = join(d, 'docker25.tar');
    const pack = tar.pack();
    const out = pipeline(pack, createWriteStream(file));
    const add = (name: string, data: Buffer) => new Promise<void>((res, rej) => pack.entry({ name }, data, (e) => (e ? rej(e) : res())));
    const layers: string[] = [];
    const descs: Array<{ mediaType: string; digest: string; size: number }> = [];
    for (const l of old.Layers) {
      const b = files.get(l)!;
      layers.push(blob(b));
      descs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${blob(b).slice(13)}`, size: b.length });
      await add(blob(b), b);
    }
    const config = files.get(old.Config)!;
    await add(blob(config), config);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${blob(config).slice(13)}`, size: config.length },
      layers: descs,
    }));
    await add(blob(manifest), manifest);
    await add('index.json', Buffer.from(JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${blob(manifest).slice(13)}`, size: manifest.length,
        annotations: { 'io.containerd.image.name': 'docker.io/new/docker:25', 'org.opencontainers.image.ref.name': '25' },
      }],
    })));
    await add('manifest.json', Buffer.from(JSON.stringify([{ Config: blob(config), RepoTags: ['new/docker:25'], Layers: layers }])));
    await add('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    await add('repositories', Buffer.from(JSON.stringify({ 'new/docker': { '25': layers.length } })));
    pack.finalize();
    await out;
    const root = await fresh('root');
    const r = await cli(root, 'import', file);
    assert.equal(r.code, 0, r.stderr);
    await assertImageTree(root, 'new/docker:25');
  });

  describe('export', () => {
    let root: string;
    const ref = 'example.com/exported/img:v3';
    before(async () => {
      root = await fresh('export-root');
      const r = await cli(root, 'import', src.dir, ref);
      assert.equal(r.code, 0, r.stderr);
    });

    it('--format oci writes a layout skopeo inspects and umoci unpacks to the same tree', async () => {
      const dir = join(await fresh('exp-oci'), 'layout');
      const r = await cli(root, 'export', ref, dir, '--format', 'oci');
      assert.equal(r.code, 0, r.stderr);
      const inspected = JSON.parse(await skopeo(['inspect', `oci:${dir}:v3`]));
      assert.equal(inspected.Layers.length, 3);
      assert.deepEqual(inspected.Layers, src.images[0]!.layers.map((l) => l.digest));
      const u = await umociUnpack(dir, 'v3');
      try {
        assert.deepEqual(await treeListing(u.rootfs), expected);
      } finally {
        await u.dispose();
      }
    });

    it('--format oci-archive writes a tar skopeo inspects', async () => {
      const file = join(await fresh('exp-oci-archive'), 'img.tar');
      const r = await cli(root, 'export', ref, file, '--format', 'oci-archive');
      assert.equal(r.code, 0, r.stderr);
      const inspected = JSON.parse(await skopeo(['inspect', `oci-archive:${file}`]));
      assert.deepEqual(inspected.Layers, src.images[0]!.layers.map((l) => l.digest));
    });

    it('--format docker-archive writes what skopeo reads, with uncompressed layers and RepoTags', async () => {
      const file = join(await fresh('exp-docker'), 'img.tar');
      const r = await cli(root, 'export', ref, file, '--format', 'docker-archive');
      assert.equal(r.code, 0, r.stderr);
      const inspected = JSON.parse(await skopeo(['inspect', `docker-archive:${file}`]));
      assert.equal(inspected.Layers.length, 3);
      const files = await readTar(file);
      const manifest = JSON.parse(files.get('manifest.json')!.toString('utf8'));
      assert.deepEqual(manifest[0].RepoTags, ['example.com/exported/img:v3']);
      assert.deepEqual(
        manifest[0].Layers,
        src.images[0]!.layers.map((l) => `${l.diffId.slice(7)}.tar`),
      );
      // skopeo can copy it on, and the result unpacks to the same tree.
      const back = join(await fresh('exp-docker-back'), 'layout');
      await skopeo(['copy', '--quiet', `docker-archive:${file}`, `oci:${back}:back`]);
      const u = await umociUnpack(back, 'back');
      try {
        assert.deepEqual(await treeListing(u.rootfs), expected);
      } finally {
        await u.dispose();
      }
    });

    it('a .tar PATH without --format is a docker-archive; export → import round-trips', async () => {
      const file = join(await fresh('exp-default'), 'img.tar');
      const r = await runCli(['--root', root, '--json', 'export', ref, file]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).format, 'docker-archive');
      const root2 = await fresh('root');
      const imp = await cli(root2, 'import', file);
      assert.equal(imp.code, 0, imp.stderr);
      await assertImageTree(root2, ref);
    });

    it('exporting an image that is not in the store is exit 1 with a hint to pull', async () => {
      const r = await cli(root, 'export', 'example.com/not/there:1', join(work, 'nothing'));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^tslayer: export: image example.com\/not\/there:1 not found .*tslayer pull/);
    });
  });

  it('imports the chosen platform of a multi-platform layout (--platform)', async () => {
    const d = join(await fresh('multi'), 'layout');
    await buildMultiArchLayout(d, [
      { platform: { os: 'linux', architecture: 'amd64' }, layers: [{ files: { arch: 'amd64\n' } }] },
      { platform: { os: 'linux', architecture: 'arm64' }, layers: [{ files: { arch: 'arm64\n' } }] },
    ]);
    const root = await fresh('root');
    const r = await cli(root, 'import', '--platform', 'linux/arm64', d, 'multi/img:1');
    assert.equal(r.code, 0, r.stderr);
    await withImageMounted(root, 'multi/img:1', async (dir) => assert.equal(await readFile(join(dir, 'arch'), 'utf8'), 'arm64\n'));
  });

  it('an OCI layout missing a layer blob is exit 1 naming it, and no image is recorded', async () => {
    const d = join(await fresh('broken'), 'layout');
    const broken = await buildImageLayout(d, [{ files: { f: 'f\n' } }, { files: { g: 'g\n' } }]);
    const missing = broken.images[0]!.layers[1]!.digest;
    await execFileP('rm', [join(d, 'blobs', 'sha256', missing.slice(7))]);
    const root = await fresh('root');
    const r = await cli(root, 'import', d, 'broken/img:1');
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(missing), r.stderr);
    const images = await runCli(['--root', root, '--json', 'images']);
    assert.deepEqual(JSON.parse(images.stdout), []);
  });

  it('a file that is no image archive is exit 1', async () => {
    const f = join(await fresh('junk'), 'junk.tar');
    await writeFile(f, 'this is not a tar at all\n'.repeat(100));
    const root = await fresh('root');
    const r = await cli(root, 'import', f, 'junk/img:1');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tslayer: import: /);
  });

  it('a layout whose image has only a tag for a name needs REF', async () => {
    const root = await fresh('root');
    const r = await cli(root, 'import', src.dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no full name .*tslayer import/);
  });
});

/** Every regular file of a (small, test) tar, by name. */
async function readTar(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const ex = tar.extract();
  const feeding = pipeline(createReadStream(file), ex);
  for await (const e of ex) {
    const chunks: Buffer[] = [];
    for await (const c of e) chunks.push(c as Buffer);
    if (e.header.type === 'file') out.set(e.header.name.replace(/^\.\//, ''), Buffer.concat(chunks));
  }
  await feeding;
  return out;
}
