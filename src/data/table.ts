/** Terminal columns a string takes: East Asian wide and full-width characters take two. */
export function displayWidth(text: string): number {
  let w = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    const wide =
      (cp >= 0x1100 && cp <= 0x115f) ||
      (cp >= 0x2e80 && cp <= 0xa4cf) ||
      (cp >= 0xac00 && cp <= 0xd7a3) ||
      (cp >= 0xf900 && cp <= 0xfaff) ||
      (cp >= 0xfe30 && cp <= 0xfe4f) ||
      (cp >= 0xff00 && cp <= 0xff60) ||
      (cp >= 0xffe0 && cp <= 0xffe6) ||
      (cp >= 0x20000 && cp <= 0x3fffd);
    w += wide ? 2 : 1;
  }
  return w;
}

/**
 * The one table formatter: aligned columns for the terminal (numeric-looking cells
 * right-aligned, numbers with thousands separators), or a markdown table (cells as given).
 */
export function formatTable(header: string[], rows: (string | number)[][], style: 'aligned' | 'markdown' = 'aligned'): string {
  if (style === 'markdown') {
    const line = (r: (string | number)[]) => `| ${r.join(' | ')} |`;
    return [line(header), `|${header.map(() => '---').join('|')}|`, ...rows.map(line)].join('\n');
  }
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? c.toLocaleString('en-US') : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => displayWidth(r[i] ?? ''))));
  const line = (r: string[]) =>
    r
      .map((c, i) => {
        const pad = ' '.repeat(widths[i] - displayWidth(c));
        return /^[\d,.]+$/.test(c) && i > 0 ? pad + c : c + pad;
      })
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(cells[0]), rule, ...cells.slice(1).map(line)].join('\n');
}
