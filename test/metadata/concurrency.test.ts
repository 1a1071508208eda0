// Cross-process atomicity of MetadataStore transactions: LevelDB's single-process lock is
// the transaction lock, and a second opener waits instead of failing with LEVEL_LOCKED.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MetadataStore } from '../../src/metadata/index.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

const CHILD = new URL('./counter-child.js', import.meta.url).pathname;
const PROCESSES = 4;
const INCREMENTS = 50;

function runChild(dir: string, key: string, count: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CHILD, dir, key, String(count)], { timeout: 120_000, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('metadata store across processes', () => {
  let tmp: string;
  before(async () => {
    tmp = await makeTmpDir('metadata-concurrency');
  });
  after(async () => {
    await removeTmpDir(tmp);
  });

  it(`${PROCESSES} child processes and this one, ${INCREMENTS} read-modify-write increments each, end at exactly ${(PROCESSES + 1) * INCREMENTS}`, async () => {
    const dir = join(tmp, 'counter');
    const store = new MetadataStore(dir);
    await store.transaction(async (tx) => tx.put('counter', 0));
    // This process increments too, through its own in-process queue, while the children run.
    const local = (async () => {
      for (let i = 0; i < INCREMENTS; i++) {
        await store.transaction(async (tx) => tx.put('counter', ((await tx.get<number>('counter')) ?? 0) + 1));
      }
    })();
    const results = await Promise.all(Array.from({ length: PROCESSES }, () => runChild(dir, 'counter', INCREMENTS)));
    await local;
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'done\n');
    }
    assert.equal(await store.read((tx) => tx.get<number>('counter')), (PROCESSES + 1) * INCREMENTS);
  });

  it('a transaction waits for another process holding the database instead of failing', async () => {
    const dir = join(tmp, 'held');
    const store = new MetadataStore(dir);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    // Hold the database open in this process while a child tries to write.
    const holder = store.transaction(async (tx) => {
      tx.put('k', 'holder');
      await held;
    });
    await new Promise((r) => setTimeout(r, 50));
    const child = runChild(dir, 'n', 1);
    await new Promise((r) => setTimeout(r, 300));
    release();
    await holder;
    const r = await child;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      await store.read(async (tx) => [await tx.get('k'), await tx.get('n')]),
      ['holder', 1],
    );
  });

  it('gives up with UNAVAILABLE (not LEVEL_LOCKED) after lockTimeoutMs', async () => {
    const dir = join(tmp, 'timeout');
    const holderStore = new MetadataStore(dir);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let opened!: () => void;
    const isOpen = new Promise<void>((r) => (opened = r));
    const holder = holderStore.transaction(async () => {
      opened();
      await held;
    });
    try {
      await isOpen;
      // A second MetadataStore object has its own queue: it meets the LevelDB lock like another process would.
      const other = new MetadataStore(dir, { lockTimeoutMs: 200 });
      await assert.rejects(other.transaction(async (tx) => tx.get('x')), { name: 'TslayerError', code: 'UNAVAILABLE' });
    } finally {
      release();
      await holder;
    }
  });
});
