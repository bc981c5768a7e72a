import type { AttentionDims, FloatArray, Kernels } from '../engine/kernels.js';
import { add, attention, checkpoint, embedding, linear, linearLogprobs, rmsnorm, rope, swiglu } from '../engine/ops.js';
import { ParamStore, type ParamSpec } from '../engine/params.js';
import { Rng } from '../engine/rng.js';
import { Context, Tensor } from '../engine/tensor.js';
import { headDim, type LlamaConfig } from './config.js';

/** A batch of token rows: ids and positions are [B, T] flattened. */
export interface TokenBatch {
  ids: Int32Array;
  pos: Int32Array;
  B: number;
  T: number;
}

/** Adds a trainable side path to a frozen projection (LoRA); keyed by HF module name. */
export type ProjectionHook<F extends FloatArray> = (ctx: Context<F>, x: Tensor<F>, y: Tensor<F>, module: string) => Tensor<F>;

export interface ForwardOptions {
  /** Recompute each block in backward instead of keeping its activations. */
  recompute?: boolean;
  /** Generation: append this batch's keys/values to the cache and attend over all of it. */
  cache?: KvCache<FloatArray>;
  /** Per row, the first real position (left padding); keys before it are masked. */
  keyStart?: Int32Array;
}

/**
 * Keys and values of past positions, per layer [B, capacity, KVH, headDim] (post-RoPE keys),
 * allocated once per generation call.
 */
export class KvCache<F extends FloatArray> {
  readonly k: F[] = [];
  readonly v: F[] = [];
  length = 0;

  constructor(kern: Kernels<F>, readonly config: LlamaConfig, readonly B: number, readonly capacity: number) {
    const n = B * capacity * config.num_key_value_heads * headDim(config);
    for (let l = 0; l < config.num_hidden_layers; l++) { this.k.push(kern.alloc(n)); this.v.push(kern.alloc(n)); }
  }

  private get rowWidth(): number {
    return this.config.num_key_value_heads * headDim(this.config);
  }

  /** Copies T new positions of each row into the cache after the current length. */
  write(layer: number, k: FloatArray, v: FloatArray, T: number): void {
    if (this.length + T > this.capacity) throw new RangeError(`KV cache full: ${this.length} + ${T} positions exceed its capacity ${this.capacity}`);
    const w = this.rowWidth;
    for (let b = 0; b < this.B; b++) {
      const dst = (b * this.capacity + this.length) * w;
      this.k[layer].set(k.subarray(b * T * w, (b + 1) * T * w), dst);
      this.v[layer].set(v.subarray(b * T * w, (b + 1) * T * w), dst);
    }
  }
}

const LAYER_LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

/**
 * LLaMA decoder (HF LlamaForCausalLM semantics and tensor names), written out as plainly as
 * llm.c: embedding, N x (RMSNorm, GQA attention with RoPE, residual, RMSNorm, SwiGLU MLP,
 * residual), final RMSNorm, output projection.
 */
export class Llama<F extends FloatArray = FloatArray> {
  /** Optional LoRA (or other) side paths; null means plain projections. */
  hook: ProjectionHook<F> | null = null;

  constructor(readonly config: LlamaConfig, readonly params: ParamStore<F>) {}

  get k(): Kernels<F> {
    return this.params.k;
  }

  /**
   * HF tensor names and shapes. head 'lm' is LlamaForCausalLM (lm_head unless tied);
   * 'score' is LlamaForSequenceClassification with one label (a reward model): no lm_head,
   * a [1, D] score weight.
   */
  static paramSpecs(c: LlamaConfig, head: 'lm' | 'score' = 'lm'): ParamSpec[] {
    const D = c.hidden_size, F = c.intermediate_size, kvD = c.num_key_value_heads * headDim(c);
    const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocab_size, D] }];
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      specs.push(
        { name: `${p}input_layernorm.weight`, shape: [D], noDecay: true },
        { name: `${p}self_attn.q_proj.weight`, shape: [D, D] },
        { name: `${p}self_attn.k_proj.weight`, shape: [kvD, D] },
        { name: `${p}self_attn.v_proj.weight`, shape: [kvD, D] },
        { name: `${p}self_attn.o_proj.weight`, shape: [D, D] },
        { name: `${p}post_attention_layernorm.weight`, shape: [D], noDecay: true },
        { name: `${p}mlp.gate_proj.weight`, shape: [F, D] },
        { name: `${p}mlp.up_proj.weight`, shape: [F, D] },
        { name: `${p}mlp.down_proj.weight`, shape: [D, F] },
      );
    }
    specs.push({ name: 'model.norm.weight', shape: [D], noDecay: true });
    if (head === 'score') specs.push({ name: 'score.weight', shape: [1, D] });
    else if (!c.tie_word_embeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocab_size, D] });
    return specs;
  }

  static linearModules(c: LlamaConfig): string[] {
    const mods: string[] = [];
    for (let l = 0; l < c.num_hidden_layers; l++) for (const m of LAYER_LINEARS) mods.push(`model.layers.${l}.${m}`);
    return mods;
  }

  /**
   * Random initialisation as HF does (normal(0, initializer_range), norms at 1), except that
   * the two projections feeding the residual stream are scaled by 1/sqrt(2 * layers) as in
   * GPT-2, which keeps small models trained from scratch stable.
   */
  static random<F extends FloatArray>(k: Kernels<F>, c: LlamaConfig, seed: number, trainable = true): Llama<F> {
    const params = new ParamStore(k, Llama.paramSpecs(c), trainable);
    const rng = new Rng(seed);
    const residualStd = c.initializer_range / Math.sqrt(2 * c.num_hidden_layers);
    for (const spec of params.specs) {
      const t = params.get(spec.name).data;
      if (spec.noDecay) { t.fill(1); continue; }
      const std = /o_proj|down_proj/.test(spec.name) ? residualStd : c.initializer_range;
      for (let i = 0; i < t.length; i++) t[i] = rng.normal() * std;
    }
    return new Llama(c, params);
  }

  private w(name: string): Tensor<F> {
    return this.params.get(name);
  }

  private proj(ctx: Context<F>, x: Tensor<F>, module: string): Tensor<F> {
    const y = linear(ctx, x, this.w(`${module}.weight`));
    return this.hook ? this.hook(ctx, x, y, module) : y;
  }

  private block(ctx: Context<F>, x: Tensor<F>, l: number, batch: TokenBatch, opts: ForwardOptions): Tensor<F> {
    const c = this.config, hd = headDim(c), p = `model.layers.${l}.`;
    const cache = opts.cache as KvCache<F> | undefined;
    const past = cache?.length ?? 0;
    const dims: AttentionDims = {
      B: batch.B, Tq: batch.T, Tk: past + batch.T, kvCap: cache?.capacity ?? batch.T,
      H: c.num_attention_heads, KVH: c.num_key_value_heads, headDim: hd, scale: 1 / Math.sqrt(hd),
    };
    const h = rmsnorm(ctx, x, this.w(`${p}input_layernorm.weight`), c.rms_norm_eps);
    const q = rope(ctx, this.proj(ctx, h, `${p}self_attn.q_proj`), batch.pos, dims.H, hd, c.rope_theta);
    let k = rope(ctx, this.proj(ctx, h, `${p}self_attn.k_proj`), batch.pos, dims.KVH, hd, c.rope_theta);
    let v = this.proj(ctx, h, `${p}self_attn.v_proj`);
    if (cache) {
      cache.write(l, k.data, v.data, batch.T);
      const shape = [batch.B, cache.capacity, dims.KVH, hd];
      k = new Tensor(cache.k[l], shape);
      v = new Tensor(cache.v[l], shape);
    }
    const a = attention(ctx, q, k, v, dims, opts.keyStart ?? null);
    const x2 = add(ctx, x, this.proj(ctx, a, `${p}self_attn.o_proj`));
    const h2 = rmsnorm(ctx, x2, this.w(`${p}post_attention_layernorm.weight`), c.rms_norm_eps);
    const m = swiglu(ctx, this.proj(ctx, h2, `${p}mlp.gate_proj`), this.proj(ctx, h2, `${p}mlp.up_proj`));
    return add(ctx, x2, this.proj(ctx, m, `${p}mlp.down_proj`));
  }

  /** Final hidden states [B*T, D] (after the last RMSNorm). */
  hidden(ctx: Context<F>, batch: TokenBatch, opts: ForwardOptions = {}): Tensor<F> {
    const c = this.config;
    if (batch.ids.length !== batch.B * batch.T || batch.pos.length !== batch.ids.length) {
      throw new RangeError(`batch of ${batch.ids.length} ids / ${batch.pos.length} positions is not B*T = ${batch.B}x${batch.T}`);
    }
    if (opts.cache && opts.recompute) throw new Error('recompute is for training; a KV cache is for generation');
    let x = embedding(ctx, this.w('model.embed_tokens.weight'), batch.ids);
    for (let l = 0; l < c.num_hidden_layers; l++) {
      x = opts.recompute ? checkpoint(ctx, x, (cc, xx) => this.block(cc, xx, l, batch, opts)) : this.block(ctx, x, l, batch, opts);
    }
    if (opts.cache) opts.cache.length += batch.T;
    return rmsnorm(ctx, x, this.w('model.norm.weight'), c.rms_norm_eps);
  }

  outputWeight(): Tensor<F> {
    return this.w(this.config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }

  /** Per-position log p(targets[r] | prefix); targets < 0 are ignored (logp 0). */
  logprobs(ctx: Context<F>, batch: TokenBatch, targets: Int32Array, opts: ForwardOptions = {}): Tensor<F> {
    return linearLogprobs(ctx, this.hidden(ctx, batch, opts), this.outputWeight(), targets);
  }

  /** Logits [rows, V] for the given hidden rows, no gradient (generation, scoring). */
  logits(ctx: Context<F>, hidden: Tensor<F>): F {
    const W = this.outputWeight();
    const [V, D] = W.shape;
    const rows = hidden.size / D;
    const out = ctx.ws.alloc(rows * V);
    this.k.gemm(false, true, rows, V, D, 1, hidden.data, W.data, 0, out);
    return out;
  }
}

/** Positions 0..T-1 for every row of a [B, T] batch. */
export function sequentialPositions(B: number, T: number): Int32Array {
  const pos = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) pos[b * T + t] = t;
  return pos;
}
