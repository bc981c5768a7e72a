// Reference models for the evaluation tables: what a benchmark score means is clearer next to
// what a model with no medical knowledge gets (a constant answer, a character n-gram model).
// Both are deterministic, so the suite's own tests use them too.
import type { EvalModel, GenerateOptions } from './lm.js';

/** Always says the same thing; as a scorer, prefers exactly that string (MCQ majority-letter baseline). */
export class ConstantModel implements EvalModel {
  constructor(readonly answer: string) {}

  async scoreContinuations(_prompt: string, continuations: string[]): Promise<number[]> {
    return continuations.map((c) => (c.trim() === this.answer.trim() ? 0 : -1));
  }

  async generate(prompts: string[], opts: GenerateOptions): Promise<string[][]> {
    return prompts.map(() => new Array<string>(opts.n ?? 1).fill(this.answer));
  }
}

/** mulberry32: a small seeded PRNG, so sampled baselines repeat exactly. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A character n-gram language model: interpolated maximum-likelihood estimates of orders
 * 0..order-1 (an order whose context was never seen hands its weight down), mixed with a
 * uniform floor over the vocabulary plus one unknown symbol, so every string has a finite
 * log-probability. Characters are code points.
 */
export class CharNgramModel implements EvalModel {
  private readonly counts: Map<string, Map<string, number>>[] = [];
  private readonly totals: Map<string, number>[] = [];
  private readonly vocab: string[];
  private static readonly FLOOR = 0.01;

  constructor(
    text: string,
    readonly order = 3,
  ) {
    if (!Number.isInteger(order) || order < 1) throw new Error(`n-gram order must be a positive integer, got ${order}`);
    const chars = Array.from(text);
    if (chars.length === 0) throw new Error('CharNgramModel: empty training text');
    this.vocab = [...new Set(chars)].sort();
    for (let k = 0; k < order; k++) {
      const c = new Map<string, Map<string, number>>(),
        t = new Map<string, number>();
      for (let i = k; i < chars.length; i++) {
        const ctx = chars.slice(i - k, i).join('');
        if (!c.has(ctx)) c.set(ctx, new Map());
        const m = c.get(ctx)!;
        m.set(chars[i], (m.get(chars[i]) ?? 0) + 1);
        t.set(ctx, (t.get(ctx) ?? 0) + 1);
      }
      this.counts.push(c);
      this.totals.push(t);
    }
  }

  /** P(next | history) for one character. */
  prob(history: string[], next: string): number {
    let p = 0,
      weight = 1 - CharNgramModel.FLOOR;
    for (let k = Math.min(this.order - 1, history.length); k >= 0; k--) {
      const ctx = history.slice(history.length - k).join('');
      const total = this.totals[k].get(ctx);
      if (!total) continue;
      const share = k === 0 ? weight : weight / 2; // half to this order, the rest to lower ones
      p += share * ((this.counts[k].get(ctx)!.get(next) ?? 0) / total);
      weight -= share;
    }
    return p + (weight + CharNgramModel.FLOOR) / (this.vocab.length + 1);
  }

  async scoreContinuations(prompt: string, continuations: string[]): Promise<number[]> {
    const history = Array.from(prompt);
    return continuations.map((c) => {
      const h = history.slice();
      let lp = 0;
      for (const ch of c) {
        lp += Math.log(this.prob(h, ch));
        h.push(ch);
      }
      return lp;
    });
  }

  private next(history: string[], temperature: number, topP: number, rand: () => number): string {
    const probs = this.vocab.map((ch) => this.prob(history, ch));
    if (temperature <= 0) return this.vocab[probs.indexOf(Math.max(...probs))];
    const w = probs.map((p) => p ** (1 / temperature));
    const order = w.map((_, i) => i).sort((a, b) => w[b] - w[a]);
    const sum = w.reduce((a, b) => a + b, 0);
    const keep: number[] = [];
    let mass = 0;
    for (const i of order) {
      keep.push(i);
      mass += w[i] / sum;
      if (mass >= topP) break;
    }
    let r = rand() * keep.reduce((s, i) => s + w[i], 0);
    for (const i of keep) if ((r -= w[i]) <= 0) return this.vocab[i];
    return this.vocab[keep[keep.length - 1]];
  }

  async generate(prompts: string[], opts: GenerateOptions): Promise<string[][]> {
    const { maxNewTokens, temperature = 0, topP = 1, n = 1, seed = 0, stop = [] } = opts;
    const rand = rng(seed);
    return prompts.map((prompt) =>
      Array.from({ length: n }, () => {
        const h = Array.from(prompt);
        let out = '';
        for (let i = 0; i < maxNewTokens; i++) {
          const ch = this.next(h, temperature, topP, rand);
          h.push(ch);
          out += ch;
          const hit = stop.find((s) => s && out.endsWith(s));
          if (hit) return out.slice(0, -hit.length);
        }
        return out;
      }),
    );
  }
}
