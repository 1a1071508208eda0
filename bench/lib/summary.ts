/**
 * Puts the parts' results together: the headline table (tslayer against the best peer for
 * pull, mount, commit and remove; each driver's IOzone ratio to its bare filesystem;
 * copy-up per driver) in bench/results/summary.md and between the results markers of
 * bench/README.md; prints it.
 *
 *   node dist/bench/lib/summary.js [--mode quick|full] [--parts RAW/parts.tsv]
 *
 * Reads what the parts left in bench/results: iozone.json and ops.json (this folder's
 * benchmarks), copyup.json (bench/copyup.ts), and pull.txt and commit.txt (the stdout of
 * bench/pull/run.ts and bench/commit/run.ts, which bench/run captures) and
 * commit-buildah.json (bench/ops/commit-buildah.ts). A part that is
 * missing is listed as not measured, never silently left out.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeMachine, REPO_DIR, RESULTS_DIR, writeResult } from './results.js';
import { fmt, fmtRatio, geomean } from './stats.js';
import { sh } from './sys.js';
import { markdownTable } from './table.js';

interface Timing {
  median: number;
  min: number;
  max: number;
}

const read = async (name: string) => {
  const p = join(RESULTS_DIR, name);
  return existsSync(p) ? readFile(p, 'utf8') : undefined;
};

/** bench/pull/run.ts prints "tool  median  min  max  vs tslayer" rows (seconds). */
export function parsePull(text: string): Record<string, Timing> {
  const out: Record<string, Timing> = {};
  for (const m of text.matchAll(/^(\S+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)/gm)) out[m[1]!] = { median: +m[2]!, min: +m[3]!, max: +m[4]! };
  return out;
}

/** bench/commit/run.ts prints "tool median X  min Y  max Z" rows (seconds). */
export function parseCommit(text: string): Record<string, Timing> {
  const out: Record<string, Timing> = {};
  for (const m of text.matchAll(/^(\S+)\s+median (\d+\.\d+)\s+min (\d+\.\d+)\s+max (\d+\.\d+)/gm)) out[m[1]!] = { median: +m[2]!, min: +m[3]!, max: +m[4]! };
  return out;
}

interface Row {
  op: string;
  unit: string;
  tools: Record<string, Timing>;
  /** Tools that are not peers (e.g. the raw floor). */
  notPeers?: string[];
  note?: string;
}

function opRow(r: Row): string[] {
  const ts = r.tools.tslayer;
  const peers = Object.entries(r.tools).filter(([n]) => n !== 'tslayer' && !r.notPeers?.includes(n));
  const best = peers.sort((a, b) => a[1].median - b[1].median)[0];
  const cell = (t: Timing) => `${fmt(t.median)} (${fmt(t.min)}-${fmt(t.max)})`;
  return [
    r.op,
    ts ? cell(ts) : 'not measured',
    best ? `${best[0]} ${cell(best[1])}` : 'not measured',
    ts && best ? `**${fmtRatio(ts.median / best[1].median)}**` : 'n/a',
    peers.concat(Object.entries(r.tools).filter(([n]) => r.notPeers?.includes(n))).map(([n, t]) => `${n} ${fmt(t.median)}`).join(', ') + (r.note ? `; ${r.note}` : ''),
  ];
}

/** A row of bench/results/copyup.json (bench/copyup.ts); meta, fsText and a null prepare came with the metadata-only change. */
interface CopyupRow {
  name: string;
  fs: string;
  fsText?: string;
  write: Timing;
  meta?: Timing;
  prepare: Timing | null;
}

function copyupRow(c: CopyupRow): string[] {
  const cell = (t: Timing | null | undefined) => (t ? `${fmt(t.median)} (${fmt(t.min)}-${fmt(t.max)})` : '—');
  return [c.fs === 'dm-vm' ? `${c.name} †` : c.name, c.fsText ?? c.fs, cell(c.write), c.meta ? cell(c.meta) : 'not measured', c.prepare ? fmt(c.prepare.median) : '—'];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const mode = argv.includes('--mode') ? argv[argv.indexOf('--mode') + 1] : 'quick';
  const partsFile = argv.includes('--parts') ? argv[argv.indexOf('--parts') + 1] : undefined;
  const gaps: string[] = [];

  // --- operations against peers
  const rows: Row[] = [];
  const pull = await read('pull.txt');
  if (pull) rows.push({ op: 'pull (s)', unit: 's', tools: parsePull(pull), notPeers: ['floor'], note: 'floor = curl | gzip -d | tar -x, not a peer' });
  else gaps.push('pull: no bench/results/pull.txt (bench/pull/run.ts did not run or failed)');
  const ops = await read('ops.json');
  const opsJson = ops ? JSON.parse(ops) : undefined;
  if (opsJson) {
    const names: Record<string, string> = { list: 'list images (ms)', mount3: 'mount, 3 layers (ms)', mount100: 'mount, 100 layers (ms)', rmi: 'remove image (s)' };
    for (const op of ['mount3', 'mount100', 'rmi', 'list']) {
      const s = opsJson.summary[op];
      if (s) rows.push({ op: names[op]!, unit: '', tools: s, note: op === 'rmi' && opsJson.notes?.length ? 'caveat below' : undefined });
    }
    for (const n of opsJson.notes ?? []) gaps.push(n);
  } else gaps.push('mount/remove: no bench/results/ops.json (bench/ops/run.ts did not run or failed)');
  const commit = await read('commit.txt');
  if (commit) {
    const c = parseCommit(commit);
    // buildah: from bench/commit/run.ts if it gains it, else from bench/ops/commit-buildah.ts (same change, same clock).
    const ba = await read('commit-buildah.json');
    if (!c.buildah && ba) c.buildah = JSON.parse(ba).summary;
    rows.splice(1, 0, { op: 'commit 10 000 files + 100 MB (s)', unit: 's', tools: c });
    if (!c.buildah) gaps.push('commit: buildah commit not measured (no bench/results/commit-buildah.json)');
  } else gaps.push('commit: no bench/results/commit.txt (bench/commit/run.ts did not run or failed)');

  // --- IOzone
  const ioz = await read('iozone.json');
  const iozJson = ioz ? JSON.parse(ioz) : undefined;
  const iozRows: string[][] = [];
  if (iozJson) {
    const tests = ['write', 'rewrite', 'read', 'reread', 'randread', 'randwrite'];
    for (const r of iozJson.ratios as Array<{ target: string; baseline: string; tests: Record<string, { all: number; large: number }> }>) {
      iozRows.push([
        `${r.target} / ${r.baseline}`,
        ...tests.map((t) => fmtRatio(r.tests[t]!.all)),
        fmtRatio(geomean(tests.map((t) => r.tests[t]!.all))),
        fmtRatio(geomean(tests.map((t) => r.tests[t]!.large))),
      ]);
    }
    for (const g of iozJson.gaps ?? []) gaps.push(`IOzone: ${g}`);
  } else gaps.push('IOzone: no bench/results/iozone.json (bench/iozone/run.ts did not run or failed)');

  // --- copy-up
  const cu = await read('copyup.json');
  const cuJson = cu ? (JSON.parse(cu) as CopyupRow[]) : undefined;
  if (!cuJson) gaps.push('copy-up: no bench/results/copyup.json (bench/copyup.ts did not run or failed)');
  else {
    if (!cuJson.some((c) => c.name.startsWith('devmapper'))) gaps.push('copy-up: no devmapper figure (the dm VM was not available, see results/copyup.md)');
    if (cuJson.some((c) => !c.meta)) gaps.push('copy-up: no metadata-only (chmod) figures in bench/results/copyup.json (written by an older bench/copyup.ts)');
  }

  // Which code was measured: the tree's commit, and whether it had uncommitted changes.
  const head = await sh('git', ['-C', REPO_DIR, 'rev-parse', '--short', 'HEAD']).then((x) => x.trim(), () => 'unknown');
  const dirty = await sh('git', ['-C', REPO_DIR, 'status', '--porcelain', '--untracked-files=no', '--', 'src', 'native', 'bin', 'bench', ':!bench/results', ':!bench/README.md']).then(
    (x) => x.trim() !== '',
    () => false,
  );
  const parts = partsFile && existsSync(partsFile) ? (await readFile(partsFile, 'utf8')).trim().split('\n').map((l) => l.split('\t')) : [];

  const md = [
    `## Latest results (${mode} mode)`,
    '',
    ...(await describeMachine()),
    `- Code: tslayer at commit ${head}${dirty ? ' with uncommitted changes' : ''}`,
    ...(parts.length
      ? [
          '- Parts run (exit status, seconds, 1-min load average at the start-end of the part): ' +
            parts.map(([p, st, sec, l0, l1]) => `${p} ${st}, ${sec} s, load ${l0 ?? '?'}-${l1 ?? '?'}`).join('; '),
        ]
      : []),
    '',
    '### tslayer against the best peer',
    '',
    'Median (min-max) over the trials; ratio = tslayer\'s median over the best peer\'s (below 1: tslayer is faster).',
    '',
    markdownTable(['operation', 'tslayer', 'best peer', 'tslayer / best', 'all peers (median)'], rows.map(opRow)),
    '',
    '### IOzone: each driver against its bare filesystem',
    '',
    'Throughput ratio: per run, the geometric mean over every (file size, record size) cell of the target\'s throughput over ' +
      'the baseline\'s median; the median of the runs. 1.00x = as fast as bare; "all six" is the geometric mean of the six tests. ' +
      'Details, spread and plots: [iozone.md](results/iozone.md).',
    '',
    iozRows.length
      ? markdownTable(['target / baseline', 'Write', 'Re-write', 'Read', 'Re-read', 'Random read', 'Random write', 'all six', 'all six, files ≥ 1 MiB'], iozRows)
      : '_not measured_',
    '',
    '### Copy-up: one-byte write and metadata-only change of a 1 GiB lower-layer file',
    '',
    'Each change in a fresh child snapshot of the committed file, cache dropped: write = open(O_WRONLY) + 1 byte + fsync; ' +
      'metadata only = chmod + fsync. Median (min-max) ms. Details: [copyup.md](results/copyup.md).',
    '',
    cuJson ? markdownTable(['driver', 'filesystem', 'write incl. copy-up (ms)', 'metadata only: chmod (ms)', 'prepare of the child (ms)'], cuJson.map(copyupRow)) : '_not measured_',
    ...(cuJson?.some((c) => c.fs === 'dm-vm')
      ? [
          '',
          '† measured inside the device-mapper VM (user-mode Linux; this host\'s kernel has no device-mapper): not comparable with ' +
            'the host rows; compare devmapper with bare-vm, the same changes on the VM\'s bare disk, where nothing is copied.',
        ]
      : []),
    '',
    '### Not measured / caveats',
    '',
    ...(gaps.length ? gaps.map((g) => `- ${g}`) : ['- none']),
    '',
    'Per part: [pull.txt](results/pull.txt), [commit.txt](results/commit.txt), [commit-buildah.md](results/commit-buildah.md), [ops.md](results/ops.md), [iozone.md](results/iozone.md), [copyup.md](results/copyup.md).',
    '',
  ].join('\n');

  // summary.md lives in results/, so its links drop the "results/" prefix.
  await writeResult('summary.md', `# tslayer benchmarks\n\n${md.replace(/\]\(results\//g, '](')}`);
  const readme = join(REPO_DIR, 'bench', 'README.md');
  if (existsSync(readme)) {
    const text = await readFile(readme, 'utf8');
    const start = '<!-- results:start -->';
    const end = '<!-- results:end -->';
    const a = text.indexOf(start);
    const b = text.indexOf(end);
    if (a >= 0 && b > a) await writeFile(readme, `${text.slice(0, a + start.length)}\n${md}${text.slice(b)}`);
  }
  process.stdout.write(md);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exitCode = 1;
});
