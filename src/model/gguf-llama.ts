// Our model + Tokenizer + chat template as the GGUF llama.cpp loads for the family's
// architecture (llama, qwen2, qwen3, baichuan): the metadata keys and tensor names that
// llama.cpp's convert_hf_to_gguf.py writes for the HF model (conversion/llama.py, qwen.py,
// baichuan.py and base.py there; key names from gguf-py/gguf/constants.py; what each
// architecture reads from src/models/*.cpp); the tokenizer's keys come from gguf-tokenizer.ts.
import { FrozenWeight } from '../engine/frozen.js';
import { frozenToF32 } from '../engine/native.js';
import type { ModelConfig } from './config.js';
import { Llama } from './llama.js';
import { ropeFrequencies } from './rope.js';
import type { ChatTemplate } from '../tokenizer/chat-template.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { kv, Q8_0_BLOCK, writeGguf, type GgmlDtype, type GgufMetadata, type GgufTensorToWrite } from '../io/gguf.js';
import { tokenizerMetadata } from '../io/gguf-tokenizer.js';

export type GgufExportDtype = 'f32' | 'f16' | 'q8_0';
export const GGUF_EXPORT_DTYPES: readonly GgufExportDtype[] = ['f32', 'f16', 'q8_0'];

export interface LlamaGgufSource {
  model: Llama<Float32Array>;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** general.name */
  name?: string;
}

/** llama_ftype of the file as a whole (general.file_type). */
const FILE_TYPE: Record<GgufExportDtype, number> = { f32: 0, f16: 1, q8_0: 7 };
/** GGML_QNT_VERSION; convert_hf_to_gguf.py writes it into every file. */
const QUANTIZATION_VERSION = 2;

/**
 * HF LLaMA rotates q/k with rotate-half RoPE (pairs (i, i + headDim/2)); llama.cpp's llama
 * architecture rotates adjacent pairs (2i, 2i+1). convert_hf_to_gguf.py's LlamaModel.permute
 * reorders the rows of q_proj and k_proj within each head so that row j*headDim/2 + i moves
 * to row 2i + j: the same rotation then acts on the same values, and q.k is unchanged
 * because q and k are permuted alike. `nHead` is the head count of that projection
 * (num_key_value_heads for k_proj).
 */
export function permuteForRope(w: Float32Array, nHead: number, cols: number): Float32Array {
  const rows = w.length / cols;
  if (!Number.isInteger(rows) || rows % (2 * nHead) !== 0)
    throw new RangeError(`permuteForRope: ${rows} rows do not split into ${nHead} heads of even size`);
  const half = rows / nHead / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHead; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const src = (h * 2 * half + j * half + i) * cols;
        out.set(w.subarray(src, src + cols), (h * 2 * half + 2 * i + j) * cols);
      }
    }
  }
  return out;
}

/**
 * The llama.cpp architecture of a model and whether its q/k rows are permuted: llama.cpp's
 * llama and baichuan graphs rotate adjacent pairs (RoPE "norm"), its qwen2 and qwen3 graphs
 * rotate halves as HF does ("neox"). llama.cpp's baichuan graph applies RoPE only to 32-layer
 * models (its 7B; 40 layers means the 13B with ALiBi, any other count gets no positions at
 * all), so a Baichuan of another depth is written as llama, the same graph once W_pack is
 * split, with `note` saying so.
 */
export function ggufArchitecture(c: ModelConfig): { arch: 'llama' | 'qwen2' | 'qwen3' | 'baichuan'; permute: boolean; notes: string[] } {
  const notes: string[] = [];
  // dynamic NTK equals plain RoPE up to max_position_embeddings, where context_length stops
  if (c.rope_scaling?.rope_type === 'dynamic')
    notes.push(
      `llama.cpp has no dynamic NTK RoPE: the GGUF uses plain RoPE, exact up to its context_length of ${c.max_position_embeddings} tokens`,
    );
  if (c.model_type === 'qwen2' || c.model_type === 'qwen3') return { arch: c.model_type, permute: false, notes };
  if (c.model_type === 'baichuan' && c.num_hidden_layers !== 32) {
    notes.push(
      `llama.cpp's baichuan architecture applies RoPE only to 32-layer models; this ${c.num_hidden_layers}-layer Baichuan is written as the llama architecture, which computes the same`,
    );
    return { arch: 'llama', permute: true, notes };
  }
  return { arch: c.model_type === 'baichuan' ? 'baichuan' : 'llama', permute: true, notes };
}

const GLOBAL_NAMES: Record<string, string> = {
  'model.embed_tokens.weight': 'token_embd.weight',
  'model.norm.weight': 'output_norm.weight',
  'lm_head.weight': 'output.weight',
};
const BLOCK_NAMES: Record<string, string> = {
  input_layernorm: 'attn_norm',
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.q_norm': 'attn_q_norm',
  'self_attn.k_norm': 'attn_k_norm',
  'self_attn.o_proj': 'attn_output',
  post_attention_layernorm: 'ffn_norm',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
};

/** HF tensor name -> GGUF tensor name (W_pack is split before naming). */
function ggufTensorName(hf: string): string {
  if (GLOBAL_NAMES[hf]) return GLOBAL_NAMES[hf];
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (!m || !BLOCK_NAMES[m[2]]) throw new Error(`GGUF export: no llama.cpp name for tensor ${hf}`);
  return `blk.${m[1]}.${BLOCK_NAMES[m[2]]}.${m[3]}`;
}

/**
 * Storage type per tensor as convert_hf_to_gguf.py chooses it: vectors (norms, biases) stay
 * F32; a Q8_0 matrix whose rows are not whole 32-value blocks falls back to F16.
 */
function tensorDtype(shape: readonly number[], dtype: GgufExportDtype): GgmlDtype {
  if (shape.length < 2 || dtype === 'f32') return 'F32';
  if (dtype === 'f16' || shape[shape.length - 1] % Q8_0_BLOCK !== 0) return 'F16';
  return 'Q8_0';
}

/** Rows [start, start + n) of a row-major [rows, cols] matrix. */
const rowSlice = (w: Float32Array, cols: number, start: number, n: number) => w.subarray(start * cols, (start + n) * cols);

/**
 * The model's tensors under llama.cpp's names: W_pack split into q/k/v, q/k rows (and biases)
 * permuted for the norm-RoPE architectures, Baichuan 2's lm_head rows normalised (llama.cpp
 * has no NormHead; its converter leaves them as stored), Llama-3's RoPE factors as
 * rope_freqs.weight. No output.weight when tied (llama.cpp reuses token_embd).
 */
export function llamaGgufTensors(model: Llama<Float32Array>, dtype: GgufExportDtype): GgufTensorToWrite[] {
  if (model.hook) throw new Error('GGUF export: the model has an attached adapter; merge it first');
  const c = model.config,
    { arch, permute } = ggufArchitecture(c);
  if (arch === 'qwen3' && c.o_bias)
    throw new Error("GGUF export: llama.cpp's qwen3 architecture loads no o_proj.bias (this model has attention_bias: true)");
  const out: GgufTensorToWrite[] = [];
  const push = (hf: string, shape: readonly number[], data: Float32Array | (() => Float32Array)) =>
    out.push({ name: ggufTensorName(hf), shape, data, dtype: tensorDtype(shape, dtype) });
  // q/k weights [heads*hd, D] and biases [heads*hd] (as one column)
  const rotated = (data: Float32Array, heads: number, cols: number) => (permute ? permuteForRope(data, heads, cols) : data);
  for (const spec of model.params.specs) {
    // values are produced as the writer reaches each tensor: a frozen base is widened one tensor at a time
    const data = () => values(model, spec.name);
    const W = model.params.weight(spec.name),
      asStored = W instanceof FrozenWeight ? data : W.data; // an f32 tensor written as it is, no copy
    const cols = spec.shape.length === 2 ? spec.shape[1] : 1;
    const m = /^(model\.layers\.\d+\.self_attn\.)(W_pack|q_proj|k_proj)\.(weight|bias)$/.exec(spec.name);
    if (m?.[2] === 'W_pack') {
      const qD = c.num_attention_heads * c.head_dim,
        kvD = c.num_key_value_heads * c.head_dim;
      const shape = (rows: number) => (spec.shape.length === 2 ? [rows, cols] : [rows]);
      push(`${m[1]}q_proj.${m[3]}`, shape(qD), () => rotated(rowSlice(data(), cols, 0, qD), c.num_attention_heads, cols));
      push(`${m[1]}k_proj.${m[3]}`, shape(kvD), () => rotated(rowSlice(data(), cols, qD, kvD), c.num_key_value_heads, cols));
      push(`${m[1]}v_proj.${m[3]}`, shape(kvD), () => rowSlice(data(), cols, qD + kvD, kvD));
    } else if (m) {
      const heads = m[2] === 'q_proj' ? c.num_attention_heads : c.num_key_value_heads;
      push(spec.name, spec.shape, permute ? () => rotated(data(), heads, cols) : asStored);
    } else if (spec.name === 'lm_head.weight' && c.norm_head) {
      push(spec.name, spec.shape, () => normalisedRows(data(), cols));
    } else {
      push(spec.name, spec.shape, asStored);
    }
  }
  if (c.norm_head && c.tie_word_embeddings)
    push('lm_head.weight', [c.vocab_size, c.hidden_size], () => normalisedRows(values(model, 'model.embed_tokens.weight'), c.hidden_size));
  if (c.rope_scaling?.rope_type === 'llama3') {
    // llama.cpp divides each angle by its factor: factor_i = plain frequency / scaled frequency
    const plain = ropeFrequencies({ ...c, rope_scaling: null }, 0).invFreq,
      scaled = ropeFrequencies(c, 0).invFreq;
    out.push({ name: 'rope_freqs.weight', shape: [c.head_dim / 2], data: Float32Array.from(plain, (f, i) => f / scaled[i]), dtype: 'F32' });
  }
  return out;
}

/** A parameter's values as float32: a frozen one widened (one tensor at a time, as the writer asks). */
function values(model: Llama<Float32Array>, name: string): Float32Array {
  const W = model.params.weight(name);
  return W instanceof FrozenWeight ? frozenToF32(W) : W.data;
}

/** The GGUF tensor type a model exports as by default: f16 for a bf16 / f16 base, q8_0 for a q8_0 one, else f32. */
export function ggufDtypeOf(model: Llama<Float32Array>): GgufExportDtype {
  const W = model.params.frozenWeight('model.embed_tokens.weight');
  return !W ? 'f32' : W.dtype === 'q8_0' ? 'q8_0' : 'f16';
}

/** Rows divided by their L2 norm (torch F.normalize, eps 1e-12), in double. */
function normalisedRows(w: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < w.length / cols; r++) {
    let ss = 0;
    for (let j = 0; j < cols; j++) ss += w[r * cols + j] ** 2;
    const n = Math.max(Math.sqrt(ss), 1e-12);
    for (let j = 0; j < cols; j++) out[r * cols + j] = w[r * cols + j] / n;
  }
  return out;
}

/** The architecture's hyperparameters, RoPE scaling as llama.cpp reads it. */
function hyperparameters(c: ModelConfig, arch: string): GgufMetadata {
  const meta: GgufMetadata = new Map([
    [`${arch}.context_length`, kv.u32(c.max_position_embeddings)],
    [`${arch}.embedding_length`, kv.u32(c.hidden_size)],
    [`${arch}.block_count`, kv.u32(c.num_hidden_layers)],
    [`${arch}.feed_forward_length`, kv.u32(c.intermediate_size)],
    [`${arch}.attention.head_count`, kv.u32(c.num_attention_heads)],
    [`${arch}.attention.head_count_kv`, kv.u32(c.num_key_value_heads)],
    [`${arch}.rope.freq_base`, kv.f32(c.rope_theta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, kv.f32(c.rms_norm_eps)],
    [`${arch}.attention.key_length`, kv.u32(c.head_dim)],
    [`${arch}.attention.value_length`, kv.u32(c.head_dim)],
    [`${arch}.rope.dimension_count`, kv.u32(c.head_dim)],
  ]);
  if (arch === 'llama') meta.set('llama.vocab_size', kv.u32(c.vocab_size));
  const s = c.rope_scaling;
  if (s?.rope_type === 'linear') {
    meta.set(`${arch}.rope.scaling.type`, kv.str('linear'));
    meta.set(`${arch}.rope.scaling.factor`, kv.f32(s.factor));
  } else if (s?.rope_type === 'yarn') {
    // llama.cpp reads neither YaRN's betas nor truncate for these architectures (defaults 32 / 1, truncated)
    if ((s.beta_fast ?? 32) !== 32 || (s.beta_slow ?? 1) !== 1 || s.truncate === false) {
      throw new Error(
        'GGUF export: llama.cpp applies YaRN with beta_fast 32, beta_slow 1 and truncated correction dims only; this rope_scaling differs',
      );
    }
    meta.set(`${arch}.rope.scaling.type`, kv.str('yarn'));
    meta.set(`${arch}.rope.scaling.factor`, kv.f32(s.factor));
    meta.set(`${arch}.rope.scaling.original_context_length`, kv.u32(s.original_max_position_embeddings ?? c.max_position_embeddings));
    // llama.cpp scales cos/sin by 1 + 0.1 ln(factor) itself, times this factor
    const attn = ropeFrequencies(c, 0).scale / (1 + 0.1 * Math.log(s.factor));
    if (Math.abs(attn - 1) > 1e-7) meta.set(`${arch}.rope.scaling.attn_factor`, kv.f32(attn));
  } else if (s?.rope_type === 'llama3' && arch !== 'llama') {
    throw new Error(`GGUF export: llama.cpp's ${arch} architecture has no per-frequency RoPE factors (Llama-3 scaling)`);
  }
  return meta;
}

/** Every metadata key of the exported file, general.* first as llama.cpp's tools print them. */
export function llamaGgufMetadata(src: LlamaGgufSource, dtype: GgufExportDtype): GgufMetadata {
  const c = src.model.config,
    { arch } = ggufArchitecture(c);
  return new Map([
    ['general.architecture', kv.str(arch)],
    ['general.name', kv.str(src.name ?? 'chimed')],
    ['general.file_type', kv.u32(FILE_TYPE[dtype])],
    ['general.quantization_version', kv.u32(QUANTIZATION_VERSION)],
    ['general.alignment', kv.u32(32)],
    ...hyperparameters(c, arch),
    ...tokenizerMetadata(src.tokenizer, src.template, c.vocab_size),
  ]);
}

/** Writes a llama.cpp-loadable GGUF of the model, its tokenizer and chat template (atomic); returns notes for the user (see ggufArchitecture). */
export async function writeLlamaGguf(file: string, src: LlamaGgufSource, dtype: GgufExportDtype = 'f32'): Promise<string[]> {
  if (!GGUF_EXPORT_DTYPES.includes(dtype))
    throw new Error(`GGUF export: unknown dtype ${JSON.stringify(dtype)} (${GGUF_EXPORT_DTYPES.join(', ')})`);
  await writeGguf(file, llamaGgufMetadata(src, dtype), llamaGgufTensors(src.model, dtype));
  return ggufArchitecture(src.model.config).notes;
}
