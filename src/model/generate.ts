import type { DecodePlan, FloatArray } from '../engine/kernels.js';
import { Rng } from '../engine/rng.js';
import { Context } from '../engine/tensor.js';
import { Workspace } from '../engine/workspace.js';
import { contextLength } from './config.js';
import { KvCache, Llama, type KvStorage } from './llama.js';

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

const workspaces = new WeakMap<object, Workspace<FloatArray>>();

/**
 * The activation arena of a model's decoding steps. A step starts and ends with it empty and
 * runs synchronously, so every decoder of the model (a server's concurrent requests included)
 * can share one, and a new request's prefill finds it grown already instead of allocating
 * (and page-faulting) its own.
 */
function stepWorkspace<F extends FloatArray>(model: Llama<F>): Workspace<F> {
  let ws = workspaces.get(model) as Workspace<F> | undefined;
  if (!ws) {
    ws = new Workspace<F>((n) => model.k.alloc(n));
    workspaces.set(model, ws as unknown as Workspace<FloatArray>);
  }
  return ws;
}

/**
 * KV cache storage of finished decoders, per model, for the next ones: fresh memory costs its
 * first touch (page faults), a quarter of a 128-token prefill here, and a server or a sampling
 * loop decodes again and again. At most SPARE_KV_CACHES are kept; concurrent decoders each hold
 * their own.
 */
const spareKv = new WeakMap<object, KvStorage<FloatArray>[]>();
const SPARE_KV_CACHES = 2;

/**
 * Batched sampling with a KV cache. All prompts x n samples run as one batch: prompts are
 * left-padded to a common length (masked by keyStart, positions counted from each row's first
 * real token), then one token per row per step. `step()` advances one token, so a server can
 * yield to the event loop (and stop on a client disconnect) between tokens.
 */
export class Decoder<F extends FloatArray> {
  private readonly n: number;
  private readonly B: number;
  private readonly keyStart: Int32Array;
  /** Keys and values so far; its storage goes back to the model's spare ones on release(). */
  readonly cache: KvCache<F>;
  /** Decoding steps (after the prefill) in one native call, when the model allows (Llama.decodePlan). */
  private readonly plan: DecodePlan<F> | null;
  private readonly ctx: Context<F>;
  private readonly rng: Rng;
  private readonly eos: Set<number>;
  private readonly out: Generation[];
  private readonly seen: Set<number>[];
  private readonly active: Set<number>;
  private ids: Int32Array;
  private pos: Int32Array;
  private T: number;
  private steps = 0;

  constructor(
    readonly model: Llama<F>,
    readonly prompts: number[][],
    readonly opts: GenerateOptions,
  ) {
    this.n = opts.n ?? 1;
    const c = model.config;
    if (prompts.some((p) => p.length === 0)) throw new RangeError('generate: empty prompt');
    const P = Math.max(...prompts.map((p) => p.length));
    if (P + opts.maxNewTokens > contextLength(c)) {
      const dyn = c.rope_scaling?.rope_type === 'dynamic' ? ` x dynamic RoPE factor ${c.rope_scaling.factor}` : '';
      throw new RangeError(
        `generate: prompt (${P}) + max new tokens (${opts.maxNewTokens}) exceed the model's context: max_position_embeddings ${c.max_position_embeddings}${dyn} = ${contextLength(c)}`,
      );
    }
    const rows = prompts.flatMap((p) => Array.from({ length: this.n }, () => p));
    this.B = rows.length;
    this.keyStart = Int32Array.from(rows, (p) => P - p.length);
    const spare = spareKv.get(model) ?? [];
    this.cache = new KvCache(model.k, c, this.B, P + opts.maxNewTokens, (spare.pop() as KvStorage<F> | undefined) ?? null);
    this.plan = model.decodePlan(this.cache);
    this.ctx = new Context(model.k, stepWorkspace(model), false);
    this.rng = new Rng(opts.seed ?? 0);
    this.eos = new Set(opts.eosIds ?? []);
    this.out = rows.map(() => ({ ids: [], finishReason: 'length' }));
    this.seen = rows.map((p) => new Set(p));
    this.active = new Set(rows.keys());
    // the first step is the prefill: every row's padded prompt at once
    this.ids = new Int32Array(this.B * P);
    this.pos = new Int32Array(this.B * P);
    this.T = P;
    rows.forEach((p, b) => {
      this.ids.set(p, b * P + this.keyStart[b]);
      for (let t = 0; t < P; t++) this.pos[b * P + t] = Math.max(0, t - this.keyStart[b]);
    });
  }

  done(): boolean {
    return this.active.size === 0 || this.steps >= this.opts.maxNewTokens;
  }

  /** Ends the rows still running (finish reason stays 'length'). */
  abort(): void {
    this.active.clear();
  }

  /** Hands the KV cache's memory to the model's next decoder; this one must not step again. */
  release(): void {
    const spare = spareKv.get(this.model) ?? [];
    if (spare.length < SPARE_KV_CACHES && !spare.includes(this.cache.storage)) spare.push(this.cache.storage);
    spareKv.set(this.model, spare);
  }

  /** One forward pass and one new token for every active row. */
  step(): void {
    const { model, opts, B, T } = this;
    const c = model.config;
    const logits = this.forward();
    const next = new Int32Array(B),
      nextPos = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      nextPos[b] = this.pos[b * T + T - 1] + 1;
      if (!this.active.has(b)) continue;
      const id = sample(logits.subarray(b * c.vocab_size, (b + 1) * c.vocab_size), this.seen[b], opts, this.rng);
      next[b] = id;
      this.accept(b, id);
    }
    this.ctx.ws.reset();
    this.ids = next;
    this.pos = nextPos;
    this.T = 1;
    this.steps++;
  }

  /** Logits [B, V] at each row's last position; the cache takes this step's positions. */
  private forward(): F {
    const { model, B, T } = this;
    if (T === 1 && this.plan) {
      const logits = this.ctx.ws.alloc(B * model.config.vocab_size);
      model.decodeStep(this.plan, this.ids, this.pos, this.keyStart, this.cache, logits);
      return logits;
    }
    const D = model.config.hidden_size;
    const hidden = model.hidden(
      this.ctx,
      { ids: this.ids, pos: this.pos, B, T },
      { cache: this.cache as KvCache<FloatArray>, keyStart: this.keyStart },
    );
    const last = this.ctx.tensor([B, D], false);
    for (let b = 0; b < B; b++) last.data.set(hidden.data.subarray((b * T + T - 1) * D, (b * T + T) * D), b * D);
    return model.logits(this.ctx, last);
  }

  private accept(b: number, id: number): void {
    const g = this.out[b],
      opts = this.opts;
    if (this.eos.has(id)) {
      g.finishReason = 'eos';
      this.active.delete(b);
      return;
    }
    g.ids.push(id);
    this.seen[b].add(id);
    opts.onToken?.(b, id);
    if (opts.stop?.length && opts.decode) {
      const text = opts.decode(g.ids);
      const at = Math.min(
        ...opts.stop.map((s) => {
          const i = text.indexOf(s);
          return i < 0 ? Infinity : i;
        }),
      );
      if (at !== Infinity) {
        g.text = text.slice(0, at);
        g.finishReason = 'stop';
        this.active.delete(b);
      }
    }
  }

  /** One array of n generations per prompt. */
  results(): Generation[][] {
    // a length cut-off can split a multi-byte character: drop its dangling bytes
    const decode = this.opts.decode;
    if (decode)
      for (const g of this.out) {
        const text = decode(g.ids);
        g.text ??= g.finishReason === 'length' ? text.replace(/\uFFFD+$/, '') : text;
      }
    return this.prompts.map((_, i) => this.out.slice(i * this.n, (i + 1) * this.n));
  }
}

export function generate<F extends FloatArray>(model: Llama<F>, prompts: number[][], opts: GenerateOptions): Generation[][] {
  const d = new Decoder(model, prompts, opts);
  try {
    while (!d.done()) d.step();
    return d.results();
  } finally {
    d.release();
  }
}

/** As generate, yielding to the event loop after every token; `signal` ends it early. */
export async function generateAsync<F extends FloatArray>(
  model: Llama<F>,
  prompts: number[][],
  opts: GenerateOptions & { signal?: AbortSignal },
): Promise<Generation[][]> {
  const d = new Decoder(model, prompts, opts);
  try {
    while (!d.done()) {
      if (opts.signal?.aborted) {
        d.abort();
        break;
      }
      d.step();
      await new Promise((r) => setImmediate(r));
    }
    return d.results();
  } finally {
    d.release();
  }
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
    let acc = 0,
      keep = probs.length;
    for (let j = 0; j < probs.length; j++) {
      acc += probs[j] / total;
      if (acc >= o.topP) {
        keep = j + 1;
        break;
      }
    }
    probs.length = keep;
    idx = idx.slice(0, keep);
    total = probs.reduce((s, p) => s + p, 0);
  }
  let r = rng.next() * total;
  for (let j = 0; j < probs.length; j++) {
    r -= probs[j];
    if (r <= 0) return idx[j];
  }
  return idx[probs.length - 1];
}

function argmax(x: FloatArray): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}
