// The requirement: 8 processes ingesting the same 200 MB blob at once leave one
// correct blob, no debris, and none of them buffers the blob in memory.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ContentStore } from '../../src/content/index.js';
import type { Digest } from '../../src/image/digest.js';
import { writeSeededFile } from '../helpers/seeded.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';
import { reap, spawnChild, type Child } from './children.js';

const SIZE = 200 * 1024 * 1024;
const WRITERS = 8;

describe('content store under concurrent processes', () => {
  let input: string; // the 200 MB source, on tmpfs when there is one
  let tmp: string; // the store, on a real disk filesystem (fsync does real work)
  let digest: Digest;

  before(async () => {
    input = await makeTmpDir('content-src', existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
    tmp = await makeTmpDir('content-concurrent');
    digest = await writeSeededFile(join(input, 'blob'), 'eight-writers', SIZE);
  });
  after(async () => {
    await removeTmpDir(input);
    await removeTmpDir(tmp);
  });

  it('8 processes ingesting the same 200 MB blob at once leave one correct blob', async () => {
    const store = new ContentStore(join(tmp, 'content'));
    type Report = { digest: Digest; size: number; rssGrowth: number };
    const children: Child<Report>[] = [];
    try {
      for (let i = 0; i < WRITERS; i++) {
        children.push(spawnChild<Report>(['put', store.dir, join(input, 'blob'), digest, String(SIZE)]));
      }
      // Start barrier: every child is up and waiting on stdin before any of them writes.
      await Promise.all(children.map((c) => c.ready));
      const t0 = Date.now();
      for (const c of children) c.proc.stdin!.write('go\n');
      const reports = await Promise.all(children.map((c) => c.report));
      const elapsed = Date.now() - t0;
      assert.deepEqual(await Promise.all(children.map((c) => c.exited)), Array(WRITERS).fill(0));

      for (const r of reports) assert.deepEqual({ digest: r.digest, size: r.size }, { digest, size: SIZE });
      assert.deepEqual(await readdir(join(store.dir, 'blobs', 'sha256')), [digest.slice('sha256:'.length)]);
      assert.deepEqual(await readdir(store.ingestRoot), []);
      assert.deepEqual((await store.stat(digest)).size, SIZE);
      await store.verify(digest);

      // Streams, not buffers: no writer's RSS grew by anything near the blob's size. (Measured
      // 8-16 MiB alone, 35-55 MiB with 8 racing processes: garbage the GC has not caught up with.)
      const worst = Math.max(...reports.map((r) => r.rssGrowth));
      assert.ok(worst < SIZE / 2, `peak RSS growth ${worst} bytes for a ${SIZE}-byte blob`);
      console.log(`# ${WRITERS} writers x ${SIZE >> 20} MiB: ${elapsed} ms, worst RSS growth ${(worst / 2 ** 20).toFixed(1)} MiB`);
    } finally {
      await Promise.all(children.map(reap));
    }
  });

  it('writers killed with SIGKILL mid-ingest are taken over by the others: one correct blob, no debris', async () => {
    const store = new ContentStore(join(tmp, 'content-kill'));
    type Report = { digest: Digest; size: number };
    const children: Child<Report>[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        children.push(spawnChild<Report>(['put', store.dir, join(input, 'blob'), digest, String(SIZE)]));
      }
      await Promise.all(children.map((c) => c.ready));
      for (const c of children) c.proc.stdin!.write('go\n');
      // Kill the writer holding the ingest's lock, while it is writing, and one waiter.
      const holder = await lockHolder(store);
      const victims = [children.find((c) => c.proc.pid === holder)!, children.find((c) => c.proc.pid !== holder)!];
      assert.ok(victims[0], `lock holder ${holder} is one of the writers`);
      for (const v of victims) v.proc.kill('SIGKILL');
      const survivors = children.filter((c) => !victims.includes(c));
      for (const v of victims) assert.equal(await v.exited, 'SIGKILL');
      for (const c of survivors) assert.equal(await c.exited, 0);
      for (const c of survivors) assert.equal((await c.report).digest, digest);

      assert.deepEqual(await readdir(join(store.dir, 'blobs', 'sha256')), [digest.slice('sha256:'.length)]);
      await store.verify(digest);
      // A dead writer's ingest is the next writer's (same ref): nothing to clean up.
      assert.deepEqual(await readdir(store.ingestRoot), []);
    } finally {
      await Promise.all(children.map(reap));
    }
  });
});

/**
 * The pid holding the flock of the store's (only) ingest once it has staged some bytes,
 * read from /proc/locks ("1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF").
 */
async function lockHolder(store: ContentStore): Promise<number> {
  for (let i = 0; i < 2000; i++) {
    for (const name of await readdir(store.ingestRoot).catch(() => [])) {
      const dir = join(store.ingestRoot, name);
      const [lock, data] = await Promise.all([stat(join(dir, 'lock')), stat(join(dir, 'data'))]).catch(() => []);
      if (!lock || !data || data.size === 0) continue;
      for (const line of (await readFile('/proc/locks', 'utf8')).split('\n')) {
        const f = line.split(/\s+/);
        if (f[1] === 'FLOCK' && f[5]?.endsWith(`:${lock.ino}`)) return Number(f[4]);
      }
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('no writer took the ingest lock');
}
