/**
 * `buildah commit` of the change bench/commit/run.ts commits with tslayer and podman:
 * 10 000 small files (0.5-4 KiB) and one 100 MB file, incompressible, written into a
 * working container of the same busybox image from a local registry. bench/commit/run.ts
 * compares tslayer with podman only; this adds buildah, the other peer the benchmark
 * names, with the same change, the same fresh journaled ext4 per trial and the same
 * clock (from the command's start until it exited and `sync -f` of the fs returned).
 *
 *   npx tsc -p . && node dist/bench/ops/commit-buildah.js [--trials 3] [--files 10000] [--big-mb 100]
 *
 * Writes bench/results/commit-buildah.md and .json; bench/lib/summary.ts puts buildah
 * beside podman in the commit row.
 *
 * Needs root and the Debian packages buildah docker-registry skopeo umoci busybox-static.
 */
import { writeChange } from '../commit/change.js';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildLayeredImage, installBusybox } from '../../test/helpers/busybox.js';
import { startRegistry } from '../../test/helpers/registry.js';
import { GiB, withFreshFs } from '../lib/fresh.js';
import { writeResult } from '../lib/results.js';
import { fmt, summarize } from '../lib/stats.js';
import { load1, progress, seconds, sh, syncFs } from '../lib/sys.js';

interface Args {
  trials: number;
  files: number;
  bigMb: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { trials: 3, files: 10_000, bigMb: 100 };
  for (let i = 0; i < argv.length; i++) {
    const v = Number(argv[i + 1]);
    if (argv[i] === '--trials') a.trials = v;
    else if (argv[i] === '--files') a.files = v;
    else if (argv[i] === '--big-mb') a.bigMb = v;
    else throw new Error(`unknown argument ${argv[i]} (use --trials N, --files N, --big-mb N)`);
    i++;
  }
  return a;
}


async function trial(base: string, a: Args): Promise<number> {
  return withFreshFs('ext4', 8 * GiB, async (fs) => {
    const runroot = await mkdtemp('/tmp/tslayer-ba-'); // short: the runroot holds sockets and locks
    const b = (...args: string[]) =>
      sh('buildah', ['--root', join(fs.mountpoint, 'buildah'), '--runroot', runroot, '--storage-driver', 'overlay', ...args]);
    try {
      const ctr = (await b('from', '--quiet', '--tls-verify=false', '--name', 'bench', base)).trim();
      const view = (await b('mount', ctr)).trim();
      writeChange(view, { ...a, content: 'random' });
      await sh('sync', []);
      return await seconds(async () => {
        await b('commit', '--quiet', ctr, 'localhost/bench:out');
        await syncFs(fs.mountpoint);
      });
    } finally {
      await b('umount', '--all').catch(() => '');
      await b('rm', '--all').catch(() => '');
      await b('rmi', '--all', '--force').catch(() => '');
      await rm(runroot, { recursive: true, force: true });
    }
  });
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const loadStart = load1();
  const scratch = await mkdtemp('/tmp/tslayer-bench-buildah-');
  const reg = await startRegistry();
  const times: number[] = [];
  try {
    const layout = join(scratch, 'layout');
    await mkdir(join(scratch, 'umoci'));
    await buildLayeredImage(layout, 'base', join(scratch, 'umoci'), [installBusybox]);
    const base = `${reg.host}/busybox:base`;
    await sh('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:base`, `docker://${base}`]);
    for (let i = 0; i < a.trials; i++) {
      const t = await trial(base, a);
      times.push(t);
      progress(`buildah commit trial ${i + 1}/${a.trials}: ${t.toFixed(2)} s`);
    }
  } finally {
    await reg.stop();
    await rm(scratch, { recursive: true, force: true });
  }
  const s = summarize(times);
  const md = [
    '# buildah commit',
    '',
    `\`buildah commit\` of ${a.files} files of 0.5-4 KiB + one ${a.bigMb} MB file (incompressible), the change of ` +
      `bench/commit/run.ts, ${a.trials} trials, fresh journaled ext4 each, sync included (seconds). ` +
      `Load average (1 min): ${loadStart} at the start, ${load1()} at the end.`,
    '',
    `buildah   median ${s.median.toFixed(2)}  min ${s.min.toFixed(2)}  max ${s.max.toFixed(2)}  (trials: ${times.map((x) => fmt(x)).join(', ')})`,
    '',
  ].join('\n');
  await writeResult('commit-buildah.md', md);
  await writeResult('commit-buildah.json', JSON.stringify({ trials: a.trials, files: a.files, bigMb: a.bigMb, times, summary: s }) + '\n');
  process.stdout.write(md);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exitCode = 1;
});
