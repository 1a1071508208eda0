// Resumable ingests: offsets after an interruption, locking between writers (in this
// process and in others), crash debris and its cleanup.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ContentStore } from '../../src/content/index.js';
import { TslayerError } from '../../src/errors.js';
import type { Digest } from '../../src/image/digest.js';
import { seededBytes } from '../helpers/seeded.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';
import { reap, spawnChild } from './children.js';

const sha256 = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function isCode(code: string, ...inMessage: string[]) {
  return (e: unknown) => {
    assert.ok(e instanceof TslayerError, `expected a TslayerError, got ${String(e)}`);
    assert.equal(e.code, code);
    for (const s of inMessage) assert.ok(e.message.includes(s), `"${e.message}" should name ${s}`);
    return true;
  };
}

async function readAll(s: ContentStore, d: Digest): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s.createReadStream(d)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('content ingest', () => {
  let tmp: string;
  let n = 0;
  const fresh = () => new ContentStore(join(tmp, `s${n++}`, 'content'));
  const ingestEntries = async (s: ContentStore) => readdir(s.ingestRoot).catch(() => []);

  before(async () => {
    tmp = await makeTmpDir('content-ingest');
  });
  after(async () => {
    await removeTmpDir(tmp);
  });

  it('an ingest closed half way resumes at that offset and commits the right blob', async () => {
    const s = fresh();
    const data = seededBytes('resume', 3 * 1024 * 1024 + 5);
    const digest = sha256(data);
    const half = Math.floor(data.length / 2);

    const first = await s.openIngest(digest, { digest, size: data.length });
    assert.equal(first.offset, 0);
    await first.write(data.subarray(0, 1000));
    await first.write(data.subarray(1000, half));
    assert.equal(first.offset, half);
    await first.close();
    assert.equal(await s.has(digest), false);

    const second = await s.openIngest(digest, { digest, size: data.length });
    assert.equal(second.offset, half);
    await second.write(data.subarray(half));
    assert.deepEqual(await second.commit(), { digest, size: data.length });
    assert.ok((await readAll(s, digest)).equals(data));
    assert.deepEqual(await ingestEntries(s), []);
  });

  it('readStaged() streams back the staged prefix of a resumed ingest while the rest is appended', async () => {
    const s = fresh();
    const data = seededBytes('staged', 2 * 1024 * 1024 + 17);
    const digest = sha256(data);
    const cut = 1024 * 1024 + 5;
    const first = await s.openIngest(digest, { digest, size: data.length });
    assert.equal((await collectStream(first.readStaged())).length, 0, 'nothing staged yet');
    await first.write(data.subarray(0, cut));
    await first.close();
    assert.throws(() => first.readStaged(), isCode('FAILED_PRECONDITION'), 'only while open');

    const second = await s.openIngest(digest, { digest, size: data.length });
    assert.equal(second.offset, cut);
    assert.throws(() => second.readStaged(cut + 1), isCode('INVALID_ARGUMENT'));
    const prefix = second.readStaged();
    await second.write(data.subarray(cut)); // appending does not disturb the bytes being read back
    assert.ok((await collectStream(prefix)).equals(data.subarray(0, cut)));
    assert.ok((await collectStream(second.readStaged(10))).equals(data.subarray(0, 10)));
    await second.commit();
    await s.verify(digest);
  });

  it('the writable() of an ingest appends and ending it does not commit', async () => {
    const s = fresh();
    const data = seededBytes('writable', 200_000);
    const digest = sha256(data);
    const ing = await s.openIngest('layer-1', { digest });
    const w = ing.writable();
    for (let i = 0; i < data.length; i += 30_000) w.write(data.subarray(i, i + 30_000));
    w.end();
    await new Promise((r) => w.on('finish', r));
    assert.equal(ing.offset, data.length);
    assert.equal(await s.has(digest), false);
    await ing.commit();
    await s.verify(digest);
  });

  it('reopening a ref with a different expected digest discards the staged bytes', async () => {
    const s = fresh();
    const a = seededBytes('a', 5000);
    const b = seededBytes('b', 7000);
    const first = await s.openIngest('ref', { digest: sha256(a) });
    await first.write(a.subarray(0, 4000));
    await first.close();
    const second = await s.openIngest('ref', { digest: sha256(b) });
    assert.equal(second.offset, 0);
    await second.write(b);
    await second.commit();
    assert.ok((await readAll(s, sha256(b))).equals(b));
  });

  it('staged bytes beyond the expected size are discarded on reopen', async () => {
    const s = fresh();
    const data = seededBytes('over', 3000);
    const digest = sha256(data);
    const first = await s.openIngest('r', { digest });
    await first.write(seededBytes('junk', 5000));
    await first.close();
    const second = await s.openIngest('r', { digest, size: data.length });
    assert.equal(second.offset, 0);
    await second.abort();
  });

  it('abort drops the staged data and a later open starts from zero', async () => {
    const s = fresh();
    const data = seededBytes('abort', 10_000);
    const digest = sha256(data);
    const ing = await s.openIngest(digest, { digest });
    await ing.write(data.subarray(0, 5000));
    await ing.abort();
    await ing.abort(); // idempotent
    assert.deepEqual(await ingestEntries(s), []);
    await assert.rejects(ing.write(data), isCode('FAILED_PRECONDITION'));
    const again = await s.openIngest(digest, { digest });
    assert.equal(again.offset, 0);
    await again.abort();
  });

  it('commit with the wrong content fails EINTEGRITY naming both digests and leaves nothing', async () => {
    const s = fresh();
    const data = seededBytes('c', 4096);
    const other = seededBytes('d', 4096);
    const ing = await s.openIngest(sha256(data), { digest: sha256(data), size: 4096 });
    await ing.write(other.subarray(0, 2048));
    await ing.close(); // the bad bytes survive a resume...
    const again = await s.openIngest(sha256(data), { digest: sha256(data), size: 4096 });
    assert.equal(again.offset, 2048);
    await again.write(data.subarray(2048));
    // ...and are caught at commit, with the digest of what was actually staged.
    const staged = Buffer.concat([other.subarray(0, 2048), data.subarray(2048)]);
    await assert.rejects(again.commit(), isCode('EINTEGRITY', sha256(data), sha256(staged)));
    assert.deepEqual(await ingestEntries(s), []);
    assert.deepEqual(await readdir(join(s.dir, 'blobs', 'sha256')).catch(() => []), []);
  });

  it('a write past the expected size fails EBADSIZE and drops the ingest', async () => {
    const s = fresh();
    const data = seededBytes('e', 100);
    const ing = await s.openIngest('r', { digest: sha256(data), size: 100 });
    await ing.write(data.subarray(0, 60));
    await assert.rejects(ing.write(data.subarray(0, 60)), isCode('EBADSIZE', 'expected size 100', 'at least 120'));
    assert.deepEqual(await ingestEntries(s), []);
    await assert.rejects(ing.commit(), isCode('FAILED_PRECONDITION'));
  });

  it('openIngest of a blob already stored is ALREADY_EXISTS and leaves no ingest', async () => {
    const s = fresh();
    const data = seededBytes('f', 100);
    const digest = sha256(data);
    const ing = await s.openIngest(digest, { digest });
    await ing.write(data);
    await ing.commit();
    await assert.rejects(s.openIngest(digest, { digest }), isCode('ALREADY_EXISTS', digest));
    assert.deepEqual(await ingestEntries(s), []);
  });

  it('a second writer of the same ref waits for the first; with wait:false it is UNAVAILABLE', async () => {
    const s = fresh();
    const data = seededBytes('g', 50_000);
    const digest = sha256(data);
    const first = await s.openIngest(digest, { digest });
    await first.write(data.subarray(0, 20_000));
    await assert.rejects(s.openIngest(digest, { digest }, { wait: false }), isCode('UNAVAILABLE', digest));

    let secondOpened = false;
    const second = s.openIngest(digest, { digest }).then((i) => ((secondOpened = true), i));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(secondOpened, false, 'waits while the first holds the ref');
    await first.close();
    const ing = await second;
    assert.equal(ing.offset, 20_000, 'takes over the staged bytes');
    await ing.write(data.subarray(20_000));
    await ing.commit();
    await s.verify(digest);
  });

  it('a waiting writer gets ALREADY_EXISTS once the holder commits', async () => {
    const s = fresh();
    const data = seededBytes('h', 10_000);
    const digest = sha256(data);
    const first = await s.openIngest(digest, { digest });
    const waiter = s.openIngest(digest, { digest });
    await first.write(data);
    await first.commit();
    await assert.rejects(waiter, isCode('ALREADY_EXISTS'));
    assert.deepEqual(await ingestEntries(s), []);
  });

  it('waiting for a ref can be cancelled with an AbortSignal', async () => {
    const s = fresh();
    const digest = sha256(Buffer.from('x'));
    const first = await s.openIngest(digest, { digest });
    const ac = new AbortController();
    const waiter = s.openIngest(digest, { digest }, { signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    await assert.rejects(waiter, { name: 'AbortError' });
    await first.abort();
  });

  it('put waiting for another writer passes on an error its source emits meanwhile', async () => {
    const s = fresh();
    const data = seededBytes('j', 1000);
    const digest = sha256(data);
    const holder = await s.openIngest(digest, { digest });
    const src = new Readable({ read() {} });
    const put = s.put(src, { digest });
    await new Promise((r) => setTimeout(r, 20));
    src.destroy(new Error('connection reset while queued'));
    await holder.close();
    await assert.rejects(put, /connection reset while queued/);
    assert.deepEqual(await ingestEntries(s), [], 'put dropped the staged bytes it took over');
    assert.equal(await s.has(digest), false);
  });

  it('ingests() reports each partial ingest with its ref, expected digest and offset', async () => {
    const s = fresh();
    const data = seededBytes('i', 1000);
    const digest = sha256(data);
    const ing = await s.openIngest('my-ref', { digest, size: 1000 });
    await ing.write(data.subarray(0, 400));
    await ing.close();
    const list = [];
    for await (const st of s.ingests()) list.push(st);
    assert.equal(list.length, 1);
    assert.equal(list[0].ref, 'my-ref');
    assert.equal(list[0].digest, digest);
    assert.equal(list[0].size, 1000);
    assert.equal(list[0].offset, 400);
  });

  it('cleanupIngests keeps recent and in-use ingests and removes stale ones', async () => {
    const s = fresh();
    const d1 = sha256(Buffer.from('1'));
    const d2 = sha256(Buffer.from('2'));
    const stale = await s.openIngest('stale', { digest: d1 });
    await stale.write(Buffer.from('x'));
    await stale.close();
    const busy = await s.openIngest('busy', { digest: d2 });
    await busy.write(Buffer.from('y'));

    await s.cleanupIngests(60_000);
    assert.equal((await ingestEntries(s)).length, 2, 'both are recent');

    // Age the closed one's files by an hour.
    const old = new Date(Date.now() - 3_600_000);
    for (const dir of await ingestEntries(s)) {
      for (const f of ['data', 'meta']) await utimes(join(s.ingestRoot, dir, f), old, old);
    }
    await s.cleanupIngests(60_000);
    const left = [];
    for await (const st of s.ingests()) left.push(st.ref);
    assert.deepEqual(left, ['busy'], 'the stale one is gone; the locked one stays however old');

    await s.cleanupIngests();
    assert.equal((await ingestEntries(s)).length, 1, 'in use: never removed');
    await busy.close();
    await s.cleanupIngests();
    assert.deepEqual(await ingestEntries(s), []);
  });

  it('a writer killed with SIGKILL leaves only ingest debris: locked while alive, resumable, then cleaned up', async () => {
    const s = fresh();
    const size = 4 * 1024 * 1024;
    const data = seededBytes('crash', size);
    const digest = sha256(data);
    const staged = 3 * 1024 * 1024 + 123;
    const child = spawnChild<{ offset: number }>(['hold', s.dir, digest, digest, 'crash', String(staged)]);
    try {
      assert.equal((await child.report).offset, staged);
      // Alive: its lock keeps others and the cleaner away.
      await assert.rejects(s.openIngest(digest, { digest }, { wait: false }), isCode('UNAVAILABLE'));
      await s.cleanupIngests();
      assert.equal((await ingestEntries(s)).length, 1);

      child.proc.kill('SIGKILL');
      assert.equal(await child.exited, 'SIGKILL');

      // Dead: no blob (not even a partial one), the debris is in ingest/ only.
      assert.equal(await s.has(digest), false);
      await assert.rejects(stat(s.blobPath(digest)), { code: 'ENOENT' });
      await s.cleanupIngests(60_000); // recent: kept for a resume
      const ing = await s.openIngest(digest, { digest, size }, { wait: false });
      assert.equal(ing.offset, staged);
      await ing.close();

      await s.cleanupIngests();
      assert.deepEqual(await ingestEntries(s), []);
      assert.equal(await s.has(digest), false);
    } finally {
      await reap(child);
    }
  });
});

async function collectStream(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
