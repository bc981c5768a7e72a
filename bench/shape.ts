import { BASE_DTYPES, type BaseDtype } from '../src/engine/frozen.js';
import { parse, UsageError, type Options, type Parsed } from '../src/io/argv.js';
import { readConfigFile } from '../src/model/checkpoint.js';
import { parseModelConfig, type ModelConfig } from '../src/model/config.js';

/** The flags that shape a bench's random LLaMA (bench train, bench generate). */
export const SHAPE_FLAGS: Options = {
  vocab: { type: 'string' },
  dim: { type: 'string' },
  layers: { type: 'string' },
  heads: { type: 'string' },
  'kv-heads': { type: 'string' },
  ffn: { type: 'string' },
};

/** Parses argv with the shape flags added to a bench's own. */
export const parseWithShape = (argv: string[], options: Options, usage: string): Parsed =>
  parse(argv, { ...SHAPE_FLAGS, ...options }, usage);

/** The model config those flags give, each bench with its own defaults (--kv-heads: --heads). */
export function shapeConfig(
  a: Parsed,
  d: { vocab: number; dim: number; ffn: number; layers: number; heads: number },
  maxPositions: number,
): ModelConfig {
  const heads = a.int('heads', d.heads);
  return parseModelConfig(
    {
      vocab_size: a.int('vocab', d.vocab),
      hidden_size: a.int('dim', d.dim),
      intermediate_size: a.int('ffn', d.ffn),
      num_hidden_layers: a.int('layers', d.layers),
      num_attention_heads: heads,
      num_key_value_heads: a.int('kv-heads', heads),
      max_position_embeddings: maxPositions,
    },
    'bench arguments',
  );
}

/** --config CONFIG.json (an HF config of any supported family, e.g. ../shared/models/qwen2.5-0.5b.json), else the shape flags. */
export function benchConfig(a: Parsed, d: Parameters<typeof shapeConfig>[1], maxPositions: number): ModelConfig {
  const file = a.str('config');
  return file ? readConfigFile(file) : shapeConfig(a, d, maxPositions);
}

/** --base-dtype: how the bench keeps a frozen base (default f32). */
export function baseDtypeArg(a: Parsed): BaseDtype {
  const v = a.str('base-dtype') ?? 'f32';
  if (!(BASE_DTYPES as readonly string[]).includes(v)) throw new UsageError(`--base-dtype: expected ${BASE_DTYPES.join(', ')}, got "${v}"`);
  return v as BaseDtype;
}
