/**
 * Output for commands: data goes to stdout, either as a table for people or as exactly
 * one JSON document (--json) for programs. Nothing here writes to process.* directly:
 * the streams come from the context, so the CLI can run inside a library or a test.
 */

/** Where output goes; `color` was decided once for this stream (see colorEnabled). */
export interface Out {
  write(text: string): void;
  readonly isTTY: boolean;
  readonly color: boolean;
  /** Terminal width when known. */
  readonly columns: number | undefined;
}

/** The raw stream an Out wraps: process.stdout/stderr or anything with write(). */
export interface OutStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Colour per stream, by the common conventions: FORCE_COLOR (other than 0/false) forces
 * it on, FORCE_COLOR=0 or any NO_COLOR turns it off, otherwise only a terminal that is
 * not TERM=dumb gets colour.
 */
export function colorEnabled(stream: OutStream, env: NodeJS.ProcessEnv): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined && force !== '') return force !== '0' && force.toLowerCase() !== 'false';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

export function makeOut(stream: OutStream, env: NodeJS.ProcessEnv): Out {
  // `tslayer images | head -1`: the reader went away. Like other CLIs, stop writing
  // quietly instead of dying on an unhandled EPIPE with a stack trace.
  let closed = false;
  const emitter = stream as OutStream & { on?: (ev: 'error', fn: (e: NodeJS.ErrnoException) => void) => unknown };
  emitter.on?.('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    closed = true;
  });
  return {
    write: (text: string) => {
      if (!closed) stream.write(text);
    },
    isTTY: stream.isTTY === true,
    color: colorEnabled(stream, env),
    columns: stream.isTTY ? stream.columns : undefined,
  };
}

const SGR = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39] } as const;
export type Style = keyof typeof SGR;

/** `text` in `style` when `out` has colour, else unchanged. */
export function paint(out: Out, style: Style, text: string): string {
  if (!out.color) return text;
  const [on, off] = SGR[style];
  return `\x1b[${on}m${text}\x1b[${off}m`;
}

/** One JSON document on its own, pretty-printed, ending with a newline. */
export function writeJson(out: Out, value: unknown): void {
  out.write(JSON.stringify(value, null, 2) + '\n');
}

/**
 * A table as docker prints one: upper-case headers, columns separated by at least three
 * spaces, no borders. The header alone is printed for an empty table, so a person sees
 * that the command worked and found nothing.
 */
export function writeTable(out: Out, headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  out.write(paint(out, 'bold', line(headers)) + '\n');
  for (const r of rows) out.write(line(r) + '\n');
}

/** Bytes in SI units as docker shows image sizes: `0 B`, `812 B`, `4.26 MB`, `1.2 GB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  if (i === 0) return `${n} B`;
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${units[i]}`;
}

/** A time relative to `now`, as docker's CREATED column: `5 seconds ago`, `3 days ago`. */
export function formatAge(iso: string | undefined, now: Date = new Date()): string {
  if (!iso) return '';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now.getTime() - t) / 1000));
  const steps: Array<[number, string]> = [
    [60, 'second'],
    [60, 'minute'],
    [24, 'hour'],
    [30, 'day'],
    [12, 'month'],
    [Infinity, 'year'],
  ];
  if (s < 1) return 'less than a second ago';
  let v = s;
  for (const [size, unit] of steps) {
    if (v < size) return `${v} ${unit}${v === 1 ? '' : 's'} ago`;
    v = Math.floor(v / size);
  }
  return iso;
}

/** `sha256:` and the first 12 hex digits, as docker abbreviates ids. */
export function shortDigest(d: string): string {
  const colon = d.indexOf(':');
  return colon < 0 ? d.slice(0, 12) : d.slice(0, colon + 1 + 12);
}
