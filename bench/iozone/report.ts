// From IOzone runs to what the issue asks for: per target and test, the median of the
// runs in every (file size, record size) cell; one PNG per test (throughput against file
// size, one line per target); and a table of each target's ratio to its bare baseline.
import { join } from 'node:path';
import { plotPng } from '../lib/plot.js';
import { fmt, fmtRatio, geomean, median } from '../lib/stats.js';
import { markdownTable } from '../lib/table.js';
import { TESTS, type Cells, type IozoneReport, type TestKey } from './parse.js';
import type { Target } from './targets.js';

/** Per-cell medians over the runs of one target. */
export function medianReport(runs: IozoneReport[]): IozoneReport {
  const out = {} as IozoneReport;
  for (const t of TESTS) {
    const cells: Cells = {};
    for (const fileKB of new Set(runs.flatMap((r) => Object.keys(r[t.key]).map(Number)))) {
      const row: Record<number, number> = {};
      for (const recKB of new Set(runs.flatMap((r) => Object.keys(r[t.key][fileKB] ?? {}).map(Number)))) {
        const xs = runs.map((r) => r[t.key][fileKB]?.[recKB]).filter((x): x is number => x !== undefined);
        row[recKB] = median(xs);
      }
      cells[fileKB] = row;
    }
    out[t.key] = cells;
  }
  return out;
}

/** Geometric mean over the cells both reports have of a's value over b's. */
export function cellRatio(a: Cells, b: Cells, minFileKB = 0): number {
  const rs: number[] = [];
  for (const [f, row] of Object.entries(a)) {
    if (Number(f) < minFileKB) continue;
    for (const [r, v] of Object.entries(row)) {
      const w = b[Number(f)]?.[Number(r)];
      if (w) rs.push(v / w);
    }
  }
  return geomean(rs);
}

/** Throughput per file size: the geometric mean over the record sizes tested (KiB/s). */
export function bySize(cells: Cells): Array<[number, number]> {
  return Object.entries(cells)
    .map(([f, row]) => [Number(f), geomean(Object.values(row))] as [number, number])
    .sort((x, y) => x[0] - y[0]);
}

const sizeLabel = (kb: number) => (kb >= 1 << 20 ? `${kb >> 20}G` : kb >= 1024 ? `${kb >> 10}M` : `${kb}K`);

export interface TargetResult {
  target: Target;
  runs: IozoneReport[];
  median: IozoneReport;
}

/** Ratio of each run to the baseline's medians, for the spread column. */
function runRatios(r: TargetResult, base: TargetResult, test: TestKey, minFileKB: number): number[] {
  return r.runs.map((run) => cellRatio(run[test], base.median[test], minFileKB));
}

/** Large files only: at and above this size the page cache, timer resolution and per-call costs stop dominating. */
export const LARGE_KB = 1024;

export interface RatioRow {
  target: string;
  baseline: string;
  /** test -> median over the runs of each run's ratio: all sizes, files >= LARGE_KB; and the runs' range (all sizes) */
  tests: Record<TestKey, { all: number; large: number; min: number; max: number }>;
}

export function ratios(results: TargetResult[]): RatioRow[] {
  const byName = new Map(results.map((r) => [r.target.name, r]));
  const rows: RatioRow[] = [];
  for (const r of results) {
    const base = r.target.baseline ? byName.get(r.target.baseline) : undefined;
    if (!base) continue;
    const tests = {} as RatioRow['tests'];
    for (const t of TESTS) {
      // Each run's ratio to the baseline's medians; the figure is their median, so the
      // range printed beside it always holds it.
      const per = runRatios(r, base, t.key, 0);
      tests[t.key] = {
        all: median(per),
        large: median(runRatios(r, base, t.key, LARGE_KB)),
        min: Math.min(...per),
        max: Math.max(...per),
      };
    }
    rows.push({ target: r.target.name, baseline: base.target.name, tests });
  }
  return rows;
}

/**
 * The ratio table (markdown). 'all': geometric mean over every cell, with the range of
 * the single runs' ratios; 'large': over files of LARGE_KB and more only.
 */
export function ratioTable(rows: RatioRow[], which: 'all' | 'large'): string {
  const headers = ['target / baseline', ...TESTS.map((t) => t.title)];
  const body = rows.map((row) => [
    `${row.target} / ${row.baseline}`,
    ...TESTS.map((t) => {
      const x = row.tests[t.key];
      return which === 'all' ? `${fmtRatio(x.all)} (${x.min.toFixed(2)}-${x.max.toFixed(2)})` : fmtRatio(x.large);
    }),
  ]);
  return markdownTable(headers, body);
}

/** Median throughput (MB/s, geometric mean over record sizes) at the largest file size run. */
export function largestTable(results: TargetResult[]): string {
  const headers = ['target', 'file size', ...TESTS.map((t) => `${t.title} MB/s`)];
  const body = results.map((r) => {
    const sizes = Object.keys(r.median.write).map(Number);
    const top = Math.max(...sizes);
    return [
      r.target.name,
      sizeLabel(top),
      ...TESTS.map((t) => fmt((geomean(Object.values(r.median[t.key][top] ?? {})) * 1024) / 1e6)),
    ];
  });
  return markdownTable(headers, body);
}

/** One PNG per test in `dir`; returns their file names. */
export async function plots(results: TargetResult[], dir: string, note: string): Promise<string[]> {
  const names: string[] = [];
  for (const t of TESTS) {
    const sizes = [...new Set(results.flatMap((r) => Object.keys(r.median[t.key]).map(Number)))].sort((a, b) => a - b);
    const name = `iozone-${t.key}.png`;
    await plotPng(
      {
        title: `IOzone ${t.title} (-e: flush included), median of runs, ${note}`,
        xlabel: 'file size',
        ylabel: 'MB/s (geometric mean over record sizes)',
        logx: true,
        logy: true,
        xtics: sizes.map((s) => [s, sizeLabel(s)]),
        series: results.map((r) => ({ name: r.target.name, points: bySize(r.median[t.key]).map(([f, v]) => [f, (v * 1024) / 1e6]) })),
      },
      join(dir, name),
    );
    names.push(name);
  }
  return names;
}
