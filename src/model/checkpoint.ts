import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray, Kernels } from '../engine/kernels.js';
import { ParamStore, numel } from '../engine/params.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { checkFiniteTensors } from '../io/finite.js';
import { readCheckpointTensors, writeSafetensors } from '../io/safetensors.js';
import { parseModelConfig, toHfConfig, type ModelConfig } from './config.js';
import { Llama } from './llama.js';

export class CheckpointError extends Error {}

export function readModelConfig(dir: string): ModelConfig {
  return readConfigFile(path.join(dir, 'config.json'), `is ${dir} a model directory?`);
}

/** Reads and validates a model config JSON file (an HF config.json of a supported family); errors name the file. */
export function readConfigFile(file: string, hint = 'no such model config file'): ModelConfig {
  if (!fs.existsSync(file)) throw new CheckpointError(`${file}: not found (${hint})`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  return parseModelConfig(raw, file);
}

/** Writes config.json + model.safetensors with the family's HF *ForCausalLM tensor names. */
export async function saveModel<F extends FloatArray>(dir: string, model: Llama<F>, dtype: 'F32' | 'F16' | 'BF16' = 'F32'): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await writeSafetensors(path.join(dir, 'model.safetensors'), storeTensors(model.params, dtype), { format: 'pt' });
  await writeJsonAtomic(path.join(dir, 'config.json'), { ...toHfConfig(model.config), torch_dtype: TORCH_DTYPE[dtype] });
}

export const TORCH_DTYPE = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const;

export function storeTensors<F extends FloatArray>(store: ParamStore<F>, dtype: 'F32' | 'F16' | 'BF16' = 'F32') {
  return store.specs.map((s) => {
    const d = store.get(s.name).data;
    return { name: s.name, shape: s.shape, data: d instanceof Float32Array ? d : Float32Array.from(d), dtype };
  });
}

/**
 * The Python files a config's auto_map names (Baichuan's configuration_baichuan.py,
 * modeling_baichuan.py, ...), copied from the source folder so that HF transformers can load
 * the written folder with trust_remote_code as it loaded the original. Returns the files copied.
 */
export function copyRemoteCode(config: ModelConfig, fromDir: string, toDir: string): string[] {
  const autoMap = config.extra.auto_map;
  if (!autoMap || typeof autoMap !== 'object') return [];
  const modules = new Set(
    Object.values(autoMap as Record<string, unknown>)
      .flat()
      .filter((v): v is string => typeof v === 'string')
      .map((ref) => ref.split('--').pop()!.split('.')[0]),
  );
  const copied: string[] = [];
  for (const m of modules) {
    const src = path.join(fromDir, `${m}.py`);
    if (!fs.existsSync(src) || path.resolve(fromDir) === path.resolve(toDir)) continue;
    fs.copyFileSync(src, path.join(toDir, `${m}.py`));
    copied.push(`${m}.py`);
  }
  return copied;
}

// Buffers HF stores in some LLaMA checkpoints that carry no learned weights.
const IGNORED = /\.rotary_emb\.inv_freq$/;

/**
 * Loads an HF model directory of a supported family (single or sharded safetensors,
 * f32/f16/bf16) into a parameter store, checking every tensor's shape against config.json.
 */
export async function loadModel<F extends FloatArray>(dir: string, k: Kernels<F>, trainable = true): Promise<Llama<F>> {
  const config = readModelConfig(dir);
  const tensors = await readCheckpointTensors(dir);
  const params = new ParamStore(k, Llama.paramSpecs(config), trainable);
  fillStore(params, tensors, dir, config.tie_word_embeddings ? tiedLmHead(tensors, dir) : null);
  return new Llama(config, params);
}

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * With tie_word_embeddings HF uses the embedding as the output projection and ignores a stored
 * lm_head.weight; so do we, warning when the two differ (the checkpoint's own logits would not
 * be what it was saved from).
 */
export function tiedLmHead(tensors: Tensors, source: string): RegExp {
  const head = tensors.get('lm_head.weight'),
    embed = tensors.get('model.embed_tokens.weight');
  if (head && embed && (head.data.length !== embed.data.length || head.data.some((v, i) => v !== embed.data[i]))) {
    console.warn(
      `${source}: tie_word_embeddings is true, so lm_head.weight is ignored (as in HF), but it differs from model.embed_tokens.weight`,
    );
  }
  return /^lm_head\.weight$/;
}

/**
 * Copies named tensors into a store; every store tensor must be present with its exact shape
 * and finite (every loader — model, reward model, adapter — comes through here).
 */
export function fillStore<F extends FloatArray>(
  store: ParamStore<F>,
  tensors: Tensors,
  source: string,
  alsoIgnore: RegExp | null = null,
): void {
  checkFiniteTensors(tensors, source);
  for (const spec of store.specs) {
    const t = tensors.get(spec.name);
    if (!t) throw new CheckpointError(`${source}: tensor ${spec.name} is missing`);
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i]) || t.data.length !== numel(spec.shape)) {
      throw new CheckpointError(`${source}: tensor ${spec.name} has shape [${t.shape}] but the config implies [${spec.shape}]`);
    }
    store.get(spec.name).data.set(t.data);
  }
  const unexpected = [...tensors.keys()].filter((n) => !store.has(n) && !IGNORED.test(n) && !alsoIgnore?.test(n));
  if (unexpected.length)
    throw new CheckpointError(
      `${source}: unexpected tensors not in the config: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', ...' : ''}`,
    );
}
