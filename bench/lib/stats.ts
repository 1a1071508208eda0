// The few statistics the benchmarks report: the median of the trials and their spread.

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  /** (max - min) / median, in percent: how far apart the trials were. */
  spreadPct: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function summarize(xs: readonly number[]): Summary {
  const m = median(xs);
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  return { n: xs.length, median: m, min, max, spreadPct: m > 0 ? ((max - min) / m) * 100 : NaN };
}

/** Geometric mean of positive values (the mean that suits ratios); zeros and NaN are skipped. */
export function geomean(xs: readonly number[]): number {
  const ok = xs.filter((x) => x > 0 && Number.isFinite(x));
  if (ok.length === 0) return NaN;
  return Math.exp(ok.reduce((a, x) => a + Math.log(x), 0) / ok.length);
}

/** A number with about three significant digits. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
}

/** "median (min-max)". */
export function fmtSummary(s: Summary, unit = ''): string {
  return `${fmt(s.median)}${unit} (${fmt(s.min)}-${fmt(s.max)})`;
}

/** A ratio as "1.23x". */
export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}x` : 'n/a';
}
