// Markdown tables: the same text is printed on the terminal and committed in bench/results.

/** A GitHub-flavoured markdown table; numeric-looking columns are right-aligned and padded. */
export function markdownTable(headers: string[], rawRows: string[][]): string {
  // A "|" inside a cell would end it: escape it.
  const rows = rawRows.map((r) => r.map((c) => c.replace(/\|/g, '\\|')));
  const widths = headers.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => /^[\d.x%()\s/a-]*$/.test(r[i] ?? '') && /\d/.test(r[i] ?? '')));
  const cell = (s: string, i: number) => (numeric[i] ? s.padStart(widths[i]!) : s.padEnd(widths[i]!));
  const line = (cells: string[]) => `| ${cells.map(cell).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}
