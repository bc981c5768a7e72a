import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray, Kernels } from '../engine/kernels.js';
import { ParamStore, numel } from '../engine/params.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { checkFiniteTensors } from '../io/finite.js';
import { readCheckpointTensors, writeSafetensors } from '../io/safetensors.js';
import { parseLlamaConfig, toHfConfig, type LlamaConfig } from './config.js';
import { Llama } from './llama.js';

export class CheckpointError extends Error {}

export function readModelConfig(dir: string): LlamaConfig {
  return readConfigFile(path.join(dir, 'config.json'), `is ${dir} a model directory?`);
}

/** Reads and validates a LlamaConfig JSON file; errors name the file. */
export function readConfigFile(file: string, hint = 'no such model config file'): LlamaConfig {
  if (!fs.existsSync(file)) throw new CheckpointError(`${file}: not found (${hint})`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  return parseLlamaConfig(raw, file);
}

/** Writes config.json + model.safetensors with HF LlamaForCausalLM tensor names. */
export async function saveModel<F extends FloatArray>(dir: string, model: Llama<F>, dtype: 'F32' | 'F16' | 'BF16' = 'F32'): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await writeSafetensors(path.join(dir, 'model.safetensors'), storeTensors(model.params, dtype), { format: 'pt' });
  await writeJsonAtomic(path.join(dir, 'config.json'), toHfConfig(model.config));
}

export function storeTensors<F extends FloatArray>(store: ParamStore<F>, dtype: 'F32' | 'F16' | 'BF16' = 'F32') {
  return store.specs.map((s) => {
    const d = store.get(s.name).data;
    return { name: s.name, shape: s.shape, data: d instanceof Float32Array ? d : Float32Array.from(d), dtype };
  });
}

// Buffers HF stores in some LLaMA checkpoints that carry no learned weights.
const IGNORED = /\.rotary_emb\.inv_freq$/;

/**
 * Loads an HF LLaMA directory (single or sharded safetensors, f32/f16/bf16) into a parameter
 * store, checking every tensor's shape against config.json.
 */
export async function loadModel<F extends FloatArray>(dir: string, k: Kernels<F>, trainable = true): Promise<Llama<F>> {
  const config = readModelConfig(dir);
  const tensors = await readCheckpointTensors(dir);
  checkFiniteTensors(tensors, dir);
  const params = new ParamStore(k, Llama.paramSpecs(config), trainable);
  fillStore(params, tensors, dir, config.tie_word_embeddings ? /^lm_head\.weight$/ : null);
  return new Llama(config, params);
}

/** Copies named tensors into a store; every store tensor must be present with its exact shape. */
export function fillStore<F extends FloatArray>(
  store: ParamStore<F>, tensors: Map<string, { shape: number[]; data: Float32Array }>, source: string, alsoIgnore: RegExp | null = null,
): void {
  for (const spec of store.specs) {
    const t = tensors.get(spec.name);
    if (!t) throw new CheckpointError(`${source}: tensor ${spec.name} is missing`);
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i]) || t.data.length !== numel(spec.shape)) {
      throw new CheckpointError(`${source}: tensor ${spec.name} has shape [${t.shape}] but the config implies [${spec.shape}]`);
    }
    store.get(spec.name).data.set(t.data);
  }
  const unexpected = [...tensors.keys()].filter((n) => !store.has(n) && !IGNORED.test(n) && !(alsoIgnore?.test(n)));
  if (unexpected.length) throw new CheckpointError(`${source}: unexpected tensors not in the config: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', ...' : ''}`);
}
