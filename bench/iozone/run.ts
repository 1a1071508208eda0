/**
 * IOzone inside a container rootfs mounted by tslayer, per snapshot driver, against the
 * bare filesystem: the classic storage-driver comparison
 *
 *   iozone -a -n 4k -g 1g -i 0 -i 1 -i 2 -e -f FILE -Rb out.xls
 *
 * (write, rewrite, read, reread, random read, random write; file sizes 4 KiB..1 GiB,
 * every record size auto mode picks; -e: the flush is inside the timing, so the page
 * cache does not decide the write figures).
 *
 *   npx tsc -p . && node dist/bench/iozone/run.js [--quick] [--runs N] [--max-size 64m] [--targets bare-ext4,overlay,...]
 *
 * Full mode: -g 1g, 5 runs per target. --quick: -g 64m, 3 runs (fewer than the 5 that
 * a run-to-run spread of up to ~16% here calls for: indicative figures). Each run of each target is
 * on a freshly made loop filesystem with the page cache dropped first; the target order
 * rotates from run to run so that a change in the machine's load hits every target alike.
 * Writes bench/results/iozone.md, iozone.json and iozone-<test>.png; the raw IOzone
 * reports (.txt and .xls) go to $TSLAYER_BENCH_RAW/iozone.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImageLayout } from '../../test/helpers/registry.js';
import { GiB, withFreshFs } from '../lib/fresh.js';
import { describeMachine, rawDir, RESULTS_DIR, writeResult } from '../lib/results.js';
import { dropCaches, load1, progress, sh } from '../lib/sys.js';
import { parseIozone, type IozoneReport } from './parse.js';
import { largestTable, LARGE_KB, medianReport, plots, ratios, ratioTable, type TargetResult } from './report.js';
import { prepareHostTarget, TARGETS, type Target } from './targets.js';
import { devmapperUnavailable, runInVm, vmUnavailable } from './vm.js';

interface Args {
  quick: boolean;
  runs: number;
  maxSize: string;
  targets: string[];
  /** --targets was given. */
  explicitTargets: boolean;
}

function parseArgs(argv: string[]): Args {
  const quick = argv.includes('--quick');
  const a: Args = { quick, runs: quick ? 3 : 5, maxSize: quick ? '64m' : '1g', targets: TARGETS.map((t) => t.name), explicitTargets: false };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--quick': break;
      case '--runs': a.runs = Number(v); i++; break;
      case '--max-size': a.maxSize = v!; i++; break;
      case '--targets': a.targets = v!.split(','); a.explicitTargets = true; i++; break;
      default: throw new Error(`unknown argument ${argv[i]} (use --quick, --runs N, --max-size 64m|1g, --targets a,b)`);
    }
  }
  for (const t of a.targets) if (!TARGETS.some((x) => x.name === t)) throw new Error(`unknown target ${t} (know ${TARGETS.map((x) => x.name).join(', ')})`);
  if (!/^\d+[kmg]$/.test(a.maxSize)) throw new Error(`--max-size wants e.g. 64m or 1g, got ${a.maxSize}`);
  return a;
}

const bytes = (s: string) => Number(s.slice(0, -1)) * 1024 ** (' kmg'.indexOf(s.slice(-1)));

/** The image the drivers mount: three tiny layers with a /tmp; IOzone's file goes to its /tmp (the writable layer). */
async function benchLayout(dir: string): Promise<string> {
  const layout = join(dir, 'layout');
  await sh('rm', ['-rf', layout]);
  await buildImageLayout(layout, [
    { files: { 'etc/hostname': 'iozone\n', 'tmp/.keep': '' } },
    { files: { 'usr/share/doc/iozone/README': 'IOzone target image, layer 2\n' } },
    { files: { 'var/lib/iozone/state': 'layer 3\n' } },
  ]);
  return layout;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const raw = await rawDir('iozone');
  const layout = await benchLayout(raw);
  const iozoneArgs = ['-a', '-n', '4k', '-g', a.maxSize, '-i', '0', '-i', '1', '-i', '2', '-e'];
  // Room for the file (and btrfs's metadata, and a tslayer store): twice the largest file, at least 1 GiB.
  const fsSize = Math.max(GiB, 2 * bytes(a.maxSize) + 512 * 2 ** 20);
  const loadStart = load1();

  const gaps: string[] = [];
  let targets = TARGETS.filter((t) => a.targets.includes(t.name));
  if (targets.some((t) => t.vm)) {
    const why = await vmUnavailable();
    if (why) {
      gaps.push(`bare-vm and devmapper not run: ${why}.`);
      targets = targets.filter((t) => !t.vm);
    }
  }
  if (targets.some((t) => t.driver === 'devmapper')) {
    const why = await devmapperUnavailable();
    if (why) {
      // Without the driver, the VM's bare baseline has nothing to be compared with: skip
      // both, unless bare-vm was asked for by name.
      gaps.push(`devmapper not run: ${why}.`);
      targets = targets.filter((t) => !t.vm || (t.name === 'bare-vm' && a.explicitTargets));
    }
  }

  const runs = new Map<string, IozoneReport[]>(targets.map((t) => [t.name, []]));
  const failed = new Set<string>();
  for (let run = 0; run < a.runs; run++) {
    const order = targets.map((_, i) => targets[(i + run) % targets.length]!);
    for (const t of order) {
      if (failed.has(t.name)) continue;
      const base = join(raw, `${t.name}-${run + 1}`);
      progress(`iozone run ${run + 1}/${a.runs}: ${t.name}`);
      const t0 = Date.now();
      try {
        const report = await runOne(t, iozoneArgs, layout, `${base}.xls`, fsSize);
        await writeFile(`${base}.txt`, report);
        runs.get(t.name)!.push(parseIozone(report));
        progress(`iozone run ${run + 1}/${a.runs}: ${t.name} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      } catch (e) {
        failed.add(t.name);
        gaps.push(`${t.name} failed (run ${run + 1}): ${(e as Error).message.split('\n')[0]}`);
        progress(`iozone ${t.name} FAILED: ${(e as Error).message}`);
      }
    }
  }

  const results: TargetResult[] = targets
    .filter((t) => !failed.has(t.name) && runs.get(t.name)!.length > 0)
    .map((t) => {
      const rs = runs.get(t.name)!;
      return { target: t, runs: rs, median: medianReport(rs) };
    });
  const note = `file sizes 4K-${a.maxSize.toUpperCase()}, ${a.runs} run${a.runs === 1 ? '' : 's'}`;
  await mkdir(RESULTS_DIR, { recursive: true });
  const pngs = results.length ? await plots(results, RESULTS_DIR, note) : [];
  const rows = ratios(results);

  const md = [
    '# IOzone per snapshot driver',
    '',
    `Command: \`iozone ${iozoneArgs.join(' ')} -f DIR/iozone.tmp -R -b out.xls\` (${a.quick ? '**quick mode**: ' : ''}` +
      `file sizes 4 KiB-${a.maxSize.toUpperCase()}, median of **${a.runs} run${a.runs === 1 ? '' : 's'}** per target` +
      `${a.runs < 5 ? '; fewer than the 5 that runs differing by up to ~16% here call for, so read small differences as noise' : ''}). ` +
      'Each run on a freshly made loop filesystem (a sparse file on the same disk), page cache dropped before it; ' +
      'the target order rotates between runs.',
    '',
    ...(await describeMachine()).map((l) => l.replace(/^- Load average.*$/, `- Load average (1 min) at the start: ${loadStart}, at the end: ${load1()}`)),
    '',
    '## Ratio to the bare filesystem',
    '',
    'Throughput of the target over its baseline. A run\'s ratio is the geometric mean, over every (file size, record size) ' +
      'cell, of its throughput over the baseline\'s median; the figure is the median of the runs\' ratios, in brackets the ' +
      'lowest and highest. 1.00x = as fast as the bare filesystem.',
    '',
    ratioTable(rows, 'all'),
    '',
    `The same over files of ${LARGE_KB / 1024} MiB and more only (below that, the flush, per-call costs and the timer's resolution dominate):`,
    '',
    ratioTable(rows, 'large'),
    '',
    '## Throughput at the largest file size',
    '',
    largestTable(results),
    '',
    '## Targets',
    '',
    ...targets.map((t) => `- **${t.name}**: ${t.about}.`),
    ...(gaps.length ? ['', '## Not measured', '', ...gaps.map((g) => `- ${g}`)] : []),
    '',
    '## Plots',
    '',
    'Throughput against file size, one line per target (the geometric mean over the record sizes at each file size):',
    '',
    ...pngs.map((p) => `![${p}](${p})`),
    '',
  ].join('\n');
  await writeResult('iozone.md', md);
  await writeResult(
    'iozone.json',
    JSON.stringify({ mode: a.quick ? 'quick' : 'full', runs: a.runs, maxSize: a.maxSize, gaps, ratios: rows, medians: Object.fromEntries(results.map((r) => [r.target.name, r.median])) }) + '\n',
  );
  process.stdout.write(md);
  if (failed.size) process.exitCode = 1;
}

/** One IOzone run of target `t`: returns IOzone's report (stdout), the .xls written to `xls`. */
async function runOne(t: Target, iozoneArgs: string[], layout: string, xls: string, fsSize: number): Promise<string> {
  if (t.vm) {
    const dataSize = `${Math.ceil(fsSize / 2 ** 20)}M`;
    return (await runInVm(t, iozoneArgs, layout, xls, dataSize)).report;
  }
  return withFreshFs(t.fs!, fsSize, async (fs) => {
    const { dir, teardown } = await prepareHostTarget(t, fs, layout);
    try {
      await dropCaches();
      return await sh('iozone', [...iozoneArgs, '-f', join(dir, 'iozone.tmp'), '-R', '-b', xls], { cwd: fs.mountpoint });
    } finally {
      await teardown();
    }
  });
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exitCode = 1;
});
