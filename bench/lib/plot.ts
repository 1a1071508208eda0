// Line plots as PNG through Debian's gnuplot (gnuplot-nox has the pngcairo terminal).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh } from './sys.js';

export interface Series {
  name: string;
  /** [x, y] points, in x order; NaN y values are left out. */
  points: Array<[number, number]>;
}

export interface LinePlot {
  title: string;
  xlabel: string;
  ylabel: string;
  logx?: boolean;
  logy?: boolean;
  /** Tick labels for x values (e.g. 4096 -> "4M"). */
  xtics?: Array<[number, string]>;
  series: Series[];
}

const q = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** Draws `plot` into the PNG file `out` (one line with points per series). */
export async function plotPng(plot: LinePlot, out: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tslayer-plot-'));
  try {
    const files: string[] = [];
    for (const [i, s] of plot.series.entries()) {
      const f = join(dir, `s${i}.dat`);
      await writeFile(f, s.points.filter(([, y]) => Number.isFinite(y) && y > 0).map(([x, y]) => `${x} ${y}`).join('\n') + '\n');
      files.push(f);
    }
    const script = [
      `set terminal pngcairo size 1000,620 enhanced font "sans,10"`,
      `set output ${q(out)}`,
      `set title ${q(plot.title)}`,
      `set xlabel ${q(plot.xlabel)}`,
      `set ylabel ${q(plot.ylabel)}`,
      plot.logx ? 'set logscale x 2' : '',
      plot.logy ? 'set logscale y 10' : '',
      // A margin around the data, so the end points and their tick labels are not on the border.
      plot.xtics?.length ? `set xrange [${plot.xtics[0]![0] / 1.4}:${plot.xtics.at(-1)![0] * 1.4}]` : '',
      plot.xtics ? `set xtics (${plot.xtics.map(([v, l]) => `${q(l)} ${v}`).join(', ')})` : '',
      'set grid',
      'set key outside right top',
      `plot ${plot.series.map((s, i) => `${q(files[i]!)} using 1:2 with linespoints lw 2 pt ${i + 5} title ${q(s.name)}`).join(', ')}`,
      '',
    ].join('\n');
    await writeFile(join(dir, 'plot.gp'), script);
    await sh('gnuplot', [join(dir, 'plot.gp')]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
