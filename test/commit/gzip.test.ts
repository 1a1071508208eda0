// The parallel gzip of layer blobs: a valid gzip stream for every reader, the same bytes
// for the same input, and the per-block choice of how hard to compress.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { constants as zc, gunzipSync } from 'node:zlib';
import { blockPlan, parallelGzip } from '../../src/archive/parallel-gzip.js';
import { seededBytes } from '../helpers/seeded.js';
import { withTmpDir } from '../helpers/tmp.js';

/** Text-like, compressible bytes. */
function text(size: number): Buffer {
  const words = ['layer', 'snapshot', 'overlay', 'digest', 'commit', 'tar', 'whiteout', '\n'];
  const out = Buffer.alloc(size);
  for (let i = 0, w = 0; i < size; w++) {
    i += out.write(`${words[(w * 7919) % words.length]} `, i);
  }
  return out;
}

async function gz(data: Buffer, opts: Parameters<typeof parallelGzip>[0] = {}): Promise<Buffer> {
  // Fed in odd-sized chunks, as a tar stream arrives.
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += 300_007) chunks.push(data.subarray(i, i + 300_007));
  return buffer(Readable.from(chunks).pipe(parallelGzip(opts)));
}

test('multi-member output decompresses to the input with zlib and GNU gzip', async () => {
  const data = Buffer.concat([text(3 << 20), seededBytes('gz', 2 << 20), Buffer.alloc(1 << 20)]);
  const out = await gz(data);
  assert.ok(gunzipSync(out).equals(data));
  await withTmpDir('gzip', async (dir) => {
    await writeFile(join(dir, 'x.gz'), out);
    assert.ok(execFileSync('gzip', ['-dc', join(dir, 'x.gz')], { maxBuffer: 64 << 20 }).equals(data));
  });
  assert.ok(out.length < data.length * 0.6, 'text and zeros compress');
});

test('the same input gives the same bytes, whatever the number of workers', async () => {
  const data = Buffer.concat([text(2 << 20), seededBytes('det', 1 << 20)]);
  const a = await gz(data, { concurrency: 1 });
  const b = await gz(data, { concurrency: 3 });
  assert.ok(a.equals(b));
});

test('empty and tiny inputs are valid gzip', async () => {
  assert.equal(gunzipSync(await gz(Buffer.alloc(0))).length, 0);
  assert.equal(gunzipSync(await gz(Buffer.from('tiny'))).toString(), 'tiny');
});

test('incompressible blocks are stored, padded ones run-length coded, text fully deflated', () => {
  assert.equal(blockPlan(seededBytes('r', 1 << 20), 6).level, 0);
  // Random file bodies with zero padding between them, as small files in a tar.
  const padded = Buffer.alloc(1 << 20);
  for (let off = 0; off < padded.length; off += 3072) seededBytes(`p${off}`, 2600).copy(padded, off);
  assert.deepEqual(blockPlan(padded, 6), { level: 6, strategy: zc.Z_RLE });
  assert.deepEqual(blockPlan(text(1 << 20), 6), { level: 6, strategy: zc.Z_DEFAULT_STRATEGY });
});
