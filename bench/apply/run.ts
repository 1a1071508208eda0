/**
 * How long applying one layer takes: a generated ~100 MB / ~7000-entry layer (the shape
 * of a Debian base layer: ~700 directories, ~5900 files of mostly small sizes, symlinks,
 * hardlinks), uncompressed, applied by applyLayer in 'overlay' mode (no lowers) and in
 * 'remove' mode, next to GNU `tar -x` of the same file as the floor.
 *
 *   npx tsc -p . && node dist/bench/apply/run.js [trials=5] [tmpfs]
 *
 * Every trial runs on a freshly made journaled ext4 loop filesystem (MACHINE.md: on the
 * root fs, file creation right after deletions is several times slower), or on a fresh
 * tmpfs with "tmpfs". Prints median / min in ms and MB/s per tool. Run as root.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { applyLayer } from '../../src/archive/apply.js';
import { mount, umount } from '../../src/native/index.js';

const TRIALS = Number(process.argv[2] ?? 5);
const TMPFS = process.argv[3] === 'tmpfs';
const REPO = new URL('../../../', import.meta.url);

interface Spec {
  type: string;
  name: string;
  content?: Buffer;
  link?: string;
  mode?: number;
}
type Writer = {
  encodeLayer(e: Spec[]): Buffer;
  dir(n: string, o?: object): Spec;
  file(n: string, c: Buffer, o?: object): Spec;
  sym(n: string, l: string): Spec;
  hard(n: string, l: string): Spec;
};

/** xorshift32: a fixed sequence, so the layer is the same on every run. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

/** Writes the bench layer to `path` (deterministic). */
export async function makeLayer(path: string): Promise<{ entries: number; bytes: number }> {
  const tar = (await import(new URL('fixtures/layer-corpus.mjs', pathToFileURL(REPO.pathname + '/')).href)) as Writer;
  const r = rng(42);
  const pool = Buffer.alloc(4 << 20);
  for (let i = 0; i < pool.length; i += 4) pool.writeUInt32LE((r() * 0x100000000) >>> 0, i);
  const entries: Spec[] = [];
  const dirs: string[] = [];
  for (let i = 0; i < 700; i++) {
    const parent = dirs.length > 0 && r() < 0.8 ? dirs[Math.floor(r() * dirs.length)]! + '/' : '';
    const d = `${parent}d${i}`;
    if (d.split('/').length > 6) continue;
    dirs.push(d);
    entries.push(tar.dir(`${d}/`));
  }
  // Sizes log-uniform from 64 B to 4 MiB, scaled so the files total ~100 MB.
  const sizes = Array.from({ length: 5900 }, () => Math.floor(64 * Math.pow(65536, r() ** 1.6)));
  const scale = 100e6 / sizes.reduce((a, b) => a + b, 0);
  const files: string[] = [];
  sizes.forEach((s, i) => {
    const n = Math.max(1, Math.min(pool.length, Math.floor(s * scale)));
    const off = Math.floor(r() * (pool.length - n));
    const name = `${dirs[Math.floor(r() * dirs.length)]!}/f${i}`;
    files.push(name);
    entries.push(tar.file(name, pool.subarray(off, off + n), { mode: r() < 0.2 ? 0o755 : 0o644 }));
  });
  for (let i = 0; i < 400; i++) entries.push(tar.sym(`${dirs[Math.floor(r() * dirs.length)]!}/l${i}`, files[Math.floor(r() * files.length)]!));
  for (let i = 0; i < 100; i++) entries.push(tar.hard(`${dirs[Math.floor(r() * dirs.length)]!}/h${i}`, files[Math.floor(r() * files.length)]!));
  const data = tar.encodeLayer(entries);
  await writeFile(path, data);
  return { entries: entries.length, bytes: data.length };
}

/** A fresh filesystem mounted at `dir` for one trial. */
async function freshFs(work: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (TMPFS) return mount('tmpfs', dir, 'tmpfs', 0, 'size=2g');
  const img = join(work, 'fs.img');
  await rm(img, { force: true });
  spawnSync('truncate', ['-s', '2G', img]);
  const mk = spawnSync('mkfs.ext4', ['-q', '-F', img]);
  if (mk.status !== 0) throw new Error(`mkfs.ext4: ${mk.stderr.toString()}`);
  const m = spawnSync('mount', ['-o', 'loop', img, dir]);
  if (m.status !== 0) throw new Error(`mount: ${m.stderr.toString()}`);
}

async function trial(work: string, fn: (dir: string) => Promise<void>): Promise<number> {
  const mnt = join(work, 'mnt');
  await freshFs(work, mnt);
  try {
    const dir = join(mnt, 'snap');
    await mkdir(dir);
    spawnSync('sync');
    const t = process.hrtime.bigint();
    await fn(dir);
    spawnSync('sync'); // the data on disk, as a pull must have it
    return Number(process.hrtime.bigint() - t) / 1e6;
  } finally {
    await umount(mnt);
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'tslayer-bench-apply-'));
  try {
    const layer = join('/dev/shm', `tslayer-bench-apply-${process.pid}.tar`);
    const shape = await makeLayer(layer);
    try {
      console.log(`layer: ${shape.entries} entries, ${(shape.bytes / 1e6).toFixed(1)} MB; ${TRIALS} trials each on a fresh ${TMPFS ? 'tmpfs' : 'ext4 (journaled, loop)'}`);
      const tools: Array<[string, (dir: string) => Promise<void>]> = [
        ['tar -x (GNU)', async (dir) => void spawnSync('tar', ['-xf', layer, '-C', dir])],
        ['applyLayer overlay', async (dir) => void (await applyLayer(createReadStream(layer, { highWaterMark: 1 << 20 }), dir, { mode: 'overlay' }))],
        ['applyLayer remove', async (dir) => void (await applyLayer(createReadStream(layer, { highWaterMark: 1 << 20 }), dir, { mode: 'remove' }))],
      ];
      for (const [name, fn] of tools) {
        const ms: number[] = [];
        for (let i = 0; i < TRIALS; i++) ms.push(await trial(work, fn));
        ms.sort((a, b) => a - b);
        const med = ms[Math.floor(ms.length / 2)]!;
        console.log(`${name.padEnd(20)} median ${med.toFixed(0)} ms  min ${ms[0]!.toFixed(0)} ms  (${(shape.bytes / 1e3 / med).toFixed(0)} MB/s)`);
      }
    } finally {
      await rm(layer, { force: true });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
