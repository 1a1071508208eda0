// `tslayer images` and `tslayer rmi` against a real store root: what they print, and that
// several CLI processes and a library writer can share one root at the same time.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Digest } from '../../src/image/digest.js';
import { MediaType } from '../../src/image/mediatype.js';
import { getImage, putImage, type ImageRecord } from '../../src/metadata/index.js';
import { Store } from '../../src/store.js';
import { spawn } from 'node:child_process';
import { lines, runCli, TSLAYER_BIN } from '../helpers/cli.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const sha = (s: string | Buffer): Digest => `sha256:${createHash('sha256').update(s).digest('hex')}`;

function record(name: string, digest: Digest, size: number, createdAt = new Date().toISOString()): ImageRecord {
  return { name, target: { mediaType: MediaType.OciManifest, digest, size }, createdAt, updatedAt: createdAt };
}

interface JsonImage {
  ref: string;
  digest: string;
  mediaType: string;
  size: number;
  created: string;
}

describe('tslayer images and rmi', () => {
  let root: string;
  let store: Store;
  before(async () => {
    root = await makeTmpDir('cli-images');
    store = await Store.open(root);
  });
  after(async () => {
    await removeTmpDir(root);
  });

  it('--json images on an empty root prints exactly []', async () => {
    const empty = await makeTmpDir('cli-empty');
    try {
      const r = await runCli(['--root', empty, '--json', 'images']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.deepEqual(JSON.parse(r.stdout), []);
    } finally {
      await removeTmpDir(empty);
    }
  });

  it('images on an empty root prints only the header', async () => {
    const r = await runCli(['--root', root, 'images']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout).map((l) => l.split(/\s{3,}/)), [['REF', 'DIGEST', 'SIZE', 'CREATED']]);
  });

  it('size is config + layers when the manifest is stored, else the target size', async () => {
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, digest: sha('c'), size: 1000 },
        layers: [
          { mediaType: MediaType.OciLayerGzip, digest: sha('l1'), size: 2_000_000 },
          { mediaType: MediaType.OciLayerGzip, digest: sha('l2'), size: 500_000 },
        ],
      }),
    );
    const withManifest = sha(manifest);
    await store.content.put(Readable.from([manifest]), { digest: withManifest, size: manifest.length });
    const missing = sha('not stored');
    const hourAgo = new Date(Date.now() - 3600_000).toISOString();
    await store.metadata.transaction(async (tx) => {
      putImage(tx, record('docker.io/library/busybox:latest', withManifest, manifest.length, hourAgo));
      putImage(tx, record('127.0.0.1:5000/team/app:v1', missing, 1234));
    });

    const j = await runCli(['--root', root, '--json', 'images']);
    assert.equal(j.code, 0, j.stderr);
    const list = JSON.parse(j.stdout) as JsonImage[];
    const byRef = new Map(list.map((e) => [e.ref, e]));
    assert.equal(byRef.get('docker.io/library/busybox:latest')?.size, 1000 + 2_000_000 + 500_000);
    assert.equal(byRef.get('docker.io/library/busybox:latest')?.digest, withManifest);
    assert.equal(byRef.get('docker.io/library/busybox:latest')?.created, hourAgo);
    assert.equal(byRef.get('127.0.0.1:5000/team/app:v1')?.size, 1234);

    const h = await runCli(['--root', root, 'images']);
    assert.equal(h.code, 0, h.stderr);
    const rows = lines(h.stdout).slice(1).map((l) => l.split(/\s{3,}/));
    const busybox = rows.find((r) => r[0] === 'busybox:latest');
    assert.deepEqual(busybox, ['busybox:latest', withManifest.slice(0, 'sha256:'.length + 12), '2.50 MB', '1 hour ago']);
    assert.ok(rows.some((r) => r[0] === '127.0.0.1:5000/team/app:v1' && r[2] === '1.23 kB'), h.stdout);

    const full = await runCli(['--root', root, 'images', '--no-trunc']);
    assert.ok(full.stdout.includes(withManifest), full.stdout);
  });

  it('rmi deletes the record named by a short ref, and images no longer lists it', async () => {
    const r = await runCli(['--root', root, 'rmi', 'busybox']);
    assert.equal(r.code, 0, r.stderr);
    // Its manifest is stored and no other image uses it: it goes too (its config and layers never were).
    assert.match(r.stdout, /^Untagged: busybox:latest\nDeleted: 1 blob \(\d+ B\), 0 snapshots\n$/);
    assert.equal(await store.metadata.read((tx) => getImage(tx, 'docker.io/library/busybox:latest')), undefined);
    const j = JSON.parse((await runCli(['--root', root, '--json', 'images'])).stdout) as JsonImage[];
    assert.deepEqual(j.map((e) => e.ref), ['127.0.0.1:5000/team/app:v1']);
  });

  it('--json rmi prints the removed ref and digest, and what it freed, as one JSON document', async () => {
    const r = await runCli(['--root', root, '--json', 'rmi', '127.0.0.1:5000/team/app:v1']);
    assert.equal(r.code, 0, r.stderr);
    // Its documents are not stored: nothing to free (and a warning says so).
    assert.deepEqual(JSON.parse(r.stdout), {
      ref: '127.0.0.1:5000/team/app:v1',
      digest: sha('not stored'),
      pruned: true,
      blobs: [],
      snapshots: [],
      bytes: 0,
      skipped: [],
    });
    assert.match(r.stderr, /^tslayer: rmi: warning: image 127\.0\.0\.1:5000\/team\/app:v1: sha256:\w+ is not in the content store/);
  });

  it('colour: none when piped, forced by FORCE_COLOR, and NO_COLOR wins over a plain pipe', async () => {
    const plain = await runCli(['--root', root, 'images']);
    assert.ok(!plain.stdout.includes('\x1b['));
    const forced = await runCli(['--root', root, 'images'], { env: { FORCE_COLOR: '1' } });
    assert.ok(forced.stdout.includes('\x1b[1m'), JSON.stringify(forced.stdout));
    const off = await runCli(['--root', root, 'images'], { env: { NO_COLOR: '1' } });
    assert.ok(!off.stdout.includes('\x1b['));
  });

  it('6 CLI processes, concurrent rmi and a library writer share one root: all succeed, nothing is lost', async () => {
    const names = Array.from({ length: 3 }, (_, i) => `127.0.0.1:5000/concurrent/rm${i}:latest`);
    await store.metadata.transaction(async (tx) => {
      for (const n of names) putImage(tx, record(n, sha(n), 10));
    });
    // The library writer: one short transaction after another while the CLIs run.
    let stop = false;
    let written = 0;
    const writer = (async () => {
      while (!stop || written < 20) {
        const n = `127.0.0.1:5000/concurrent/w${written}:latest`;
        await store.metadata.transaction(async (tx) => putImage(tx, record(n, sha(n), 10)));
        written++;
      }
    })();
    const runs = [
      ...Array.from({ length: 6 }, () => runCli(['--root', root, '--json', 'images'])),
      ...names.map((n) => runCli(['--root', root, 'rmi', n])),
    ];
    let results;
    try {
      results = await Promise.all(runs);
    } finally {
      stop = true;
      await writer;
    }
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!/LEVEL_LOCKED|locked/i.test(r.stderr), r.stderr);
    }
    for (const r of results.slice(0, 6)) assert.ok(Array.isArray(JSON.parse(r.stdout)));
    const after = JSON.parse((await runCli(['--root', root, '--json', 'images'])).stdout) as JsonImage[];
    const refs = new Set(after.map((e) => e.ref));
    for (const n of names) assert.ok(!refs.has(n), `${n} should be gone`);
    for (let i = 0; i < written; i++) assert.ok(refs.has(`127.0.0.1:5000/concurrent/w${i}:latest`), `write ${i} lost`);
  });

  it('a reader that goes away early (| head -1) ends the output quietly, exit 0', async () => {
    const big = await makeTmpDir('cli-epipe');
    try {
      const s = await Store.open(big);
      await s.metadata.transaction(async (tx) => {
        for (let i = 0; i < 3000; i++) putImage(tx, record(`127.0.0.1:5000/many/image${i}:latest`, sha(String(i)), 1));
      });
      const child = spawn(process.execPath, [TSLAYER_BIN, '--root', big, 'images'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.stdout.once('data', () => child.stdout.destroy());
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      assert.equal(stderr, '');
      assert.equal(code, 0);
    } finally {
      await removeTmpDir(big);
    }
  });
});
