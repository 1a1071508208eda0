/**
 * A focused timing of tslayer's "remove of an image until its data is gone" (the rmi row of
 * bench/ops/run.ts) without the rest of that benchmark: the same image, the same fresh
 * journaled ext4 loop fs, the same page-cache drop and `sync -f` inside the timing.
 *
 *   npx tsc -p . && node dist/bench/ops/rmi-time.js [--trials N] [--image three|hundred] [--cmd 'rmi REF' | --cmd 'rmi --no-prune REF;gc'] [--strace] [--stderr]
 *
 * --cmd: `;`-separated tslayer commands timed one after the other (REF is the 3-layer
 * image, or with --image hundred the 100-layer one); default `rmi REF`. --strace runs each under `strace -f -c` (summary on stderr;
 * slows it down); --stderr shows the timed commands' stderr. Prints each command's time, the total with the sync, and what is left.
 */
import { spawn } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { startRegistry } from '../../test/helpers/registry.js';
import { GiB, withFreshFs } from '../lib/fresh.js';
import { TSLAYER_BIN } from '../lib/results.js';
import { fmt, summarize } from '../lib/stats.js';
import { dropCaches, seconds, sh, syncFs } from '../lib/sys.js';
import { pushBenchImages } from './images.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i < 0 ? def : process.argv[i + 1]!;
}

async function usedBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return (s.blocks - s.bfree) * s.bsize;
}

async function main(): Promise<void> {
  const trials = Number(arg('--trials', '3'));
  const which = arg('--image', 'three');
  if (which !== 'three' && which !== 'hundred') throw new Error('--image three|hundred');
  const cmds = arg('--cmd', 'rmi REF').split(';').map((c) => c.trim().split(/\s+/));
  const strace = process.argv.includes('--strace');
  const showStderr = process.argv.includes('--stderr');
  const reg = await startRegistry();
  const totals: number[] = [];
  try {
    const images = await pushBenchImages(reg);
    for (let n = 0; n < trials; n++) {
      await withFreshFs('ext4', 8 * GiB, async (fs) => {
        const root = join(fs.mountpoint, 'tslayer');
        const run = (args: string[]) =>
          new Promise<void>((resolve, reject) => {
            const c = spawn(process.execPath, [TSLAYER_BIN, '--root', root, '--quiet', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
            c.on('error', reject);
            c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tslayer ${args.join(' ')}: exit ${code}`))));
          });
        const cli = (...args: string[]) =>
          showStderr && args[0] !== 'pull'
            ? run(args)
            : strace
            ? sh('strace', ['-f', '-c', '-o', `/tmp/rmi-strace-${n}-${args[0]}.txt`, process.execPath, TSLAYER_BIN, '--root', root, '--quiet', ...args])
            : sh(process.execPath, [TSLAYER_BIN, '--root', root, '--quiet', ...args]);
        const used0 = await usedBytes(fs.mountpoint);
        await cli('pull', images.three);
        await cli('pull', images.hundred);
        await dropCaches();
        const parts: string[] = [];
        const total = await seconds(async () => {
          for (const c of cmds) {
            const t = await seconds(() => cli(...c.map((a) => (a === 'REF' ? images[which] : a))));
            parts.push(`${c.join(' ')} ${fmt(t * 1000)} ms`);
          }
          const t = await seconds(() => syncFs(fs.mountpoint));
          parts.push(`sync -f ${fmt(t * 1000)} ms`);
        });
        totals.push(total);
        const left = (await usedBytes(fs.mountpoint) - used0) / 1e6;
        process.stdout.write(`trial ${n + 1}: ${fmt(total * 1000)} ms (${parts.join(', ')}); ${fmt(left)} MB left\n`);
      });
    }
  } finally {
    await reg.stop();
  }
  const s = summarize(totals.map((x) => x * 1000));
  process.stdout.write(`median ${fmt(s.median)} ms, min-max ${fmt(s.min)}-${fmt(s.max)} ms\n`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exitCode = 1;
});
