import type { AttentionDims, DecodeLinear, DecodePlan, DecodeWeight, FloatArray, Kernels } from '../engine/kernels.js';
import {
  add,
  addRmsnorm,
  attention,
  checkpoint,
  embedding,
  linear,
  normalizeRows,
  qkvRope,
  projectRows,
  rmsnorm,
  rope,
  sliceColumns,
  swiglu,
  swigluPacked,
  type RopeFrequencies,
  type Weight,
} from '../engine/ops.js';
import { FEW_ROWS, FrozenWeight, weightBytes, type BaseDtype } from '../engine/frozen.js';
import { convertWeight } from '../engine/native.js';
import { linearLogprobs, type LogitsBlock } from '../engine/linear-logprobs.js';
import { ParamStore, type ParamSpec } from '../engine/params.js';
import { Rng } from '../engine/rng.js';
import { Context, Tensor } from '../engine/tensor.js';
import { kvWidth, qWidth, type ModelConfig } from './config.js';
import { ropeDependsOnLength, ropeFrequencies } from './rope.js';

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
  /** logprobs: the block of logits computed at a time (default: logitsBlock, about LOGITS_CHUNK_FLOATS). */
  logitsBlock?: LogitsBlock;
}

/** Per layer, the keys' and the values' arrays of a KvCache. */
export interface KvStorage<F extends FloatArray> {
  k: F[];
  v: F[];
}

/**
 * Keys and values of past positions, per layer [B, KVH, capacity, headDim] (post-RoPE keys):
 * each head's keys one contiguous stretch, which a decoding step reads as one stream
 * (AttentionDims.kvHeadMajor). Allocated once per generation call, or viewing a finished
 * one's storage (Decoder.release).
 */
export class KvCache<F extends FloatArray> {
  readonly k: F[];
  readonly v: F[];
  /** The arrays the layers' caches view (their start): given storage, or new. */
  readonly storage: KvStorage<F>;
  length = 0;

  /** storage: another cache's (of the same model), used when every array of it is large enough. */
  constructor(
    private readonly kern: Kernels<F>,
    readonly config: ModelConfig,
    readonly B: number,
    readonly capacity: number,
    storage: KvStorage<F> | null = null,
  ) {
    const n = B * capacity * kvWidth(config),
      L = config.num_hidden_layers;
    const fits = storage && storage.k.length === L && [...storage.k, ...storage.v].every((a) => a.length >= n);
    this.storage = fits
      ? storage
      : { k: Array.from({ length: L }, () => kern.alloc(n)), v: Array.from({ length: L }, () => kern.alloc(n)) };
    this.k = this.storage.k.map((a) => a.subarray(0, n) as F);
    this.v = this.storage.v.map((a) => a.subarray(0, n) as F);
  }

  /** Copies T new positions of each row (k, v [B, T, KVH, headDim]) into the cache after the current length. */
  write(layer: number, k: F, v: F, T: number): void {
    if (this.length + T > this.capacity)
      throw new RangeError(`KV cache full: ${this.length} + ${T} positions exceed its capacity ${this.capacity}`);
    const KVH = this.config.num_key_value_heads,
      hd = this.config.head_dim,
      w = KVH * hd;
    // a head's new positions are one column stretch of each row's [T, KVH * hd] block
    for (let b = 0; b < this.B; b++)
      for (let h = 0; h < KVH; h++) {
        const dst = ((b * KVH + h) * this.capacity + this.length) * hd;
        for (const [cache, src] of [
          [this.k[layer], k],
          [this.v[layer], v],
        ])
          this.kern.sliceColumnsForward(
            cache.subarray(dst, dst + T * hd) as F,
            src.subarray(b * T * w, (b + 1) * T * w) as F,
            T,
            w,
            h * hd,
            hd,
          );
      }
  }
}

/** A layer's linear modules (HF names under model.layers.N.), with their bias switch. */
function layerLinears(c: ModelConfig): { module: string; bias: boolean }[] {
  const attn = c.fused_qkv
    ? [{ module: 'self_attn.W_pack', bias: c.qkv_bias }]
    : ['q_proj', 'k_proj', 'v_proj'].map((m) => ({ module: `self_attn.${m}`, bias: c.qkv_bias }));
  return [
    ...attn,
    { module: 'self_attn.o_proj', bias: c.o_bias },
    ...['gate_proj', 'up_proj', 'down_proj'].map((m) => ({ module: `mlp.${m}`, bias: c.mlp_bias })),
  ];
}

/** The linear module names of a family as PEFT targets them (its all-linear set): W_pack for Baichuan. */
export function linearTargetNames(c: ModelConfig): string[] {
  return layerLinears(c).map((l) => l.module.split('.').pop()!);
}

/**
 * The decoder of every supported family (HF LlamaForCausalLM semantics, with the per-family
 * switches of ModelConfig), written out as plainly as llm.c: embedding, N x (RMSNorm,
 * attention: q/k/v projections (fused W_pack, biases, per-head q/k RMSNorm), RoPE, causal GQA,
 * o_proj, residual; RMSNorm, SwiGLU MLP, residual), final RMSNorm, output projection
 * (row-normalised for Baichuan 2). Tensor names are each family's HF names.
 */
export class Llama<F extends FloatArray = FloatArray> {
  /** Optional LoRA (or other) side paths; null means plain projections. */
  hook: ProjectionHook<F> | null = null;
  /** RoPE frequencies when they do not depend on the sequence length (all but dynamic NTK). */
  private readonly fixedRope: RopeFrequencies | null;

  constructor(
    readonly config: ModelConfig,
    readonly params: ParamStore<F>,
  ) {
    this.fixedRope = ropeDependsOnLength(config) ? null : ropeFrequencies(config, 0);
  }

  get k(): Kernels<F> {
    return this.params.k;
  }

  /**
   * HF tensor names and shapes. head 'lm' is *ForCausalLM (lm_head unless tied); 'score' is
   * *ForSequenceClassification with one label (a reward model): no lm_head, a [1, D] score weight.
   */
  static paramSpecs(c: ModelConfig, head: 'lm' | 'score' = 'lm'): ParamSpec[] {
    const D = c.hidden_size,
      F = c.intermediate_size,
      qD = qWidth(c),
      kvD = kvWidth(c);
    const shapes: Record<string, [number, number]> = {
      'self_attn.W_pack': [qD + 2 * kvD, D],
      'self_attn.q_proj': [qD, D],
      'self_attn.k_proj': [kvD, D],
      'self_attn.v_proj': [kvD, D],
      'self_attn.o_proj': [D, qD],
      'mlp.gate_proj': [F, D],
      'mlp.up_proj': [F, D],
      'mlp.down_proj': [D, F],
    };
    const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocab_size, D] }];
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      const linears = (modules: string[]) =>
        layerLinears(c)
          .filter((x) => modules.includes(x.module))
          .flatMap(({ module, bias }) => [
            { name: `${p}${module}.weight`, shape: shapes[module] },
            ...(bias ? [{ name: `${p}${module}.bias`, shape: [shapes[module][0]], noDecay: true }] : []),
          ]);
      specs.push(
        { name: `${p}input_layernorm.weight`, shape: [D], noDecay: true },
        ...linears(['self_attn.W_pack', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']),
        ...(c.qk_norm
          ? [
              { name: `${p}self_attn.q_norm.weight`, shape: [c.head_dim], noDecay: true },
              { name: `${p}self_attn.k_norm.weight`, shape: [c.head_dim], noDecay: true },
            ]
          : []),
        ...linears(['self_attn.o_proj']),
        { name: `${p}post_attention_layernorm.weight`, shape: [D], noDecay: true },
        ...linears(['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']),
      );
    }
    specs.push({ name: 'model.norm.weight', shape: [D], noDecay: true });
    if (head === 'score') specs.push({ name: 'score.weight', shape: [1, D] });
    else if (!c.tie_word_embeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocab_size, D] });
    return specs;
  }

  /**
   * The matrices a frozen base keeps in its stored dtype: every linear weight, the embedding
   * and an untied lm_head. Norm gains, biases and a reward model's score head stay f32 (tiny).
   */
  static frozenNames(c: ModelConfig): string[] {
    return [
      'model.embed_tokens.weight',
      ...Llama.linearModules(c).map((m) => `${m}.weight`),
      ...(c.tie_word_embeddings ? [] : ['lm_head.weight']),
    ];
  }

  static linearModules(c: ModelConfig): string[] {
    const mods: string[] = [];
    for (let l = 0; l < c.num_hidden_layers; l++) for (const { module } of layerLinears(c)) mods.push(`model.layers.${l}.${module}`);
    return mods;
  }

  /**
   * Random initialisation as HF does (normal(0, initializer_range), norms at 1, biases at 0),
   * except that the two projections feeding the residual stream are scaled by
   * 1/sqrt(2 * layers) as in GPT-2, which keeps small models trained from scratch stable.
   */
  static random<F extends FloatArray>(k: Kernels<F>, c: ModelConfig, seed: number, trainable = true, base: BaseDtype = 'f32'): Llama<F> {
    const specs = Llama.paramSpecs(c);
    const frozen = new Map<string, FrozenWeight>();
    if (base !== 'f32')
      for (const name of Llama.frozenNames(c)) {
        const [rows, cols] = specs.find((s) => s.name === name)!.shape;
        frozen.set(name, new FrozenWeight(base, [rows, cols], new Uint8Array(weightBytes(base, rows, cols))));
      }
    const params = new ParamStore(k, specs, trainable, frozen);
    const rng = new Rng(seed);
    const residualStd = c.initializer_range / Math.sqrt(2 * c.num_hidden_layers);
    for (const spec of params.specs) {
      if (spec.name.endsWith('.bias')) continue;
      if (spec.noDecay) {
        params.get(spec.name).data.fill(1);
        continue;
      }
      const std = /o_proj|down_proj/.test(spec.name) ? residualStd : c.initializer_range;
      const W = frozen.get(spec.name);
      if (!W) {
        const t = params.get(spec.name).data;
        for (let i = 0; i < t.length; i++) t[i] = rng.normal() * std;
        continue;
      }
      // a frozen matrix is drawn in f32 a few rows at a time and stored rounded: the f32 model's
      // values, never a whole matrix in f32
      const [rows, cols] = W.shape,
        step = Math.max(1, Math.floor(2 ** 20 / cols)),
        rowBytes = weightBytes(base, 1, cols);
      const t = new Float32Array(step * cols);
      for (let r = 0; r < rows; r += step) {
        const n = Math.min(step, rows - r);
        for (let i = 0; i < n * cols; i++) t[i] = rng.normal() * std;
        convertWeight(
          'f32',
          new Uint8Array(t.buffer, 0, n * cols * 4),
          n,
          cols,
          W.dtype,
          W.bytes.subarray(r * rowBytes, (r + n) * rowBytes),
        );
      }
    }
    return new Llama(c, params);
  }

  /** RoPE frequencies for a batch at these positions (dynamic NTK scales with the longest). */
  private ropeFor(pos: Int32Array): RopeFrequencies {
    return (
      this.fixedRope ??
      ropeFrequencies(
        this.config,
        pos.reduce((m, p) => Math.max(m, p + 1), 0),
      )
    );
  }

  private w(name: string): Tensor<F> {
    return this.params.get(name);
  }

  private proj(ctx: Context<F>, x: Tensor<F>, module: string): Tensor<F> {
    const bias = `${module}.bias`;
    const y = linear(ctx, x, this.params.weight(`${module}.weight`), this.params.has(bias) ? this.w(bias) : null);
    return this.hook ? this.hook(ctx, x, y, module) : y;
  }

  /**
   * The weight of a fused projection replacing `modules` (one GEMM instead of several): their
   * matrices stacked in place, when no hook (LoRA) wraps them, they have no bias and the store
   * keeps them back to back; null otherwise.
   */
  private stackedWeight(p: string, modules: string[]): Tensor<F> | null {
    if (this.hook || modules.some((m) => this.params.has(`${p}${m}.bias`))) return null;
    return this.params.stacked(modules.map((m) => `${p}${m}.weight`));
  }

  /**
   * q, k, v of a layer after RoPE (and the per-head q/k norms). One fused projection (W_pack, or
   * q/k/v stacked) feeds a kernel that splits and rotates in one pass; otherwise the three
   * projections (or W_pack's columns) are taken one by one.
   */
  private qkv(ctx: Context<F>, h: Tensor<F>, p: string, pos: Int32Array, freqs: RopeFrequencies): [Tensor<F>, Tensor<F>, Tensor<F>] {
    const c = this.config,
      hd = c.head_dim,
      H = c.num_attention_heads,
      KVH = c.num_key_value_heads;
    const stacked = c.fused_qkv ? null : this.stackedWeight(p, ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']);
    const packed = c.fused_qkv ? this.proj(ctx, h, `${p}self_attn.W_pack`) : stacked && linear(ctx, h, stacked);
    if (packed && !c.qk_norm) return qkvRope(ctx, packed, pos, H, KVH, hd, freqs);
    const qD = qWidth(c),
      kvD = kvWidth(c);
    let [q, k, v] = packed
      ? [sliceColumns(ctx, packed, 0, qD), sliceColumns(ctx, packed, qD, kvD), sliceColumns(ctx, packed, qD + kvD, kvD)]
      : [this.proj(ctx, h, `${p}self_attn.q_proj`), this.proj(ctx, h, `${p}self_attn.k_proj`), this.proj(ctx, h, `${p}self_attn.v_proj`)];
    if (c.qk_norm) {
      q = rmsnorm(ctx, q, this.w(`${p}self_attn.q_norm.weight`), c.rms_norm_eps);
      k = rmsnorm(ctx, k, this.w(`${p}self_attn.k_norm.weight`), c.rms_norm_eps);
    }
    return [rope(ctx, q, pos, H, hd, freqs), rope(ctx, k, pos, KVH, hd, freqs), v];
  }

  /** The SwiGLU MLP: gate and up as one stacked projection when they can be (see stackedWeight). */
  private mlp(ctx: Context<F>, h: Tensor<F>, p: string): Tensor<F> {
    const gu = this.stackedWeight(p, ['mlp.gate_proj', 'mlp.up_proj']);
    const m = gu
      ? swigluPacked(ctx, linear(ctx, h, gu), this.config.intermediate_size)
      : swiglu(ctx, this.proj(ctx, h, `${p}mlp.gate_proj`), this.proj(ctx, h, `${p}mlp.up_proj`));
    return this.proj(ctx, m, `${p}mlp.down_proj`);
  }

  private block(ctx: Context<F>, x: Tensor<F>, l: number, batch: TokenBatch, freqs: RopeFrequencies, opts: ForwardOptions): Tensor<F> {
    const c = this.config,
      hd = c.head_dim,
      p = `model.layers.${l}.`;
    const cache = opts.cache as KvCache<F> | undefined;
    const past = cache?.length ?? 0;
    const dims: AttentionDims = {
      B: batch.B,
      Tq: batch.T,
      Tk: past + batch.T,
      kvCap: cache?.capacity ?? batch.T,
      H: c.num_attention_heads,
      KVH: c.num_key_value_heads,
      headDim: hd,
      scale: 1 / Math.sqrt(hd),
      kvHeadMajor: !!cache,
    };
    const h = rmsnorm(ctx, x, this.w(`${p}input_layernorm.weight`), c.rms_norm_eps);
    let [q, k, v] = this.qkv(ctx, h, p, batch.pos, freqs);
    if (cache) {
      cache.write(l, k.data, v.data, batch.T);
      const shape = [batch.B, dims.KVH, cache.capacity, hd];
      k = new Tensor(cache.k[l], shape);
      v = new Tensor(cache.v[l], shape);
    }
    const a = attention(ctx, q, k, v, dims, opts.keyStart ?? null);
    const [x2, h2] = addRmsnorm(
      ctx,
      x,
      this.proj(ctx, a, `${p}self_attn.o_proj`),
      this.w(`${p}post_attention_layernorm.weight`),
      c.rms_norm_eps,
    );
    return add(ctx, x2, this.mlp(ctx, h2, p));
  }

  /** Final hidden states [B*T, D] (after the last RMSNorm). */
  hidden(ctx: Context<F>, batch: TokenBatch, opts: ForwardOptions = {}): Tensor<F> {
    const c = this.config;
    if (batch.ids.length !== batch.B * batch.T || batch.pos.length !== batch.ids.length) {
      throw new RangeError(`batch of ${batch.ids.length} ids / ${batch.pos.length} positions is not B*T = ${batch.B}x${batch.T}`);
    }
    if (opts.cache && opts.recompute) throw new Error('recompute is for training; a KV cache is for generation');
    const freqs = this.ropeFor(batch.pos);
    let x = embedding(ctx, this.params.weight('model.embed_tokens.weight'), batch.ids);
    // without a tape nothing needs a block's intermediates once it is done: its output goes to
    // one of two buffers and the rest is released, so scoring 1,024 positions of a 7B model
    // holds 2 of them, not the 12 GB of all 32 blocks
    const outputs = ctx.recording ? null : [ctx.tensor(x.shape, false), ctx.tensor(x.shape, false)];
    for (let l = 0; l < c.num_hidden_layers; l++) {
      if (outputs) {
        const m = ctx.ws.mark();
        outputs[l % 2].data.set(this.block(ctx, x, l, batch, freqs, opts).data);
        ctx.ws.release(m);
        x = outputs[l % 2];
      } else
        x = opts.recompute
          ? checkpoint(ctx, x, (cc, xx) => this.block(cc, xx, l, batch, freqs, opts))
          : this.block(ctx, x, l, batch, freqs, opts);
    }
    if (opts.cache) opts.cache.length += batch.T;
    return rmsnorm(ctx, x, this.w('model.norm.weight'), c.rms_norm_eps);
  }

  /**
   * The weights and caches of a decoding step for the native one-call step (Kernels.decodeStep),
   * with the same projections packed as qkv() and mlp() pack them; null where the step runs op
   * by op: kernels without it, a hook (LoRA) on the projections, NormHead, or more rows than
   * one decoding product takes.
   */
  decodePlan(cache: KvCache<F>): DecodePlan<F> | null {
    const c = this.config;
    if (!this.k.decodeStep || this.hook || c.norm_head || cache.B > FEW_ROWS) return null;
    const weight = (W: Weight<F>): DecodeWeight<F> => ({
      dtype: W instanceof FrozenWeight ? W.dtype : 'f32',
      data: W instanceof FrozenWeight ? W.bytes : W.data,
      rows: W.shape[0],
      cols: W.shape[1],
    });
    const bias = (module: string) => (this.params.has(`${module}.bias`) ? this.w(`${module}.bias`).data : null);
    const lin = (module: string): DecodeLinear<F> => ({ weight: weight(this.params.weight(`${module}.weight`)), bias: bias(module) });
    const packedOr = (p: string, modules: string[]): DecodeLinear<F>[] => {
      const stacked = this.stackedWeight(p, modules);
      return stacked ? [{ weight: weight(stacked), bias: null }] : modules.map((m) => lin(p + m));
    };
    return {
      B: cache.B,
      D: c.hidden_size,
      H: c.num_attention_heads,
      KVH: c.num_key_value_heads,
      headDim: c.head_dim,
      F: c.intermediate_size,
      kvCap: cache.capacity,
      eps: c.rms_norm_eps,
      embed: weight(this.params.weight('model.embed_tokens.weight')),
      head: weight(this.outputWeight()),
      finalNorm: this.w('model.norm.weight').data,
      layers: Array.from({ length: c.num_hidden_layers }, (_, l) => {
        const p = `model.layers.${l}.`;
        return {
          inputNorm: this.w(`${p}input_layernorm.weight`).data,
          postNorm: this.w(`${p}post_attention_layernorm.weight`).data,
          qNorm: c.qk_norm ? this.w(`${p}self_attn.q_norm.weight`).data : null,
          kNorm: c.qk_norm ? this.w(`${p}self_attn.k_norm.weight`).data : null,
          qkv: c.fused_qkv ? [lin(`${p}self_attn.W_pack`)] : packedOr(p, ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']),
          o: lin(`${p}self_attn.o_proj`),
          gateUp: packedOr(p, ['mlp.gate_proj', 'mlp.up_proj']),
          down: lin(`${p}mlp.down_proj`),
          kCache: cache.k[l],
          vCache: cache.v[l],
        };
      }),
    };
  }

  /**
   * One decoding step through a plan: the logits [B, V] of one new token per row (ids, pos [B])
   * written to `logits`, the cache one position longer.
   */
  decodeStep(plan: DecodePlan<F>, ids: Int32Array, pos: Int32Array, keyStart: Int32Array | null, cache: KvCache<F>, logits: F): void {
    const f = this.ropeFor(pos);
    this.k.decodeStep!(plan, ids, pos, keyStart, cache.length, f.invFreq, f.scale, logits);
    cache.length += 1;
  }

  /** The output projection as stored: lm_head, or the embedding when tied. */
  outputWeight(): Weight<F> {
    return this.params.weight(this.config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }

  /**
   * The output projection as applied: with NormHead (Baichuan 2) its rows normalised to unit
   * length (a frozen head is widened for that, as its rows: gathering every row is a copy).
   */
  private head(ctx: Context<F>): Weight<F> {
    const W = this.outputWeight();
    if (!this.config.norm_head) return W;
    if (!(W instanceof FrozenWeight)) return normalizeRows(ctx, W);
    return normalizeRows(
      ctx,
      embedding(
        ctx,
        W,
        Int32Array.from({ length: W.shape[0] }, (_, i) => i),
      ),
    );
  }

  /** Per-position log p(targets[r] | prefix); targets < 0 are ignored (logp 0). */
  logprobs(ctx: Context<F>, batch: TokenBatch, targets: Int32Array, opts: ForwardOptions = {}): Tensor<F> {
    const h = this.hidden(ctx, batch, opts);
    return linearLogprobs(ctx, h, this.head(ctx), targets, opts.logitsBlock);
  }

  /** Logits [rows, V] for the given hidden rows, no gradient (generation, scoring). */
  logits(ctx: Context<F>, hidden: Tensor<F>): F {
    const W = this.head(ctx.inference());
    const [V, D] = W.shape;
    const rows = hidden.size / D;
    const out = ctx.ws.alloc(rows * V);
    projectRows(this.k, rows, hidden.data, W, 0, out);
    return out;
  }
}

/** Positions 0..T-1 for every row of a [B, T] batch. */
export function sequentialPositions(B: number, T: number): Int32Array {
  const pos = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) pos[b * T + t] = t;
  return pos;
}
