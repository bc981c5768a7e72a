// Record-level deduplication: exact duplicates by a hash of the normalised text, near
// duplicates by MinHash signatures over character n-grams with LSH banding (Broder 1997;
// Leskovec et al., Mining of Massive Datasets ch. 3), as Lee et al. 2022 do before their
// substring pass (suffixarray.ts). The first record of a duplicate set is kept. Memory grows
// with the number of kept records (a 96-bit hash each; numPerm x 4 bytes of signature each
// for near-dup), not with their size.
import { createHash } from 'node:crypto';
import { codePointLength, recordText, type Document, type Tagged } from './records.js';
import { removeRanges, repeatedRanges, type KeepPolicy } from './suffixarray.js';
import { ngramHashes, normaliseText, uniqueSorted } from './textnorm.js';

export interface NearDupOptions {
  /** Estimated Jaccard similarity of n-gram sets at or above which a record is a near duplicate. */
  threshold: number;
  /** Character n-gram size. */
  ngram: number;
  /** Number of hash functions in a signature. */
  numPerm: number;
  seed: number;
}

export const NEAR_DUP_DEFAULTS: NearDupOptions = { threshold: 0.85, ngram: 5, numPerm: 128, seed: 1 };

function exactKey(text: string): string {
  return createHash('sha1').update(normaliseText(text)).digest('base64').slice(0, 16);
}

/** Remembers normalised-text hashes; reports the id of the earlier identical record. */
export class ExactDeduper {
  private seen = new Map<string, string>();

  /** The id of an earlier record with the same normalised text, or undefined (then remembered). */
  check(id: string, text: string): string | undefined {
    const key = exactKey(text);
    const prev = this.seen.get(key);
    if (prev === undefined) this.seen.set(key, id);
    return prev;
  }
}

/** splitmix32-style generator for the hash family, so signatures are reproducible from a seed. */
function seededWords(seed: number, count: number): Uint32Array {
  const out = new Uint32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    out[i] = (z ^ (z >>> 16)) >>> 0;
  }
  return out;
}

/**
 * Bands x rows for LSH that minimise the equally weighted false-positive and false-negative
 * areas under the S-curve 1-(1-s^r)^b around the threshold (the choice datasketch makes).
 */
export function lshParams(threshold: number, numPerm: number): { bands: number; rows: number } {
  const integrate = (f: (s: number) => number, a: number, b: number) => {
    const steps = 200;
    const h = (b - a) / steps;
    let sum = (f(a) + f(b)) / 2;
    for (let i = 1; i < steps; i++) sum += f(a + i * h);
    return sum * h;
  };
  let best = { bands: 1, rows: numPerm, err: Infinity };
  for (let bands = 1; bands <= numPerm; bands++) {
    for (let rows = 1; bands * rows <= numPerm; rows++) {
      const p = (s: number) => 1 - (1 - s ** rows) ** bands;
      const fp = integrate(p, 0, threshold);
      const fn = integrate((s) => 1 - p(s), threshold, 1);
      if (fp + fn < best.err) best = { bands, rows, err: fp + fn };
    }
  }
  return { bands: best.bands, rows: best.rows };
}

/**
 * MinHash signatures: for each i, the minimum over the distinct n-gram hashes x of
 * h_i(x) = mix((x ^ b_i) * a_i) with a_i odd. Values are kept with the sign bit flipped in an
 * Int32Array, so the inner loop stays in 32-bit integer arithmetic; only equality of
 * signature entries is ever used.
 */
export class MinHasher {
  private a: Int32Array;
  private b: Int32Array;
  private grams: Uint32Array = new Uint32Array(4096);

  constructor(
    readonly numPerm: number,
    readonly ngram: number,
    seed = 1,
  ) {
    this.a = new Int32Array(seededWords(seed, numPerm).map((x) => x | 1));
    this.b = new Int32Array(seededWords(seed ^ 0x5bd1e995, numPerm));
  }

  /** Signature of an already normalised text. */
  signature(norm: string, out: Int32Array = new Int32Array(this.numPerm)): Int32Array {
    out.fill(0x7fffffff);
    const { a, b, numPerm } = this;
    const all = ngramHashes(norm, this.ngram, this.grams);
    if (all.buffer !== this.grams.buffer) this.grams = new Uint32Array(all.buffer);
    const grams = uniqueSorted(all);
    for (let g = 0; g < grams.length; g++) {
      const h = grams[g] | 0;
      for (let i = 0; i < numPerm; i++) {
        let v = Math.imul(h ^ b[i], a[i]);
        v = (v ^ (v >>> 15) ^ 0x80000000) | 0;
        if (v < out[i]) out[i] = v;
      }
    }
    return out;
  }
}

/** Share of equal positions: the MinHash estimate of Jaccard similarity. */
export function signatureSimilarity(x: Int32Array, y: Int32Array): number {
  let eq = 0;
  for (let i = 0; i < x.length; i++) if (x[i] === y[i]) eq++;
  return eq / x.length;
}

/** MinHash + LSH index over kept records; a query returns the most similar earlier record. */
export class NearDeduper {
  readonly hasher: MinHasher;
  readonly bands: number;
  readonly rows: number;
  private buckets: Map<number, number | number[]>[];
  private sigs = new Int32Array(0);
  private ids: string[] = [];
  private scratch: Int32Array;

  constructor(readonly opts: NearDupOptions = NEAR_DUP_DEFAULTS) {
    if (!(opts.threshold > 0 && opts.threshold <= 1)) throw new Error(`near-dup threshold must be in (0, 1], got ${opts.threshold}`);
    this.hasher = new MinHasher(opts.numPerm, opts.ngram, opts.seed);
    ({ bands: this.bands, rows: this.rows } = lshParams(opts.threshold, opts.numPerm));
    this.buckets = Array.from({ length: this.bands }, () => new Map());
    this.scratch = new Int32Array(opts.numPerm);
  }

  private bandKey(sig: Int32Array, band: number): number {
    let h1 = 0x9747b28c ^ band;
    let h2 = 0x1b873593 + band;
    for (let i = band * this.rows, end = i + this.rows; i < end; i++) {
      h1 = Math.imul(h1 ^ sig[i], 0xcc9e2d51);
      h1 = (h1 << 13) | (h1 >>> 19);
      h2 = Math.imul(h2 + sig[i], 0x85ebca6b) ^ (h2 >>> 15);
    }
    // 53-bit key: a band collision that is not a real match is filtered by the similarity check
    return (h1 >>> 0) * 0x200000 + (h2 >>> 11);
  }

  /**
   * Checks a record against the kept ones. A near duplicate returns the earlier record's id and
   * similarity; otherwise the record is kept (indexed) and undefined is returned.
   */
  check(id: string, text: string): { duplicateOf: string; similarity: number } | undefined {
    const sig = this.hasher.signature(normaliseText(text), this.scratch);
    const numPerm = this.opts.numPerm;
    let best = -1;
    let bestSim = 0;
    const tried = new Set<number>();
    for (let band = 0; band < this.bands; band++) {
      const hit = this.buckets[band].get(this.bandKey(sig, band));
      if (hit === undefined) continue;
      for (const doc of typeof hit === 'number' ? [hit] : hit) {
        if (tried.has(doc)) continue;
        tried.add(doc);
        const sim = signatureSimilarity(sig, this.sigs.subarray(doc * numPerm, (doc + 1) * numPerm));
        if (sim > bestSim) [best, bestSim] = [doc, sim];
      }
    }
    if (best >= 0 && bestSim >= this.opts.threshold) return { duplicateOf: this.ids[best], similarity: bestSim };
    this.insert(id, sig);
    return undefined;
  }

  private insert(id: string, sig: Int32Array): void {
    const doc = this.ids.length;
    this.ids.push(id);
    const numPerm = this.opts.numPerm;
    if ((doc + 1) * numPerm > this.sigs.length) {
      const grown = new Int32Array(Math.max(1024 * numPerm, this.sigs.length * 2));
      grown.set(this.sigs);
      this.sigs = grown;
    }
    this.sigs.set(sig, doc * numPerm);
    for (let band = 0; band < this.bands; band++) {
      const key = this.bandKey(sig, band);
      const m = this.buckets[band];
      const prev = m.get(key);
      if (prev === undefined) m.set(key, doc);
      else if (typeof prev === 'number') m.set(key, [prev, doc]);
      else prev.push(doc);
    }
  }
}

export interface SubstringOptions {
  /** Shortest repeated substring to strike, in characters (code points). */
  minLength: number;
  keep: KeepPolicy;
  /** Documents are processed in shards of about this many characters (repeats are found within a shard). */
  shardChars: number;
  /** A document left shorter than this after striking is dropped. */
  minDocChars: number;
}

export const SUBSTRING_DEFAULTS: SubstringOptions = { minLength: 50, keep: 'none', shardChars: 4_000_000, minDocChars: 20 };

export interface DedupOptions {
  exact: boolean;
  near: NearDupOptions | false;
  substring: SubstringOptions | false;
}

export interface DedupCounts {
  input: number;
  exact: number;
  near: number;
  /** documents that lost text to the substring pass */
  substringRecords: number;
  substringChars: number;
  /** documents dropped because too little text remained */
  substringDropped: number;
}

export interface DedupStageReport {
  sources: Record<string, DedupCounts>;
  /** the first duplicates found, for inspection */
  examples: { id: string; source: string; by: 'exact' | 'near'; duplicateOf: string; similarity?: number }[];
}

const MAX_EXAMPLES = 200;

/**
 * One stage's deduplication: exact and near duplicates are decided record by record
 * (admit), documents then pass through the substring pass in shards (pushDocument / flush).
 * Counts are kept per source for dedup_report.json.
 */
export class StageDeduper {
  private exactIdx?: ExactDeduper;
  private nearIdx?: NearDeduper;
  private shard: Document[] = [];
  private shardChars = 0;
  readonly report: DedupStageReport = { sources: {}, examples: [] };

  constructor(readonly opts: DedupOptions) {
    if (opts.exact) this.exactIdx = new ExactDeduper();
    if (opts.near) this.nearIdx = new NearDeduper(opts.near);
  }

  private counts(source: string): DedupCounts {
    return (this.report.sources[source] ??= { input: 0, exact: 0, near: 0, substringRecords: 0, substringChars: 0, substringDropped: 0 });
  }

  /** False when the record duplicates an earlier one (and is counted as removed). */
  admit(t: Tagged, text = recordText(t)): boolean {
    const { id, source } = t.record;
    const c = this.counts(source);
    c.input++;
    const exactOf = this.exactIdx?.check(id, text);
    if (exactOf !== undefined) {
      c.exact++;
      if (this.report.examples.length < MAX_EXAMPLES) this.report.examples.push({ id, source, by: 'exact', duplicateOf: exactOf });
      return false;
    }
    const near = this.nearIdx?.check(id, text);
    if (near) {
      c.near++;
      if (this.report.examples.length < MAX_EXAMPLES) {
        this.report.examples.push({ id, source, by: 'near', duplicateOf: near.duplicateOf, similarity: +near.similarity.toFixed(3) });
      }
      return false;
    }
    return true;
  }

  get substringEnabled(): boolean {
    return this.opts.substring !== false;
  }

  /** Buffers a document for the substring pass; returns the documents of a finished shard. */
  pushDocument(doc: Document): Document[] {
    if (!this.opts.substring) return [doc];
    this.shard.push(doc);
    this.shardChars += doc.text.length;
    return this.shardChars >= this.opts.substring.shardChars ? this.flush() : [];
  }

  /** Runs the substring pass over the buffered documents and returns the survivors. */
  flush(): Document[] {
    const sub = this.opts.substring;
    if (!sub || !this.shard.length) return [];
    const docs = this.shard;
    this.shard = [];
    this.shardChars = 0;
    const ranges = repeatedRanges(
      docs.map((d) => d.text),
      sub.minLength,
      sub.keep,
    );
    const out: Document[] = [];
    docs.forEach((doc, i) => {
      const r = ranges[i];
      if (!r.length) {
        out.push(doc);
        return;
      }
      const c = this.counts(doc.source);
      const text = removeRanges(doc.text, r);
      c.substringRecords++;
      c.substringChars += doc.text.length - text.length;
      if (codePointLength(text.trim()) < sub.minDocChars) c.substringDropped++;
      else out.push({ ...doc, text });
    });
    return out;
  }
}
