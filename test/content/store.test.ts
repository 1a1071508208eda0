// ContentStore basics on a real filesystem: put, read (ranges), stat, walk, delete,
// verify, and the integrity errors (which must leave nothing behind).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ContentStore } from '../../src/content/index.js';
import { TslayerError } from '../../src/errors.js';
import type { Digest } from '../../src/image/digest.js';
import { seededBytes, seededStream } from '../helpers/seeded.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const sha256 = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const sha512 = (b: Buffer): Digest => `sha512:${createHash('sha512').update(b).digest('hex')}`;

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function isCode(code: string, ...inMessage: string[]) {
  return (e: unknown) => {
    assert.ok(e instanceof TslayerError, `expected a TslayerError, got ${String(e)}`);
    assert.equal(e.code, code);
    for (const s of inMessage) assert.ok(e.message.includes(s), `"${e.message}" should name ${s}`);
    return true;
  };
}

describe('content store', () => {
  let tmp: string;
  let n = 0;
  /** A fresh, empty store per test. */
  const fresh = () => new ContentStore(join(tmp, `s${n++}`, 'content'));
  const entries = async (s: ContentStore, sub: string) => readdir(join(s.dir, sub)).catch(() => []);

  before(async () => {
    tmp = await makeTmpDir('content-store');
  });
  after(async () => {
    await removeTmpDir(tmp);
  });

  it('put stores a blob at blobs/sha256/<hex> and reads it back byte for byte', async () => {
    const s = fresh();
    const data = seededBytes('a', 3 * 1024 * 1024 + 17);
    const digest = sha256(data);
    const info = await s.put(seededStream('a', data.length, 100_000), { digest, size: data.length });
    assert.deepEqual(info, { digest, size: data.length });
    assert.equal(s.blobPath(digest), join(s.dir, 'blobs', 'sha256', digest.slice(7)));
    assert.equal(await s.has(digest), true);
    assert.deepEqual(await s.stat(digest), { digest, size: data.length });
    assert.ok((await readAll(s.createReadStream(digest))).equals(data));
    assert.deepEqual(await entries(s, 'ingest'), []);
  });

  it('range reads return bytes start..end inclusive, like fs', async () => {
    const s = fresh();
    const data = seededBytes('range', 5000);
    const digest = sha256(data);
    await s.put(Readable.from([data]), { digest });
    assert.ok((await readAll(s.createReadStream(digest, { start: 100, end: 199 }))).equals(data.subarray(100, 200)));
    assert.ok((await readAll(s.createReadStream(digest, { start: 4000 }))).equals(data.subarray(4000)));
    assert.ok((await readAll(s.createReadStream(digest, { end: 0 }))).equals(data.subarray(0, 1)));
    assert.ok((await readAll(s.createReadStream(digest, { start: 4990, end: 9999 }))).equals(data.subarray(4990)));
    assert.equal((await readAll(s.createReadStream(digest, { start: 6000 }))).length, 0);
    assert.throws(() => s.createReadStream(digest, { start: 10, end: 5 }), isCode('INVALID_ARGUMENT'));
    assert.throws(() => s.createReadStream(digest, { start: -1 }), isCode('INVALID_ARGUMENT'));
  });

  it('put of a blob already stored drains the source and returns the existing blob', async () => {
    const s = fresh();
    const data = seededBytes('twice', 70_000);
    const digest = sha256(data);
    await s.put(Readable.from([data]), { digest });
    const again = seededStream('twice', data.length, 1000);
    assert.deepEqual(await s.put(again, { digest, size: data.length }), { digest, size: data.length });
    assert.equal(again.readableEnded, true);
    assert.deepEqual(await entries(s, 'blobs/sha256'), [digest.slice(7)]);
  });

  it('concurrent puts of one digest in one process leave one blob and all return it', async () => {
    const s = fresh();
    const size = 2 * 1024 * 1024;
    const digest = sha256(seededBytes('same', size));
    const results = await Promise.all(
      Array.from({ length: 6 }, () => s.put(seededStream('same', size, 50_000), { digest, size })),
    );
    for (const r of results) assert.deepEqual(r, { digest, size });
    assert.deepEqual(await entries(s, 'blobs/sha256'), [digest.slice(7)]);
    assert.deepEqual(await entries(s, 'ingest'), []);
    await s.verify(digest);
  });

  it('put with the wrong digest fails EINTEGRITY naming both digests and leaves nothing in blobs/ or ingest/', async () => {
    const s = fresh();
    const data = seededBytes('bad', 10_000);
    const wrong = sha256(Buffer.from('something else'));
    await assert.rejects(s.put(Readable.from([data]), { digest: wrong }), isCode('EINTEGRITY', wrong, sha256(data)));
    assert.deepEqual(await entries(s, 'blobs/sha256'), []);
    assert.deepEqual(await entries(s, 'ingest'), []);
    assert.equal(await s.has(wrong), false);
  });

  it('put with a declared size larger than the stream fails EBADSIZE and leaves nothing', async () => {
    const s = fresh();
    const data = seededBytes('short', 1000);
    await assert.rejects(
      s.put(Readable.from([data]), { digest: sha256(data), size: 1001 }),
      isCode('EBADSIZE', 'expected size 1001', 'got 1000'),
    );
    assert.deepEqual(await entries(s, 'blobs/sha256'), []);
    assert.deepEqual(await entries(s, 'ingest'), []);
  });

  it('put with a declared size smaller than the stream fails EBADSIZE as soon as it is exceeded', async () => {
    const s = fresh();
    const size = 8 * 1024 * 1024;
    const src = seededStream('long', size, 64 * 1024);
    const data = seededBytes('long', size);
    await assert.rejects(s.put(src, { digest: sha256(data), size: 1024 * 1024 }), isCode('EBADSIZE', 'expected size 1048576'));
    assert.equal(src.readableEnded, false, 'the rest of the stream was not read');
    assert.deepEqual(await entries(s, 'blobs/sha256'), []);
    assert.deepEqual(await entries(s, 'ingest'), []);
  });

  it('a failing source leaves nothing behind and passes its error on', async () => {
    const s = fresh();
    const src = new Readable({
      read() {
        this.push(Buffer.alloc(1000));
        this.destroy(new Error('network reset'));
      },
    });
    await assert.rejects(s.put(src, { digest: sha256(Buffer.alloc(1)) }), /network reset/);
    assert.deepEqual(await entries(s, 'ingest'), []);
    assert.deepEqual(await entries(s, 'blobs/sha256'), []);
  });

  it('putUnknown computes the sha256 digest while writing', async () => {
    const s = fresh();
    const data = seededBytes('unknown', 123_456);
    const info = await s.putUnknown(seededStream('unknown', data.length, 4096));
    assert.deepEqual(info, { digest: sha256(data), size: data.length });
    assert.ok((await readAll(s.createReadStream(info.digest))).equals(data));
    assert.deepEqual(await entries(s, 'ingest'), []);
    // The same content again: still one blob.
    assert.deepEqual(await s.putUnknown(Readable.from([data])), info);
    assert.deepEqual(await entries(s, 'blobs/sha256'), [info.digest.slice(7)]);
  });

  it('an empty blob is a valid blob', async () => {
    const s = fresh();
    const digest = sha256(Buffer.alloc(0));
    assert.deepEqual(await s.put(Readable.from([]), { digest, size: 0 }), { digest, size: 0 });
    assert.equal((await readAll(s.createReadStream(digest))).length, 0);
    await s.verify(digest);
  });

  it('sha512 digests are stored under blobs/sha512', async () => {
    const s = fresh();
    const data = seededBytes('512', 4321);
    const digest = sha512(data);
    await s.put(Readable.from([data]), { digest, size: data.length });
    assert.equal(s.blobPath(digest), join(s.dir, 'blobs', 'sha512', digest.slice(7)));
    await s.verify(digest);
    assert.deepEqual(
      (await collect(s.walk())).map((b) => b.digest),
      [digest],
    );
  });

  it('walk lists every blob with its size', async () => {
    const s = fresh();
    await s.init();
    assert.deepEqual(await collect(s.walk()), []);
    const want = new Map<string, number>();
    for (let i = 0; i < 5; i++) {
      const data = seededBytes(`walk${i}`, 100 * i + 1);
      want.set(sha256(data), data.length);
      await s.put(Readable.from([data]), { digest: sha256(data) });
    }
    const got = new Map((await collect(s.walk())).map((b) => [b.digest, b.size]));
    assert.deepEqual(got, want);
  });

  it('delete removes the blob; missing blobs are NOT_FOUND for stat, read, delete and verify', async () => {
    const s = fresh();
    const data = seededBytes('del', 999);
    const digest = sha256(data);
    await s.put(Readable.from([data]), { digest });
    await s.delete(digest);
    assert.equal(await s.has(digest), false);
    await assert.rejects(s.stat(digest), isCode('NOT_FOUND', digest));
    await assert.rejects(s.delete(digest), isCode('NOT_FOUND', digest));
    await assert.rejects(s.verify(digest), isCode('NOT_FOUND', digest));
    await assert.rejects(readAll(s.createReadStream(digest)), isCode('NOT_FOUND', digest));
    assert.deepEqual(await collect(s.walk()), []);
  });

  it('verify passes on a good blob and fails EINTEGRITY naming both digests on a corrupted one', async () => {
    const s = fresh();
    const data = seededBytes('verify', 64 * 1024);
    const digest = sha256(data);
    await s.put(Readable.from([data]), { digest });
    await s.verify(digest);
    const bad = Buffer.from(data);
    bad[1000] ^= 0xff;
    await writeFile(s.blobPath(digest), bad); // root ignores the blob's 0444 mode
    await assert.rejects(s.verify(digest), isCode('EINTEGRITY', digest, sha256(bad)));
  });

  it('malformed digests are INVALID_ARGUMENT, never a path', async () => {
    const s = fresh();
    assert.throws(() => s.blobPath('sha256:../../etc/passwd' as Digest), isCode('INVALID_ARGUMENT'));
    await assert.rejects(s.put(Readable.from([]), { digest: 'sha256:xyz' as Digest }), isCode('INVALID_ARGUMENT'));
    await assert.rejects(s.has('md5:abc' as Digest), isCode('INVALID_ARGUMENT'));
  });
});
