// Dataset statistics per stage and source (records, characters, tokens, mean length), as the
// per-stage tables of Qilin-Med's ChiMed, and their printing as an aligned text table.
import { codePointLength } from './records.js';

export interface SourceStats {
  records: number;
  chars: number;
  tokens: number;
  meanChars: number;
  meanTokens: number;
}

export interface StageStats {
  sources: Record<string, SourceStats>;
  total: SourceStats;
}

export type DatasetStats = Record<string, StageStats>;

/** Counts tokens of a text; until a tokenizer is trained, characters (code points). */
export type CountTokens = (text: string) => number;

const empty = (): SourceStats => ({ records: 0, chars: 0, tokens: 0, meanChars: 0, meanTokens: 0 });

export class StatsCollector {
  private stages = new Map<string, Map<string, SourceStats>>();

  constructor(private readonly countTokens: CountTokens = codePointLength) {}

  /** Registers a stage/source with no records yet, so it shows up with zeros. */
  touch(stage: string, source?: string): void {
    let st = this.stages.get(stage);
    if (!st) this.stages.set(stage, (st = new Map()));
    if (source !== undefined && !st.has(source)) st.set(source, empty());
  }

  add(stage: string, source: string, text: string): void {
    this.touch(stage, source);
    const s = this.stages.get(stage)!.get(source)!;
    s.records++;
    s.chars += codePointLength(text);
    s.tokens += this.countTokens(text);
  }

  result(): DatasetStats {
    const out: DatasetStats = {};
    const withMeans = (s: SourceStats): SourceStats => ({
      ...s,
      meanChars: s.records ? +(s.chars / s.records).toFixed(1) : 0,
      meanTokens: s.records ? +(s.tokens / s.records).toFixed(1) : 0,
    });
    for (const [stage, sources] of this.stages) {
      const total = empty();
      const per: Record<string, SourceStats> = {};
      for (const [name, s] of sources) {
        per[name] = withMeans(s);
        total.records += s.records;
        total.chars += s.chars;
        total.tokens += s.tokens;
      }
      out[stage] = { sources: per, total: withMeans(total) };
    }
    return out;
  }
}

/** Terminal columns a string takes: East Asian wide and full-width characters take two. */
export function displayWidth(text: string): number {
  let w = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    const wide =
      (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) || (cp >= 0xac00 && cp <= 0xd7a3) ||
      (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
      (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x20000 && cp <= 0x3fffd);
    w += wide ? 2 : 1;
  }
  return w;
}

/** An aligned table; numeric-looking cells are right-aligned. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
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

/** The per-stage, per-source table printed by `chimed data build` and `chimed data stats`. */
export function formatStatsTable(stats: DatasetStats): string {
  const rows: (string | number)[][] = [];
  for (const [stage, st] of Object.entries(stats)) {
    for (const [source, s] of Object.entries(st.sources)) rows.push([stage, source, s.records, s.chars, s.tokens, s.meanTokens]);
    if (Object.keys(st.sources).length > 1) rows.push([stage, '(total)', st.total.records, st.total.chars, st.total.tokens, st.total.meanTokens]);
  }
  return formatTable(['stage', 'source', 'records', 'chars', 'tokens', 'mean tokens'], rows);
}
