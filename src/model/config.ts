import { z } from 'zod';

/** LLaMA-family architecture, named as in HF `LlamaConfig` so config.json round-trips. */
export interface LlamaConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  rope_theta: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
  initializer_range: number;
  bos_token_id?: number;
  eos_token_id?: number;
  pad_token_id?: number;
}

const posInt = z.number().int().positive();

// HF config.json carries many keys we do not use (torch_dtype, transformers_version, ...):
// they are accepted and ignored, but a key we do use must have the right type.
const schema = z.object({
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.optional(),
  head_dim: posInt.optional(),
  rope_theta: z.number().positive().default(10000),
  max_position_embeddings: posInt.default(4096),
  rms_norm_eps: z.number().positive().default(1e-6),
  tie_word_embeddings: z.boolean().default(false),
  initializer_range: z.number().positive().default(0.02),
  hidden_act: z.literal('silu').optional(),
  attention_bias: z.literal(false).optional(),
  mlp_bias: z.literal(false).optional(),
  rope_scaling: z.null().optional(),
  bos_token_id: z.number().int().nonnegative().optional(),
  eos_token_id: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative()).min(1)]).optional(),
  pad_token_id: z.number().int().nonnegative().nullable().optional(),
});

export class ConfigError extends Error {}

/** Validates a parsed config.json; `source` names the file in every error. */
export function parseLlamaConfig(raw: unknown, source: string): LlamaConfig {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ConfigError(`${source}: invalid model config: ${issues}`);
  }
  const c = r.data;
  const kv = c.num_key_value_heads ?? c.num_attention_heads;
  const fail = (msg: string) => { throw new ConfigError(`${source}: ${msg}`); };
  if (c.hidden_size % c.num_attention_heads !== 0) fail(`num_attention_heads (${c.num_attention_heads}) does not divide hidden_size (${c.hidden_size})`);
  if (c.num_attention_heads % kv !== 0) fail(`num_key_value_heads (${kv}) does not divide num_attention_heads (${c.num_attention_heads})`);
  const headDim = c.hidden_size / c.num_attention_heads;
  if (c.head_dim !== undefined && c.head_dim !== headDim) fail(`head_dim ${c.head_dim} differs from hidden_size / num_attention_heads = ${headDim}; only the standard head size is supported`);
  if (headDim % 2 !== 0) fail(`head size ${headDim} must be even for rotary embeddings`);
  const eos = Array.isArray(c.eos_token_id) ? c.eos_token_id[0] : c.eos_token_id;
  for (const [k, v] of [['bos_token_id', c.bos_token_id], ['eos_token_id', eos], ['pad_token_id', c.pad_token_id]] as const) {
    if (typeof v === 'number' && v >= c.vocab_size) fail(`${k} ${v} is outside the vocabulary (vocab_size ${c.vocab_size})`);
  }
  return {
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: kv,
    rope_theta: c.rope_theta,
    max_position_embeddings: c.max_position_embeddings,
    rms_norm_eps: c.rms_norm_eps,
    tie_word_embeddings: c.tie_word_embeddings,
    initializer_range: c.initializer_range,
    ...(c.bos_token_id !== undefined && { bos_token_id: c.bos_token_id }),
    ...(eos !== undefined && { eos_token_id: eos }),
    ...(typeof c.pad_token_id === 'number' && { pad_token_id: c.pad_token_id }),
  };
}

export function headDim(c: LlamaConfig): number {
  return c.hidden_size / c.num_attention_heads;
}

/** The config.json HF transformers writes for this architecture. */
export function toHfConfig(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    head_dim: headDim(c),
    torch_dtype: 'float32',
    use_cache: true,
    ...c,
  };
}
