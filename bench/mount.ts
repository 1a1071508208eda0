/**
 * How long mounting a 3-layer image takes (the "well under 20 ms").
 *
 *   npx tsc -p . && node dist/bench/mount.js [N=200]
 *
 * Builds three committed overlay layers (a few hundred files each) in a fresh store
 * under $TMPDIR, prepares an active snapshot on top (3 lowerdirs + upper), and times N
 * rounds of each step separately, printing median / p90 / min in ms:
 *   mountAll       the mount itself (fsopen, 3x lowerdir+, upperdir, workdir, fsmount, move_mount)
 *   mountAll(2)    the same through mount(2) with one option string (the old-kernel path)
 *   mounts+mount   sn.mounts(key) (one metadata transaction) and mountAll
 *   prepare+mount  a new active snapshot on the image (one transaction) and mountAll
 *   unmountAll     taking it off again
 * Run as root. Everything it mounts is unmounted and the store removed at the end.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSnapshotter, mountAll, unmountAll } from '../src/snapshot/index.js';
import { Store } from '../src/store.js';

const N = Number(process.argv[2] ?? 200);

function stats(samples: number[]): string {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return `median ${q(0.5).toFixed(3)}  p90 ${q(0.9).toFixed(3)}  min ${s[0].toFixed(3)}`;
}

async function time(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tslayer-bench-mount-'));
  const target = join(dir, 'mnt');
  await mkdir(target);
  const store = await Store.open(join(dir, 'root'));
  const sn = await openSnapshotter(store, 'overlay', { namespace: 'bench' });
  try {
    // Three layers, as an image unpack would leave them.
    let parent: string | undefined;
    for (let layer = 0; layer < 3; layer++) {
      const m = await sn.prepare(`l${layer}-prepare`, parent);
      const upper = m[0].type === 'overlay' ? m[0].options.find((o) => o.startsWith('upperdir='))!.slice(9) : m[0].source;
      await mkdir(join(upper, `dir${layer}`));
      for (let i = 0; i < 300; i++) await writeFile(join(upper, `dir${layer}`, `f${i}`), `layer ${layer} file ${i}\n`);
      await writeFile(join(upper, 'top'), `layer ${layer}\n`);
      parent = `layer-${layer}`;
      await sn.commit(parent, `l${layer}-prepare`);
    }
    const mounts = await sn.prepare('bench', parent);
    console.log(`3-layer image, ${N} rounds each (ms):`);

    const rows: Array<[string, number[]]> = [];
    const mountT: number[] = [];
    const umountT: number[] = [];
    for (let i = 0; i < N; i++) {
      mountT.push(await time(() => mountAll(mounts, target)));
      umountT.push(await time(async () => void (await unmountAll(target))));
    }
    rows.push(['mountAll', mountT]);

    const legacy: number[] = [];
    for (let i = 0; i < N; i++) {
      legacy.push(await time(() => mountAll(mounts, target, { overlayApi: 'legacy' })));
      await unmountAll(target);
    }
    rows.push(['mountAll(2)', legacy]);

    const withMeta: number[] = [];
    for (let i = 0; i < N; i++) {
      withMeta.push(await time(async () => mountAll(await sn.mounts('bench'), target)));
      await unmountAll(target);
    }
    rows.push(['mounts+mount', withMeta]);

    const fresh: number[] = [];
    for (let i = 0; i < Math.min(N, 50); i++) {
      fresh.push(await time(async () => mountAll(await sn.prepare(`fresh-${i}`, parent), target)));
      await unmountAll(target);
      await sn.remove(`fresh-${i}`);
    }
    rows.push(['prepare+mount', fresh]);
    rows.push(['unmountAll', umountT]);
    for (const [name, s] of rows) console.log(`  ${name.padEnd(14)} ${stats(s)}`);
  } finally {
    await unmountAll(target, { detach: true }).catch(() => undefined);
    await sn.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
