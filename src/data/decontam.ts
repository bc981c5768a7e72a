// Decontamination: training records that reproduce evaluation items are found by character
// n-gram overlap and dropped or flagged. An evaluation item is split into probe segments
// (an MCQ's question and each option; a dialogue's user turns; ...) and each segment into
// n-grams that never cross segment borders, so option order or "A." markup in the training
// text does not matter. A record overlaps an item when it contains at least `threshold` of
// the item's n-grams. Segments shorter than n count as one n-gram of their own length;
// segments shorter than minChars (option "4种") carry too little signal and are skipped.
import type { Tagged } from './records.js';
import { forEachNgramHash, normaliseText } from './textnorm.js';

export interface DecontamOptions {
  /** Character n-gram size (after normalisation). */
  ngram: number;
  /** Share of an item's n-grams a training record must contain to count as overlapping. */
  threshold: number;
  /** Segments shorter than this (normalised characters) are not probed. */
  minChars: number;
  action: 'drop' | 'flag';
}

export const DECONTAM_DEFAULTS: DecontamOptions = { ngram: 10, threshold: 0.5, minChars: 6, action: 'drop' };

/** The parts of an evaluation record whose reappearance in training data is contamination. */
export function probeSegments(t: Tagged): string[] {
  switch (t.kind) {
    case 'mcq':
      return [t.record.question, ...Object.values(t.record.options)];
    case 'conversation':
      return t.record.messages.filter((m) => m.role === 'user').map((m) => m.content);
    case 'preference':
      return t.record.prompt.filter((m) => m.role === 'user').map((m) => m.content);
    case 'ner':
    case 'document':
      return [t.record.text];
  }
}

export interface EvalItemRef {
  evalSet: string;
  id: string;
}

export interface Overlap extends EvalItemRef {
  /** Share of the item's n-grams found in the training record. */
  overlap: number;
}

export class Decontaminator {
  readonly opts: DecontamOptions;
  private items: (EvalItemRef & { grams: number })[] = [];
  /** (gram length, hash) -> items containing it */
  private index = new Map<number, Map<number, number | number[]>>();
  skippedItems = 0;

  constructor(opts: Partial<DecontamOptions> = {}) {
    this.opts = { ...DECONTAM_DEFAULTS, ...opts };
  }

  get itemCount(): number {
    return this.items.length;
  }

  /** Grams of one text, grouped by gram length (segments shorter than n hash whole). */
  private gramsOf(segments: string[]): Map<number, Set<number>> {
    const out = new Map<number, Set<number>>();
    for (const seg of segments) {
      const norm = normaliseText(seg);
      if (norm.length < this.opts.minChars) continue;
      const len = Math.min(norm.length, this.opts.ngram);
      let set = out.get(len);
      if (!set) out.set(len, (set = new Set()));
      forEachNgramHash(norm, len, (h) => set!.add(h));
    }
    return out;
  }

  /** Indexes an evaluation item; returns false when it has no segment long enough to probe. */
  addEvalItem(evalSet: string, t: Tagged): boolean {
    const grams = this.gramsOf(probeSegments(t));
    let total = 0;
    for (const s of grams.values()) total += s.size;
    if (total === 0) {
      this.skippedItems++;
      return false;
    }
    const item = this.items.length;
    this.items.push({ evalSet, id: t.record.id, grams: total });
    for (const [len, set] of grams) {
      let m = this.index.get(len);
      if (!m) this.index.set(len, (m = new Map()));
      for (const h of set) {
        const prev = m.get(h);
        if (prev === undefined) m.set(h, item);
        else if (typeof prev === 'number') {
          if (prev !== item) m.set(h, [prev, item]);
        } else if (prev[prev.length - 1] !== item) prev.push(item);
      }
    }
    return true;
  }

  /** Evaluation items the text overlaps at or above the threshold, most overlapping first. */
  check(text: string): Overlap[] {
    if (!this.items.length) return [];
    const norm = normaliseText(text);
    const hits = new Map<number, number>();
    for (const [len, m] of this.index) {
      const seen = new Set<number>();
      forEachNgramHash(norm, len, (h) => {
        if (seen.has(h)) return;
        seen.add(h);
        const v = m.get(h);
        if (v === undefined) return;
        for (const item of typeof v === 'number' ? [v] : v) hits.set(item, (hits.get(item) ?? 0) + 1);
      });
    }
    const out: Overlap[] = [];
    for (const [item, count] of hits) {
      const it = this.items[item];
      const overlap = count / it.grams;
      if (overlap >= this.opts.threshold) out.push({ evalSet: it.evalSet, id: it.id, overlap });
    }
    return out.sort((a, b) => b.overlap - a.overlap);
  }
}

export interface DecontamSourceReport {
  checked: number;
  overlapping: number;
  dropped: number;
  flagged: number;
}

export interface DecontamReport {
  options: DecontamOptions;
  evalItems: number;
  evalItemsTooShort: number;
  /** stage -> source -> counts */
  stages: Record<string, Record<string, DecontamSourceReport>>;
  /** eval set -> number of its items found in training data */
  evalSetsHit: Record<string, number>;
  matches: { stage: string; source: string; id: string; evalSet: string; evalId: string; overlap: number }[];
}

const MAX_LISTED_MATCHES = 1000;

/** A flagged record keeps its data; meta.contamination lists the evaluation items it overlaps. */
export function flagContamination<T extends Tagged>(t: T, hits: Overlap[]): T {
  const contamination = hits.map((h) => ({ evalSet: h.evalSet, id: h.id, overlap: +h.overlap.toFixed(3) }));
  return { ...t, record: { ...t.record, meta: { ...t.record.meta, contamination } } };
}

/** Decontaminator plus the bookkeeping for decontam_report.json. */
export class DecontamTracker {
  private report: DecontamReport;
  private itemsHit = new Set<string>();

  constructor(readonly decontam: Decontaminator) {
    this.report = { options: decontam.opts, evalItems: 0, evalItemsTooShort: 0, stages: {}, evalSetsHit: {}, matches: [] };
  }

  /**
   * Checks a training record. Returns the evaluation items it overlaps (empty when clean)
   * and whether the configured action drops it; with 'flag' the caller keeps and marks it.
   */
  check(stage: string, t: Tagged, text: string): { drop: boolean; hits: Overlap[] } {
    const st = (this.report.stages[stage] ??= {});
    const src = (st[t.record.source] ??= { checked: 0, overlapping: 0, dropped: 0, flagged: 0 });
    src.checked++;
    const hits = this.decontam.check(text);
    if (!hits.length) return { drop: false, hits };
    src.overlapping++;
    for (const h of hits) {
      const key = `${h.evalSet}\u0000${h.id}`;
      if (!this.itemsHit.has(key)) {
        this.itemsHit.add(key);
        this.report.evalSetsHit[h.evalSet] = (this.report.evalSetsHit[h.evalSet] ?? 0) + 1;
      }
      if (this.report.matches.length < MAX_LISTED_MATCHES) {
        this.report.matches.push({ stage, source: t.record.source, id: t.record.id, evalSet: h.evalSet, evalId: h.id, overlap: +h.overlap.toFixed(3) });
      }
    }
    const drop = this.decontam.opts.action === 'drop';
    if (drop) src.dropped++;
    else src.flagged++;
    return { drop, hits };
  }

  result(): DecontamReport {
    return { ...this.report, evalItems: this.decontam.itemCount, evalItemsTooShort: this.decontam.skippedItems };
  }
}
