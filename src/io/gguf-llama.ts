// Our Llama + Tokenizer + chat template as the GGUF llama.cpp loads for its `llama`
// architecture: the metadata keys and tensor names that llama.cpp's convert_hf_to_gguf.py
// writes for an HF LlamaForCausalLM (conversion/llama.py and base.py there; key names from
// gguf-py/gguf/constants.py); the tokenizer's keys come from gguf-tokenizer.ts.
import { headDim, type LlamaConfig } from '../model/config.js';
import type { Llama } from '../model/llama.js';
import type { ChatTemplate } from '../tokenizer/chat-template.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { kv, Q8_0_BLOCK, writeGguf, type GgmlDtype, type GgufMetadata, type GgufTensorToWrite } from './gguf.js';
import { tokenizerMetadata } from './gguf-tokenizer.js';

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
  if (!Number.isInteger(rows) || rows % (2 * nHead) !== 0) throw new RangeError(`permuteForRope: ${rows} rows do not split into ${nHead} heads of even size`);
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

const GLOBAL_NAMES: Record<string, string> = { 'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight' };
const BLOCK_NAMES: Record<string, string> = {
  input_layernorm: 'attn_norm', 'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output', post_attention_layernorm: 'ffn_norm', 'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down',
};

/** HF tensor name -> GGUF tensor name for the llama architecture. */
function ggufTensorName(hf: string): string {
  if (GLOBAL_NAMES[hf]) return GLOBAL_NAMES[hf];
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hf);
  if (!m || !BLOCK_NAMES[m[2]]) throw new Error(`GGUF export: no llama.cpp name for tensor ${hf}`);
  return `blk.${m[1]}.${BLOCK_NAMES[m[2]]}.weight`;
}

/**
 * Storage type per tensor as convert_hf_to_gguf.py chooses it: vectors (the norms) stay F32;
 * a Q8_0 matrix whose rows are not whole 32-value blocks falls back to F16.
 */
function tensorDtype(shape: readonly number[], dtype: GgufExportDtype): GgmlDtype {
  if (shape.length < 2 || dtype === 'f32') return 'F32';
  if (dtype === 'f16' || shape[shape.length - 1] % Q8_0_BLOCK !== 0) return 'F16';
  return 'Q8_0';
}

/** The model's tensors under llama.cpp's names, q/k rows permuted; no output.weight when tied (llama.cpp reuses token_embd). */
export function llamaGgufTensors(model: Llama<Float32Array>, dtype: GgufExportDtype): GgufTensorToWrite[] {
  if (model.hook) throw new Error('GGUF export: the model has an attached adapter; merge it first');
  const c = model.config;
  return model.params.specs.map((spec) => {
    const data = model.params.get(spec.name).data;
    const q = spec.name.endsWith('.self_attn.q_proj.weight'), k = spec.name.endsWith('.self_attn.k_proj.weight');
    const heads = q ? c.num_attention_heads : c.num_key_value_heads;
    return {
      name: ggufTensorName(spec.name),
      shape: spec.shape,
      data: q || k ? () => permuteForRope(data, heads, c.hidden_size) : data,
      dtype: tensorDtype(spec.shape, dtype),
    };
  });
}

function hyperparameters(c: LlamaConfig): GgufMetadata {
  return new Map([
    ['llama.context_length', kv.u32(c.max_position_embeddings)],
    ['llama.embedding_length', kv.u32(c.hidden_size)],
    ['llama.block_count', kv.u32(c.num_hidden_layers)],
    ['llama.feed_forward_length', kv.u32(c.intermediate_size)],
    ['llama.attention.head_count', kv.u32(c.num_attention_heads)],
    ['llama.attention.head_count_kv', kv.u32(c.num_key_value_heads)],
    ['llama.rope.freq_base', kv.f32(c.rope_theta)],
    ['llama.attention.layer_norm_rms_epsilon', kv.f32(c.rms_norm_eps)],
    ['llama.rope.dimension_count', kv.u32(headDim(c))],
    ['llama.vocab_size', kv.u32(c.vocab_size)],
  ]);
}

/** Every metadata key of the exported file, general.* first as llama.cpp's tools print them. */
export function llamaGgufMetadata(src: LlamaGgufSource, dtype: GgufExportDtype): GgufMetadata {
  const c = src.model.config;
  return new Map([
    ['general.architecture', kv.str('llama')],
    ['general.name', kv.str(src.name ?? 'chimed')],
    ['general.file_type', kv.u32(FILE_TYPE[dtype])],
    ['general.quantization_version', kv.u32(QUANTIZATION_VERSION)],
    ['general.alignment', kv.u32(32)],
    ...hyperparameters(c),
    ...tokenizerMetadata(src.tokenizer, src.template, c.vocab_size),
  ]);
}

/** Writes a llama.cpp-loadable GGUF of the model, its tokenizer and chat template (atomic). */
export async function writeLlamaGguf(file: string, src: LlamaGgufSource, dtype: GgufExportDtype = 'f32'): Promise<void> {
  if (!GGUF_EXPORT_DTYPES.includes(dtype)) throw new Error(`GGUF export: unknown dtype ${JSON.stringify(dtype)} (${GGUF_EXPORT_DTYPES.join(', ')})`);
  await writeGguf(file, llamaGgufMetadata(src, dtype), llamaGgufTensors(src.model, dtype));
}
