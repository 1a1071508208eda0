// `tslayer fsck`: corrupt blobs, images with missing blobs and snapshots without storage
// are reported (exit 1, one stderr line), --repair deletes corrupt blobs, a sound store
// passes (exit 0).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Digest } from '../../src/image/digest.js';
import { MediaType } from '../../src/image/mediatype.js';
import { putImage } from '../../src/metadata/index.js';
import { openSnapshotter } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { lines, runCli } from '../helpers/cli.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function putBlob(store: Store, bytes: Buffer): Promise<Digest> {
  const digest = sha(bytes);
  await store.content.put(Readable.from([bytes]), { digest, size: bytes.length });
  return digest;
}

async function putImageWith(store: Store, name: string, layers: Buffer[], storeLayers: boolean[]): Promise<Digest[]> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: name }));
  const configDigest = await putBlob(store, config);
  const layerDigests: Digest[] = [];
  for (const [i, l] of layers.entries()) layerDigests.push(storeLayers[i] ? await putBlob(store, l) : sha(l));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: configDigest, size: config.length },
      layers: layers.map((l, i) => ({ mediaType: MediaType.OciLayer, digest: layerDigests[i], size: l.length })),
    }),
  );
  const manifestDigest = await putBlob(store, manifest);
  const now = new Date().toISOString();
  await store.metadata.transaction(async (tx) =>
    putImage(tx, { name, target: { mediaType: MediaType.OciManifest, digest: manifestDigest, size: manifest.length }, createdAt: now, updatedAt: now }),
  );
  return layerDigests;
}

describe('tslayer fsck', () => {
  let root: string;
  let store: Store;
  let corrupt: Digest;
  let missingLayer: Digest;
  before(async () => {
    root = await makeTmpDir('cli-fsck');
    store = await Store.open(root);
    await putImageWith(store, 'docker.io/library/good:1', [Buffer.from('layer one'), Buffer.from('layer two')], [true, true]);
    [, missingLayer] = await putImageWith(store, 'docker.io/library/broken:1', [Buffer.from('layer one'), Buffer.from('never stored')], [true, false]);
    // A blob whose bytes no longer match its name (same size, so only the hash tells).
    corrupt = await putBlob(store, Buffer.from('precious bytes'));
    const path = store.content.blobPath(corrupt);
    await chmod(path, 0o644);
    await writeFile(path, 'PRECIOUS BYTES');
  });
  after(async () => {
    await removeTmpDir(root);
  });

  it('reports a corrupt blob and an image missing a layer, exit 1 with one stderr line', async () => {
    const r = await runCli(['--root', root, 'fsck']);
    assert.equal(r.code, 1);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /^tslayer: fsck: 2 problems in store .*--repair/);
    assert.ok(lines(r.stdout).some((l) => l.startsWith('corrupt-blob: ') && l.includes(corrupt)), r.stdout);
    assert.ok(lines(r.stdout).some((l) => l.startsWith('missing-blob: ') && l.includes('broken:1') && l.includes(missingLayer)), r.stdout);
    assert.match(r.stdout, /checked 7 blobs .*2 images, 0 snapshots: 2 problems/);
  });

  it('--json prints the report as one document', async () => {
    const r = await runCli(['--root', root, '--json', 'fsck']);
    assert.equal(r.code, 1);
    const report = JSON.parse(r.stdout) as { blobs: number; images: number; problems: Array<{ kind: string; subject: string; repaired: boolean }> };
    assert.equal(report.blobs, 7);
    assert.deepEqual(
      report.problems.map((p) => [p.kind, p.subject, p.repaired]).sort(),
      [['corrupt-blob', corrupt, false], ['missing-blob', 'docker.io/library/broken:1', false]],
    );
  });

  it('--repair deletes the corrupt blob; the missing layer still fails; without the broken image fsck passes', async () => {
    const r = await runCli(['--root', root, 'fsck', '--repair']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^repaired: .*sha256:/m);
    assert.equal(await store.content.has(corrupt), false);
    assert.match(lines(r.stderr)[0]!, /^tslayer: fsck: 1 problem in store /);

    assert.equal((await runCli(['--root', root, 'rmi', 'broken:1'])).code, 0); // and its own manifest and config
    const ok = await runCli(['--root', root, 'fsck']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr, '');
    assert.match(ok.stdout, /checked 4 blobs .*1 images, 0 snapshots: 0 problems/);
  });

  it('reports a recorded snapshot whose storage is gone', async () => {
    const sn = await openSnapshotter(store, 'native');
    try {
      await sn.prepare('work');
      let id = '';
      await store.metadata.read(async (tx) => {
        for (const [k, v] of await tx.list<string>('snapshots/native/')) if (/\/ids\//.test(k) && v === 'work') id = k.split('/').pop()!;
      });
      assert.ok(id, 'snapshot id recorded');
      await rm(join(store.snapshotsDir('native'), id), { recursive: true });
      const r = await runCli(['--root', root, 'fsck']);
      assert.equal(r.code, 1);
      assert.ok(r.stdout.includes(`missing-snapshot-storage: snapshot native/${id} is recorded but`), r.stdout);
    } finally {
      await sn.remove('work').catch(() => undefined);
      await sn.close();
    }
    const ok = await runCli(['--root', root, 'fsck']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  });
});
