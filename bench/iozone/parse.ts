// Reading IOzone's report: with -R, IOzone prints one table per test after its run, in
// the layout of the Excel file that -b writes:
//
//   "Writer report"
//           "4"  "8"  "16"  ...            <- record sizes (KiB)
//   "4"   1234                             <- file size (KiB), then KiB/s per record size
//   "32768"   0  0  0  0  758519 ...       <- 0 = not run (auto mode skips small records on big files)

/** The six tests of `-i 0 -i 1 -i 2`, in IOzone's order. */
export const TESTS = [
  { key: 'write', report: 'Writer report', title: 'Write' },
  { key: 'rewrite', report: 'Re-writer report', title: 'Re-write' },
  { key: 'read', report: 'Reader report', title: 'Read' },
  { key: 'reread', report: 'Re-Reader report', title: 'Re-read' },
  { key: 'randread', report: 'Random read report', title: 'Random read' },
  { key: 'randwrite', report: 'Random write report', title: 'Random write' },
] as const;

export type TestKey = (typeof TESTS)[number]['key'];

/** KiB/s by file size (KiB) and record size (KiB): cells[fileKB][recKB]. */
export type Cells = Record<number, Record<number, number>>;

export type IozoneReport = Record<TestKey, Cells>;

const unquote = (s: string) => s.replace(/^"|"$/g, '');

/** Parses IOzone's -R output; throws when a test's table is missing (the run failed part way). */
export function parseIozone(text: string): IozoneReport {
  const lines = text.split('\n');
  const out = {} as IozoneReport;
  for (const t of TESTS) {
    const at = lines.findIndex((l) => l.trim() === `"${t.report}"`);
    if (at < 0) throw new Error(`IOzone output has no "${t.report}" table`);
    const recs = lines[at + 1]!.trim().split(/\s+/).map((s) => Number(unquote(s)));
    const cells: Cells = {};
    for (let i = at + 2; i < lines.length; i++) {
      const parts = lines[i]!.trim().split(/\s+/);
      if (!parts[0] || !/^"\d+"$/.test(parts[0])) break;
      const fileKB = Number(unquote(parts[0]));
      const row: Record<number, number> = {};
      parts.slice(1).forEach((v, j) => {
        const kBps = Number(v);
        if (kBps > 0 && recs[j] !== undefined) row[recs[j]!] = kBps;
      });
      cells[fileKB] = row;
    }
    if (Object.keys(cells).length === 0) throw new Error(`IOzone's "${t.report}" table is empty`);
    out[t.key] = cells;
  }
  return out;
}
