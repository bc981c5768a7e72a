import { z } from 'zod';

/**
 * The decoder families chimed runs, chosen by config.json `architectures` / `model_type`. They
 * share one decoder (src/model/llama.ts) and differ only in the switches of ModelConfig:
 *   llama     Llama-2 / Ziya / Llama-3.x: attention_bias (q/k/v/o), mlp_bias, head_dim, rope_scaling
 *   qwen2     Qwen2 / Qwen2.5: q/k/v biases (no o bias), tied embeddings in the small sizes
 *   qwen3     Qwen3 dense: per-head RMSNorm of q and k before RoPE, head_dim != hidden/heads
 *   baichuan  Baichuan-7B (BaiChuanForCausalLM) and Baichuan2-7B (BaichuanForCausalLM): fused
 *             q/k/v projection W_pack; Baichuan 2 normalises the rows of lm_head (NormHead)
 */
export type ModelType = 'llama' | 'qwen2' | 'qwen3' | 'baichuan';
export const MODEL_TYPES: readonly ModelType[] = ['llama', 'qwen2', 'qwen3', 'baichuan'];

/** HF rope_scaling, normalised (`type` read as `rope_type`); see src/model/rope.ts for the maths. */
export interface RopeScaling {
  rope_type: 'linear' | 'dynamic' | 'yarn' | 'llama3';
  factor: number;
  /** yarn, llama3: the context length the model was pre-trained with. */
  original_max_position_embeddings?: number;
  /** llama3 */
  low_freq_factor?: number;
  high_freq_factor?: number;
  /** yarn */
  beta_fast?: number;
  beta_slow?: number;
  attention_factor?: number;
  mscale?: number;
  mscale_all_dim?: number;
  truncate?: boolean;
}

/**
 * A decoder architecture, normalised from an HF config.json. Field names are HF's where HF has
 * one; the per-family switches below are derived from model_type and the HF keys, so the
 * decoder never looks at the family name.
 */
export interface ModelConfig {
  model_type: ModelType;
  /** The *ForCausalLM class config.json names (Baichuan spells it two ways). */
  architecture: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  max_position_embeddings: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
  initializer_range: number;
  /** Biases on q_proj, k_proj, v_proj. */
  qkv_bias: boolean;
  /** Bias on o_proj. */
  o_bias: boolean;
  /** Biases on gate_proj, up_proj, down_proj. */
  mlp_bias: boolean;
  /** RMSNorm over each head of q and k before RoPE (q_norm / k_norm). */
  qk_norm: boolean;
  /** q, k, v from one projection self_attn.W_pack [q; k; v]. */
  fused_qkv: boolean;
  /** Logits against the row-normalised lm_head. */
  norm_head: boolean;
  bos_token_id?: number;
  eos_token_id?: number;
  pad_token_id?: number;
  /** config.json keys the family's modeling code does not read (auto_map, ...), written back as they were. */
  extra: Record<string, unknown>;
}

export class ConfigError extends Error {}

interface Family {
  /** The *ForCausalLM names config.json may give; the first is written for a new model. */
  architectures: string[];
  defaults: { max_position_embeddings: number; rope_theta: number; head_dim?: number };
}

const FAMILIES: Record<ModelType, Family> = {
  llama: { architectures: ['LlamaForCausalLM'], defaults: { max_position_embeddings: 2048, rope_theta: 10000 } },
  qwen2: { architectures: ['Qwen2ForCausalLM'], defaults: { max_position_embeddings: 32768, rope_theta: 10000 } },
  qwen3: { architectures: ['Qwen3ForCausalLM'], defaults: { max_position_embeddings: 32768, rope_theta: 10000, head_dim: 128 } },
  baichuan: {
    architectures: ['BaichuanForCausalLM', 'BaiChuanForCausalLM'],
    defaults: { max_position_embeddings: 4096, rope_theta: 10000 },
  },
};

const CAUSAL = 'ForCausalLM',
  SEQ_CLS = 'ForSequenceClassification';

/** The reward-model class of a family: LlamaForCausalLM -> LlamaForSequenceClassification. */
export function sequenceClassificationArchitecture(c: ModelConfig): string {
  return c.architecture.slice(0, -CAUSAL.length) + SEQ_CLS;
}

/** Family of an architectures[] entry (causal LM or its sequence-classification twin). */
function familyOfArchitecture(name: string): { type: ModelType; causal: string } | null {
  const causal = name.endsWith(SEQ_CLS) ? name.slice(0, -SEQ_CLS.length) + CAUSAL : name;
  for (const type of MODEL_TYPES) if (FAMILIES[type].architectures.includes(causal)) return { type, causal };
  return null;
}

const posInt = z.number().int().positive();
const tokenId = z.number().int().nonnegative();
const positive = z.number().positive();

const RopeScalingSchema = z.object({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  factor: z.number().min(1).optional(),
  original_max_position_embeddings: posInt.optional(),
  low_freq_factor: positive.optional(),
  high_freq_factor: positive.optional(),
  beta_fast: positive.optional(),
  beta_slow: positive.optional(),
  attention_factor: positive.optional(),
  mscale: z.number().optional(),
  mscale_all_dim: z.number().optional(),
  truncate: z.boolean().optional(),
  rope_theta: positive.optional(),
});

type Rule = { families: readonly ModelType[]; schema: z.ZodType; unsupported?: (v: never, raw: Record<string, unknown>) => string | null };
const ALL = MODEL_TYPES;
const LLAMA_QWEN: readonly ModelType[] = ['llama', 'qwen2', 'qwen3'];
const QWEN: readonly ModelType[] = ['qwen2', 'qwen3'];

/**
 * THE list of config.json keys that change the maths: each family's HF modeling code reads
 * exactly these (modeling_llama.py, modeling_qwen2.py, modeling_qwen3.py, Baichuan's
 * modeling_baichuan.py). A value we do not implement is refused with the key named; keys a
 * family's code does not read change nothing there and are kept as `extra`.
 */
const MATH_KEYS: Record<string, Rule> = {
  vocab_size: { families: ALL, schema: posInt },
  hidden_size: { families: ALL, schema: posInt },
  intermediate_size: { families: ALL, schema: posInt },
  num_hidden_layers: { families: ALL, schema: posInt },
  num_attention_heads: { families: ALL, schema: posInt },
  num_key_value_heads: { families: LLAMA_QWEN, schema: posInt },
  head_dim: { families: LLAMA_QWEN, schema: posInt },
  hidden_act: {
    families: ALL,
    schema: z.string(),
    unsupported: (v: string) => (v === 'silu' ? null : `${JSON.stringify(v)} is not supported (only silu, the SwiGLU MLP)`),
  },
  max_position_embeddings: { families: ALL, schema: posInt },
  rms_norm_eps: { families: ALL, schema: positive },
  tie_word_embeddings: { families: ALL, schema: z.boolean() },
  initializer_range: { families: ALL, schema: positive },
  rope_theta: {
    families: ALL,
    schema: positive,
    unsupported: (v: number, raw) =>
      raw.model_type === 'baichuan' && v !== 10000 ? `${v}: Baichuan's modeling code fixes the RoPE base at 10000` : null,
  },
  rope_scaling: {
    families: ALL,
    schema: RopeScalingSchema.nullable(),
    unsupported: (v: z.infer<typeof RopeScalingSchema> | null, raw) => ropeScalingProblem(v, raw),
  },
  // transformers v5 writes rope_theta and the scaling together under this name
  rope_parameters: {
    families: ALL,
    schema: RopeScalingSchema.nullable(),
    unsupported: (v: z.infer<typeof RopeScalingSchema> | null, raw) => ropeScalingProblem(v, raw),
  },
  partial_rotary_factor: {
    families: LLAMA_QWEN,
    schema: z.number(),
    unsupported: (v: number) => (v === 1 ? null : `${v}: partial rotary embeddings are not supported`),
  },
  attention_bias: { families: ['llama', 'qwen3'], schema: z.boolean() },
  mlp_bias: { families: ['llama'], schema: z.boolean() },
  attention_dropout: {
    families: LLAMA_QWEN,
    schema: z.number(),
    unsupported: (v: number) => (v === 0 ? null : `${v}: attention dropout is not implemented`),
  },
  // Llama-2's tensor-parallel slicing computes the same products
  pretraining_tp: { families: ['llama'], schema: posInt },
  use_sliding_window: {
    families: QWEN,
    schema: z.boolean(),
    unsupported: (v: boolean) => (v ? 'true: sliding-window attention is not implemented' : null),
  },
  // only read when use_sliding_window is true
  sliding_window: { families: QWEN, schema: posInt.nullable() },
  max_window_layers: { families: QWEN, schema: z.number().int().nonnegative() },
  layer_types: {
    families: LLAMA_QWEN,
    schema: z.array(z.string()),
    unsupported: (v: string[]) =>
      v.every((t) => t === 'full_attention') ? null : `${JSON.stringify([...new Set(v)])}: only full_attention layers are implemented`,
  },
  use_mrope: {
    families: ['qwen2'],
    schema: z.boolean(),
    unsupported: (v: boolean) => (v ? 'true: multimodal RoPE is not implemented' : null),
  },
  // Baichuan-13B / Baichuan2-13B give only this (no max_position_embeddings): their code uses ALiBi
  model_max_length: {
    families: ['baichuan'],
    schema: posInt,
    unsupported: (_v: number, raw) =>
      raw.max_position_embeddings === undefined
        ? 'without max_position_embeddings this is a Baichuan-13B layout, whose ALiBi attention biases are not implemented (Baichuan-7B and Baichuan2-7B are)'
        : null,
  },
  z_loss_weight: {
    families: ['baichuan'],
    schema: z.number(),
    unsupported: (v: number) => (v === 0 ? null : `${v}: Baichuan 2's z-loss is not implemented`),
  },
  bos_token_id: { families: ALL, schema: tokenId.nullable() },
  eos_token_id: { families: ALL, schema: z.union([tokenId, z.array(tokenId).min(1)]).nullable() },
  pad_token_id: { families: ALL, schema: tokenId.nullable() },
};

/** Keys that change nothing anywhere: accepted in a hand-written config, regenerated on save. */
const GENERAL_KEYS = new Set(['architectures', 'model_type', 'torch_dtype', 'dtype', 'transformers_version', 'use_cache', '_name_or_path']);
/** Keys of the normalised config written by toHfConfig itself, never copied from `extra`. */
const REGENERATED = new Set([
  'architectures',
  'model_type',
  'torch_dtype',
  'dtype',
  'use_cache',
  'num_labels',
  'id2label',
  'label2id',
  'problem_type',
]);

const ROPE_TYPES = ['linear', 'dynamic', 'yarn', 'llama3'] as const;

function ropeScalingProblem(v: z.infer<typeof RopeScalingSchema> | null, raw: Record<string, unknown>): string | null {
  if (v === null) return null;
  const type = v.rope_type ?? v.type ?? 'default';
  if (type === 'default') return null;
  if (raw.model_type === 'baichuan') return `Baichuan's modeling code has a fixed RoPE without scaling`;
  if (!(ROPE_TYPES as readonly string[]).includes(type))
    return `rope_type ${JSON.stringify(type)} is not supported (supported: ${ROPE_TYPES.join(', ')})`;
  if (v.factor === undefined) return `rope_type ${type} needs a factor`;
  if (type === 'llama3') {
    for (const k of ['low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'] as const)
      if (v[k] === undefined) return `rope_type llama3 needs ${k}`;
    if (v.low_freq_factor! >= v.high_freq_factor!) return 'llama3 needs low_freq_factor < high_freq_factor';
  }
  return null;
}

/** The HF rope_scaling dict (or v5 rope_parameters) as a RopeScaling, null for plain RoPE. */
function normaliseRopeScaling(v: z.infer<typeof RopeScalingSchema> | null | undefined): RopeScaling | null {
  const type = v ? (v.rope_type ?? v.type ?? 'default') : 'default';
  if (!v || type === 'default') return null;
  const { rope_type: _a, type: _b, rope_theta: _c, ...rest } = v;
  return { rope_type: type as RopeScaling['rope_type'], ...rest, factor: v.factor! };
}

export interface ParseOptions {
  /** A config the user wrote (the pipeline's `model.config`): keys the family does not read are refused, so a typo is caught. */
  strict?: boolean;
}

/** Validates a parsed config.json; `source` names the file (or field) in every error. */
export function parseModelConfig(input: unknown, source: string, opts: ParseOptions = {}): ModelConfig {
  const fail = (msg: string): never => {
    throw new ConfigError(`${source}: ${msg}`);
  };
  if (typeof input !== 'object' || input === null || Array.isArray(input)) fail('a model config must be a JSON object');
  // a key set to undefined (a config built in code) is an absent key, as in JSON
  const raw = Object.fromEntries(Object.entries(input as Record<string, unknown>).filter(([, v]) => v !== undefined));

  // the family: architectures first, then model_type, else LLaMA
  let type: ModelType | undefined, architecture: string | undefined;
  if (raw.architectures !== undefined) {
    if (!Array.isArray(raw.architectures) || !raw.architectures.length || !raw.architectures.every((a) => typeof a === 'string'))
      fail('architectures must be a non-empty list of class names');
    for (const name of raw.architectures as string[]) {
      const f = familyOfArchitecture(name);
      if (!f)
        fail(
          `architectures: ${name} is not supported (supported: ${MODEL_TYPES.flatMap((t) => FAMILIES[t].architectures).join(', ')} and their ${SEQ_CLS} reward models)`,
        );
      if (type && f!.type !== type) fail(`architectures: ${name} is not the ${type} family of ${architecture}`);
      type = f!.type;
      architecture ??= f!.causal;
    }
  }
  if (raw.model_type !== undefined) {
    if (!(MODEL_TYPES as readonly unknown[]).includes(raw.model_type))
      fail(`model_type: ${JSON.stringify(raw.model_type)} is not supported (supported: ${MODEL_TYPES.join(', ')})`);
    if (type && raw.model_type !== type)
      fail(`model_type ${raw.model_type} does not match architectures ${JSON.stringify(raw.architectures)}`);
    type = raw.model_type as ModelType;
  }
  type ??= 'llama';
  raw.model_type = type;
  const family = FAMILIES[type];
  architecture ??= family.architectures[0];

  // every maths key the family reads: type, then supported value
  const extra: Record<string, unknown> = {};
  const v: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const rule = MATH_KEYS[key];
    if (rule && rule.families.includes(type)) {
      const r = rule.schema.safeParse(value);
      if (!r.success) fail(`${[key, ...r.error.issues[0].path].join('.')}: ${r.error.issues[0].message}`);
      const problem = rule.unsupported?.(r.data as never, raw);
      if (problem) fail(`${key}: ${problem}`);
      v[key] = r.data;
    } else if (opts.strict && !GENERAL_KEYS.has(key)) {
      fail(
        `unknown key ${key} for model_type ${type} (keys: ${Object.keys(MATH_KEYS)
          .filter((k) => MATH_KEYS[k].families.includes(type!))
          .join(', ')})`,
      );
    } else if (!REGENERATED.has(key)) {
      extra[key] = value;
    }
  }
  for (const key of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads'])
    if (v[key] === undefined) fail(`${key}: required`);
  const n = (key: string) => v[key] as number;
  const heads = n('num_attention_heads');
  const kv = (v.num_key_value_heads as number | undefined) ?? heads;
  const hd = (v.head_dim as number | undefined) ?? family.defaults.head_dim ?? n('hidden_size') / heads;
  if (v.head_dim === undefined && family.defaults.head_dim === undefined && n('hidden_size') % heads !== 0)
    fail(`num_attention_heads (${heads}) does not divide hidden_size (${n('hidden_size')}); give head_dim`);
  if (heads % kv !== 0) fail(`num_key_value_heads (${kv}) does not divide num_attention_heads (${heads})`);
  if (hd % 2 !== 0) fail(`head size ${hd} must be even for rotary embeddings`);
  const ropeParams = v.rope_parameters as z.infer<typeof RopeScalingSchema> | null | undefined;
  if (ropeParams && v.rope_scaling) fail('give rope_scaling or rope_parameters, not both');
  const scaling = normaliseRopeScaling((v.rope_scaling ?? ropeParams) as z.infer<typeof RopeScalingSchema> | null | undefined);
  const eosRaw = v.eos_token_id as number | number[] | null | undefined;
  const eos = Array.isArray(eosRaw) ? eosRaw[0] : (eosRaw ?? undefined);
  const bos = (v.bos_token_id as number | null | undefined) ?? undefined,
    pad = (v.pad_token_id as number | null | undefined) ?? undefined;
  for (const [k, id] of [
    ['bos_token_id', bos],
    ['eos_token_id', eos],
    ['pad_token_id', pad],
  ] as const) {
    if (id !== undefined && id >= n('vocab_size')) fail(`${k} ${id} is outside the vocabulary (vocab_size ${n('vocab_size')})`);
  }
  // keys of the family kept in extra so they are written back (qwen's window settings, Baichuan's model_max_length, ...)
  for (const key of [
    'pretraining_tp',
    'use_sliding_window',
    'sliding_window',
    'max_window_layers',
    'layer_types',
    'use_mrope',
    'model_max_length',
    'z_loss_weight',
    'attention_dropout',
    'partial_rotary_factor',
  ]) {
    if (v[key] !== undefined) extra[key] = v[key];
  }
  const attentionBias = (v.attention_bias as boolean | undefined) ?? false;
  return {
    model_type: type,
    architecture,
    vocab_size: n('vocab_size'),
    hidden_size: n('hidden_size'),
    intermediate_size: n('intermediate_size'),
    num_hidden_layers: n('num_hidden_layers'),
    num_attention_heads: heads,
    num_key_value_heads: kv,
    head_dim: hd,
    rope_theta: (v.rope_theta as number | undefined) ?? ropeParams?.rope_theta ?? family.defaults.rope_theta,
    rope_scaling: scaling,
    max_position_embeddings: (v.max_position_embeddings as number | undefined) ?? family.defaults.max_position_embeddings,
    rms_norm_eps: (v.rms_norm_eps as number | undefined) ?? 1e-6,
    tie_word_embeddings: (v.tie_word_embeddings as boolean | undefined) ?? false,
    initializer_range: (v.initializer_range as number | undefined) ?? 0.02,
    qkv_bias: type === 'qwen2' || ((type === 'llama' || type === 'qwen3') && attentionBias),
    o_bias: (type === 'llama' || type === 'qwen3') && attentionBias,
    mlp_bias: type === 'llama' && ((v.mlp_bias as boolean | undefined) ?? false),
    qk_norm: type === 'qwen3',
    fused_qkv: type === 'baichuan',
    // Baichuan2-7B is BaichuanForCausalLM with RoPE (the 13B ALiBi layouts are refused above)
    norm_head: type === 'baichuan' && architecture === 'BaichuanForCausalLM',
    ...(bos !== undefined && { bos_token_id: bos }),
    ...(eos !== undefined && { eos_token_id: eos }),
    ...(pad !== undefined && { pad_token_id: pad }),
    extra,
  };
}

/** Width of q (and of o_proj's input): heads * head_dim. */
export function qWidth(c: ModelConfig): number {
  return c.num_attention_heads * c.head_dim;
}

/** Width of k and of v: kv heads * head_dim. */
export function kvWidth(c: ModelConfig): number {
  return c.num_key_value_heads * c.head_dim;
}

/**
 * The longest sequence the model is meant to see: max_position_embeddings, times the factor
 * for dynamic NTK (whose max_position_embeddings stays the pre-training length it scales from).
 */
export function contextLength(c: ModelConfig): number {
  return c.rope_scaling?.rope_type === 'dynamic'
    ? Math.floor(c.max_position_embeddings * c.rope_scaling.factor)
    : c.max_position_embeddings;
}

/**
 * The config with RoPE scaled by `factor` to train or run past the pre-training length, as
 * ChiMed-GPT extended Ziya to 4,096 tokens: linear and yarn raise max_position_embeddings to
 * factor x the old length (yarn records the old one as original_max_position_embeddings);
 * dynamic NTK keeps it, since HF scales from it as sequences grow.
 */
export function withRopeScaling(c: ModelConfig, type: 'linear' | 'dynamic' | 'yarn', factor: number): ModelConfig {
  if (c.model_type === 'baichuan') throw new ConfigError(`rope_scaling: Baichuan's modeling code has a fixed RoPE without scaling`);
  if (!(factor > 1)) throw new ConfigError(`rope_scaling: factor must be > 1, got ${factor}`);
  if (c.rope_scaling) {
    if (c.rope_scaling.rope_type === type && c.rope_scaling.factor === factor) return c;
    throw new ConfigError(
      `rope_scaling: the model already has ${c.rope_scaling.rope_type} scaling (factor ${c.rope_scaling.factor}); scaling it again is not supported`,
    );
  }
  const old = c.max_position_embeddings;
  const scaling: RopeScaling =
    type === 'yarn' ? { rope_type: type, factor, original_max_position_embeddings: old } : { rope_type: type, factor };
  return { ...c, rope_scaling: scaling, max_position_embeddings: type === 'dynamic' ? old : Math.round(old * factor) };
}

/** The config.json HF transformers (or Baichuan's code) reads for this architecture. */
export function toHfConfig(c: ModelConfig): Record<string, unknown> {
  const common = {
    ...c.extra,
    architectures: [c.architecture],
    model_type: c.model_type,
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    hidden_act: 'silu',
    max_position_embeddings: c.max_position_embeddings,
    rms_norm_eps: c.rms_norm_eps,
    tie_word_embeddings: c.tie_word_embeddings,
    initializer_range: c.initializer_range,
    ...(c.bos_token_id !== undefined && { bos_token_id: c.bos_token_id }),
    ...(c.eos_token_id !== undefined && { eos_token_id: c.eos_token_id }),
    ...(c.pad_token_id !== undefined && { pad_token_id: c.pad_token_id }),
    torch_dtype: 'float32',
    use_cache: true,
  };
  if (c.model_type === 'baichuan') return common;
  const rope = { num_key_value_heads: c.num_key_value_heads, head_dim: c.head_dim, rope_theta: c.rope_theta, rope_scaling: c.rope_scaling };
  if (c.model_type === 'qwen2') return { ...common, ...rope, use_sliding_window: false };
  if (c.model_type === 'qwen3') return { ...common, ...rope, attention_bias: c.qkv_bias, use_sliding_window: false };
  return { ...common, ...rope, attention_bias: c.qkv_bias, mlp_bias: c.mlp_bias };
}
