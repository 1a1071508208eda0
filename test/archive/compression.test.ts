// Layer compression: magic-byte detection and streaming through gzip, zstd and none.
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { compressStream, decompressStream, detectCompression, openDecompressed, type Compression } from '../../src/archive/compression.js';
import { seededBytes } from '../helpers/seeded.js';

const data = Buffer.concat([seededBytes('compression', 3 << 20), Buffer.alloc(2 << 20, 0x61)]);
const all: Compression[] = ['gzip', 'zstd', 'none'];

describe('compression', () => {
  it('detects gzip and zstd by their magic bytes, anything else as none', () => {
    assert.equal(detectCompression(Buffer.from([0x1f, 0x8b, 0x08])), 'gzip');
    assert.equal(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00])), 'zstd');
    assert.equal(detectCompression(Buffer.from('ustar')), 'none');
    assert.equal(detectCompression(Buffer.from([0x1f])), 'none');
    assert.equal(detectCompression(Buffer.alloc(0)), 'none');
  });

  for (const c of all) {
    it(`${c}: compresses and decompresses back to the same bytes, and the output is detected as ${c}`, async () => {
      const packed = await buffer(Readable.from([data]).pipe(compressStream(c, { level: 1 })));
      if (c !== 'none') assert.ok(packed.length < data.length);
      assert.equal(detectCompression(packed.subarray(0, 4)), c === 'none' ? detectCompression(data) : c);
      assert.ok((await buffer(Readable.from([packed]).pipe(decompressStream(c)))).equals(data));
    });

    it(`${c}: openDecompressed finds the compression even when the magic bytes arrive split`, async () => {
      const packed = await buffer(Readable.from([data]).pipe(compressStream(c)));
      const src = new PassThrough();
      const opened = openDecompressed(src);
      src.write(packed.subarray(0, 1));
      setTimeout(() => {
        src.write(packed.subarray(1, 3));
        src.end(packed.subarray(3));
      }, 5);
      const { compression, stream } = await opened;
      assert.equal(compression, c);
      assert.ok((await buffer(stream)).equals(data));
    });
  }

  it('openDecompressed passes a stream shorter than any magic through as it is', async () => {
    const { compression, stream } = await openDecompressed(Readable.from([Buffer.from('ab')]));
    assert.equal(compression, 'none');
    assert.equal((await buffer(stream)).toString(), 'ab');
  });

  it('a corrupt gzip stream fails the decompressor', async () => {
    const packed = await buffer(Readable.from([data]).pipe(compressStream('gzip')));
    packed[packed.length >> 1] ^= 0xff;
    await assert.rejects(buffer(Readable.from([packed]).pipe(decompressStream('gzip'))));
  });
});
