// Dataset statistics per stage and source (records, characters, tokens, mean length), as the
// per-stage tables of Qilin-Med's ChiMed, and their printing as an aligned text table.
import { codePointLength } from './records.js';
import { formatTable } from './table.js';

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

/** The per-stage, per-source table printed by `chimed data build` and `chimed data stats`. */
export function formatStatsTable(stats: DatasetStats): string {
  const rows: (string | number)[][] = [];
  for (const [stage, st] of Object.entries(stats)) {
    for (const [source, s] of Object.entries(st.sources)) rows.push([stage, source, s.records, s.chars, s.tokens, s.meanTokens]);
    if (Object.keys(st.sources).length > 1)
      rows.push([stage, '(total)', st.total.records, st.total.chars, st.total.tokens, st.total.meanTokens]);
  }
  return formatTable(['stage', 'source', 'records', 'chars', 'tokens', 'mean tokens'], rows);
}
