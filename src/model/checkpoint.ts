import fs from 'node:fs';
import path from 'node:path';
import { FrozenWeight, weightBytes, type BaseDtype, type FrozenDtype } from '../engine/frozen.js';
import type { FloatArray, Kernels } from '../engine/kernels.js';
import { convertWeight, firstNonFiniteWeight, frozenToF32 } from '../engine/native.js';
import { ParamStore, numel, type ParamSpec } from '../engine/params.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { checkFiniteTensors } from '../io/finite.js';
import {
  mapCheckpoint,
  writeSafetensors,
  type FloatDtype,
  type StoredTensor,
  type TensorEntry,
  type TensorToWrite,
} from '../io/safetensors.js';
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

/** Writes config.json + model.safetensors with the family's HF *ForCausalLM tensor names (default dtype: the base's, storedDtypeOf). */
export async function saveModel<F extends FloatArray>(
  dir: string,
  model: Llama<F>,
  dtype: FloatDtype = storedDtypeOf(model),
): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await writeSafetensors(path.join(dir, 'model.safetensors'), storeTensors(model.params, dtype), { format: 'pt' });
  await writeJsonAtomic(path.join(dir, 'config.json'), { ...toHfConfig(model.config), torch_dtype: TORCH_DTYPE[dtype] });
}

export const TORCH_DTYPE = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const;

/**
 * The store's tensors to write in `dtype`. A frozen weight already in that dtype is written as
 * its stored bytes; any other is widened one tensor at a time, never the whole model.
 */
export function storeTensors<F extends FloatArray>(store: ParamStore<F>, dtype: FloatDtype = 'F32'): TensorToWrite[] {
  return store.specs.map((s) => {
    const W = store.frozenWeight(s.name);
    if (W && W.dtype === dtype.toLowerCase()) return { name: s.name, shape: s.shape, stored: W.bytes, dtype };
    if (W)
      return {
        name: s.name,
        shape: s.shape,
        get data() {
          return frozenToF32(W);
        },
        dtype,
      };
    const d = store.get(s.name).data;
    return { name: s.name, shape: s.shape, data: d instanceof Float32Array ? d : Float32Array.from(d), dtype };
  });
}

/** The safetensors dtype a model's frozen base is written in by default: its own (F32 for an f32 or q8_0 base). */
export function storedDtypeOf<F extends FloatArray>(model: Llama<F>): FloatDtype {
  const W = model.params.frozenWeight('model.embed_tokens.weight');
  return W?.dtype === 'bf16' ? 'BF16' : W?.dtype === 'f16' ? 'F16' : 'F32';
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
 * f32/f16/bf16, memory-mapped) into a parameter store, checking every tensor's shape against
 * config.json. A model that is not trained keeps its base matrices (Llama.frozenNames) as
 * frozen weights in `base` (default: the dtype the checkpoint stores them in); a trainable one
 * holds f32 master weights.
 */
export async function loadModel<F extends FloatArray>(dir: string, k: Kernels<F>, trainable = true, base?: BaseDtype): Promise<Llama<F>> {
  const config = readModelConfig(dir);
  const tensors = await mapCheckpoint(dir);
  const params = buildStore(k, Llama.paramSpecs(config), tensors, dir, {
    trainable,
    frozen: Llama.frozenNames(config),
    base,
    ignore: config.tie_word_embeddings ? tiedLmHead(tensors, dir) : null,
  });
  return new Llama(config, params);
}

type Tensors = Map<string, StoredTensor | TensorEntry>;

/** A tensor as stored bytes: read ones (float32 data) are F32. */
function asStored(t: StoredTensor | TensorEntry): StoredTensor {
  return 'bytes' in t ? t : { dtype: 'F32', shape: t.shape, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
}

const baseDtypeOf = (d: FloatDtype): BaseDtype => (d === 'BF16' ? 'bf16' : d === 'F16' ? 'f16' : 'f32');

/** The dtype a checkpoint stores its base matrices in: what a frozen base defaults to. */
export function storedBaseDtype(tensors: Tensors, names: string[]): BaseDtype {
  const t = names.map((n) => tensors.get(n)).find((x) => x !== undefined);
  return t ? baseDtypeOf(asStored(t).dtype) : 'f32';
}

/** A stored matrix as a frozen weight in dtype: its own bytes when the dtypes match, else converted row by row. */
function frozenFrom(t: StoredTensor, dtype: FrozenDtype, name: string, source: string): FrozenWeight {
  const [rows, cols] = t.shape;
  const from = baseDtypeOf(t.dtype);
  if (from === dtype) return new FrozenWeight(dtype, [rows, cols], t.bytes);
  if (dtype === 'q8_0' && cols % 32 !== 0)
    throw new CheckpointError(`${source}: tensor ${name} has rows of ${cols} values; base_dtype q8_0 needs a multiple of 32`);
  const bytes = new Uint8Array(weightBytes(dtype, rows, cols));
  convertWeight(from, t.bytes, rows, cols, dtype, bytes);
  return new FrozenWeight(dtype, [rows, cols], bytes);
}

/**
 * A parameter store of `specs` filled from a checkpoint's tensors: the `frozen` matrices kept
 * as frozen weights in `base` (default: as stored) unless the store is trainable or base is
 * f32, the rest copied into f32. Checked as fillStore.
 */
export function buildStore<F extends FloatArray>(
  k: Kernels<F>,
  specs: ParamSpec[],
  tensors: Tensors,
  source: string,
  o: { trainable: boolean; frozen: string[]; base?: BaseDtype; ignore?: RegExp | null },
): ParamStore<F> {
  const base = o.trainable ? 'f32' : (o.base ?? storedBaseDtype(tensors, o.frozen));
  const frozen = new Map<string, FrozenWeight>();
  if (base !== 'f32')
    for (const name of o.frozen) {
      const t = tensors.get(name);
      const spec = specs.find((s) => s.name === name);
      if (t && spec) frozen.set(name, frozenFrom(checkTensor(spec, t, source), base, name, source));
    }
  const store = new ParamStore(k, specs, o.trainable, frozen);
  fillStore(store, tensors, source, o.ignore ?? null);
  return store;
}

/**
 * With tie_word_embeddings HF uses the embedding as the output projection and ignores a stored
 * lm_head.weight; so do we, warning when the two differ (the checkpoint's own logits would not
 * be what it was saved from).
 */
export function tiedLmHead(tensors: Tensors, source: string): RegExp {
  const head = tensors.get('lm_head.weight'),
    embed = tensors.get('model.embed_tokens.weight');
  if (head && embed) {
    const [h, e] = [asStored(head), asStored(embed)];
    if (h.dtype !== e.dtype || Buffer.compare(h.bytes, e.bytes) !== 0)
      console.warn(
        `${source}: tie_word_embeddings is true, so lm_head.weight is ignored (as in HF), but it differs from model.embed_tokens.weight`,
      );
  }
  return /^lm_head\.weight$/;
}

/** The tensor for a spec, present with its exact shape and finite, as stored bytes. */
function checkTensor(spec: ParamSpec, entry: StoredTensor | TensorEntry | undefined, source: string): StoredTensor {
  if (!entry) throw new CheckpointError(`${source}: tensor ${spec.name} is missing`);
  const t = asStored(entry);
  const n = numel(spec.shape);
  if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i]) || numel(t.shape) !== n) {
    throw new CheckpointError(`${source}: tensor ${spec.name} has shape [${t.shape}] but the config implies [${spec.shape}]`);
  }
  if (firstNonFiniteWeight(baseDtypeOf(t.dtype), t.bytes, 1, n) >= 0)
    checkFiniteTensors(new Map([[spec.name, { data: widen(t) }]]), source);
  return t;
}

/** A stored tensor's values as float32, converted row by row into `out`. */
function widen(t: StoredTensor, out: Float32Array = new Float32Array(numel(t.shape))): Float32Array {
  const rows = t.shape.length === 2 ? t.shape[0] : 1;
  convertWeight(baseDtypeOf(t.dtype), t.bytes, rows, out.length / rows, 'f32', new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
  return out;
}

/**
 * Copies named tensors (read as float32, or stored and memory-mapped) into a store's f32
 * parameters; every store tensor must be present with its exact shape and finite (every
 * loader — model, reward model, adapter — comes through here). Frozen weights were checked
 * when they were made (buildStore).
 */
export function fillStore<F extends FloatArray>(
  store: ParamStore<F>,
  tensors: Tensors,
  source: string,
  alsoIgnore: RegExp | null = null,
): void {
  for (const spec of store.specs) {
    if (store.frozenWeight(spec.name)) continue;
    const t = checkTensor(spec, tensors.get(spec.name), source);
    const data = store.get(spec.name).data;
    if (data instanceof Float32Array) widen(t, data);
    else data.set(widen(t));
  }
  const unexpected = [...tensors.keys()].filter((n) => !store.has(n) && !IGNORED.test(n) && !alsoIgnore?.test(n));
  if (unexpected.length)
    throw new CheckpointError(
      `${source}: unexpected tensors not in the config: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', ...' : ''}`,
    );
}
