// Decontamination: training records that reproduce evaluation items are found by character
// n-gram overlap and dropped or flagged. An evaluation item is split into probe segments
// (an MCQ's question and each option; a dialogue's user turns; ...) and each segment into
// n-grams that never cross segment borders, so option order or "A." markup in the training
// text does not matter. A record overlaps an item when it contains at least `threshold` of
// the item's n-grams. Segments shorter than n count as one n-gram of their own length;
// segments shorter than minChars (option "4种") carry too little signal and are skipped.
// The first segment (the question, the first user turn) is the anchor: it must itself reach
// the threshold, so common option texts ("促肾上腺皮质激素") alone never make a match.
import type { Tagged } from './records.js';
import { ngramHashes, normaliseText, uniqueSorted } from './textnorm.js';

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
  private items: (EvalItemRef & { grams: number; anchorGrams: number })[] = [];
  /** (gram length, hash) -> entries item * 2 + (1 when the gram is in the item's anchor) */
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
      for (const h of ngramHashes(norm, len)) set.add(h);
    }
    return out;
  }

  /** Indexes an evaluation item; returns false when it has no segment long enough to probe. */
  addEvalItem(evalSet: string, t: Tagged): boolean {
    const [anchorSeg, ...rest] = probeSegments(t);
    const anchor = this.gramsOf([anchorSeg]);
    const others = this.gramsOf(rest);
    let anchorGrams = 0;
    let total = 0;
    for (const [len, set] of anchor) {
      anchorGrams += set.size;
      for (const h of set) others.get(len)?.delete(h);
    }
    for (const set of others.values()) total += set.size;
    total += anchorGrams;
    if (anchorGrams === 0) {
      this.skippedItems++;
      return false;
    }
    const item = this.items.length;
    this.items.push({ evalSet, id: t.record.id, grams: total, anchorGrams });
    const index = (grams: Map<number, Set<number>>, entry: number) => {
      for (const [len, set] of grams) {
        let m = this.index.get(len);
        if (!m) this.index.set(len, (m = new Map()));
        for (const h of set) {
          const prev = m.get(h);
          if (prev === undefined) m.set(h, entry);
          else if (typeof prev === 'number') m.set(h, [prev, entry]);
          else prev.push(entry);
        }
      }
    };
    index(anchor, item * 2 + 1);
    index(others, item * 2);
    return true;
  }

  /** Evaluation items the text overlaps at or above the threshold, most overlapping first. */
  check(text: string): Overlap[] {
    if (!this.items.length) return [];
    const norm = normaliseText(text);
    const hits = new Map<number, number>();
    const anchorHits = new Map<number, number>();
    for (const [len, m] of this.index) {
      for (const h of uniqueSorted(ngramHashes(norm, len))) {
        const v = m.get(h);
        if (v === undefined) continue;
        for (const entry of typeof v === 'number' ? [v] : v) {
          const item = entry >> 1;
          hits.set(item, (hits.get(item) ?? 0) + 1);
          if (entry & 1) anchorHits.set(item, (anchorHits.get(item) ?? 0) + 1);
        }
      }
    }
    const out: Overlap[] = [];
    for (const [item, count] of hits) {
      const it = this.items[item];
      const overlap = count / it.grams;
      const anchorOverlap = (anchorHits.get(item) ?? 0) / it.anchorGrams;
      if (overlap >= this.opts.threshold && anchorOverlap >= this.opts.threshold) out.push({ evalSet: it.evalSet, id: it.id, overlap });
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
        this.report.matches.push({
          stage,
          source: t.record.source,
          id: t.record.id,
          evalSet: h.evalSet,
          evalId: h.id,
          overlap: +h.overlap.toFixed(3),
        });
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
