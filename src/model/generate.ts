import type { FloatArray } from '../engine/kernels.js';
import { Rng } from '../engine/rng.js';
import { Context } from '../engine/tensor.js';
import { KvCache, Llama } from './llama.js';

export interface SamplingOptions {
  /** 0 (default) = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** HF semantics: logits of tokens already present are divided (if > 0) or multiplied by it. */
  repetitionPenalty?: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Samples per prompt (rejection sampling draws k candidates per prompt). */
  n?: number;
  seed?: number;
  eosIds?: number[];
  /** Stop strings; need `decode`. The returned text is cut before the stop string. */
  stop?: string[];
  decode?: (ids: number[]) => string;
  /** Streaming: called with each new token of each row (row = prompt * n + sample). */
  onToken?: (row: number, id: number) => void;
}

export interface Generation {
  ids: number[];
  text?: string;
  finishReason: 'eos' | 'stop' | 'length';
}

/**
 * Batched sampling with a KV cache. All prompts x n samples run as one batch: prompts are
 * left-padded to a common length (masked by keyStart, positions counted from each row's first
 * real token), then one token per row per step. Returns one array of n generations per prompt.
 */
export function generate<F extends FloatArray>(model: Llama<F>, prompts: number[][], opts: GenerateOptions): Generation[][] {
  const n = opts.n ?? 1;
  const c = model.config;
  if (prompts.some((p) => p.length === 0)) throw new RangeError('generate: empty prompt');
  const P = Math.max(...prompts.map((p) => p.length));
  if (P + opts.maxNewTokens > c.max_position_embeddings) {
    throw new RangeError(`generate: prompt (${P}) + max new tokens (${opts.maxNewTokens}) exceed max_position_embeddings (${c.max_position_embeddings})`);
  }
  const rows = prompts.flatMap((p) => Array.from({ length: n }, () => p));
  const B = rows.length;
  const keyStart = Int32Array.from(rows, (p) => P - p.length);
  const cache = new KvCache(model.k, c, B, P + opts.maxNewTokens);
  const ctx = new Context(model.k, undefined, false);
  const rng = new Rng(opts.seed ?? 0);
  const eos = new Set(opts.eosIds ?? []);
  const out: Generation[] = rows.map(() => ({ ids: [], finishReason: 'length' }));
  const seen = rows.map((p) => new Set(p));
  const active = new Set(rows.keys());

  // prefill: every row's padded prompt at once
  let ids = new Int32Array(B * P), pos = new Int32Array(B * P), T = P;
  rows.forEach((p, b) => {
    ids.set(p, b * P + keyStart[b]);
    for (let t = 0; t < P; t++) pos[b * P + t] = Math.max(0, t - keyStart[b]);
  });
  for (let step = 0; step < opts.maxNewTokens && active.size > 0; step++) {
    const hidden = model.hidden(ctx, { ids, pos, B, T }, { cache: cache as KvCache<FloatArray>, keyStart });
    const D = c.hidden_size;
    const last = ctx.tensor([B, D], false);
    for (let b = 0; b < B; b++) last.data.set(hidden.data.subarray((b * T + T - 1) * D, (b * T + T) * D), b * D);
    const logits = model.logits(ctx, last);
    const next = new Int32Array(B), nextPos = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      nextPos[b] = pos[b * T + T - 1] + 1;
      if (!active.has(b)) continue;
      const id = sample(logits.subarray(b * c.vocab_size, (b + 1) * c.vocab_size), seen[b], opts, rng);
      next[b] = id;
      if (eos.has(id)) { out[b].finishReason = 'eos'; active.delete(b); continue; }
      out[b].ids.push(id);
      seen[b].add(id);
      opts.onToken?.(b, id);
      if (opts.stop?.length && opts.decode) {
        const text = opts.decode(out[b].ids);
        const at = Math.min(...opts.stop.map((s) => { const i = text.indexOf(s); return i < 0 ? Infinity : i; }));
        if (at !== Infinity) { out[b].text = text.slice(0, at); out[b].finishReason = 'stop'; active.delete(b); }
      }
    }
    ctx.ws.reset();
    ids = next; pos = nextPos; T = 1;
  }
  if (opts.decode) for (const g of out) g.text ??= opts.decode(g.ids);
  return prompts.map((_, i) => out.slice(i * n, (i + 1) * n));
}

/** Picks the next token from one row of logits (modified in place). */
export function sample(logits: FloatArray, seen: Set<number>, o: SamplingOptions, rng: Rng): number {
  const rp = o.repetitionPenalty ?? 1;
  if (rp !== 1) for (const id of seen) logits[id] = logits[id] > 0 ? logits[id] / rp : logits[id] * rp;
  const temp = o.temperature ?? 0;
  if (temp <= 0) return argmax(logits);
  const V = logits.length;
  let idx = Array.from({ length: V }, (_, i) => i);
  if ((o.topK && o.topK < V) || (o.topP !== undefined && o.topP < 1)) {
    idx.sort((a, b) => logits[b] - logits[a]);
    if (o.topK && o.topK < V) idx = idx.slice(0, o.topK);
  }
  let max = -Infinity;
  for (const i of idx) max = Math.max(max, logits[i]);
  const probs = idx.map((i) => Math.exp((logits[i] - max) / temp));
  let total = probs.reduce((s, p) => s + p, 0);
  if (o.topP !== undefined && o.topP < 1) {
    // keep the smallest prefix (sorted by probability) whose mass reaches topP
    let acc = 0, keep = probs.length;
    for (let j = 0; j < probs.length; j++) { acc += probs[j] / total; if (acc >= o.topP) { keep = j + 1; break; } }
    probs.length = keep; idx = idx.slice(0, keep);
    total = probs.reduce((s, p) => s + p, 0);
  }
  let r = rng.next() * total;
  for (let j = 0; j < probs.length; j++) { r -= probs[j]; if (r <= 0) return idx[j]; }
  return idx[probs.length - 1];
}

function argmax(x: FloatArray): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}
