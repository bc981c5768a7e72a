import { nativeKernels, setThreads } from '../engine/native.js';
import { loadModel, readConfigFile } from '../model/checkpoint.js';
import { Llama } from '../model/llama.js';
import { UsageError } from '../io/argv.js';

/** Applies --threads (0 or absent keeps the OpenMP default: all cores). */
export function applyThreads(n: number | undefined): void {
  if (n !== undefined && n > 0) setThreads(n);
}

/** --model DIR loads an HF checkpoint; --config FILE initialises a fresh model from a config. */
export async function modelFrom(opts: { model?: string; config?: string; seed: number; trainable: boolean }): Promise<Llama<Float32Array>> {
  if (opts.model) return loadModel(opts.model, nativeKernels, opts.trainable);
  if (opts.config) return Llama.random(nativeKernels, readConfigFile(opts.config), opts.seed, opts.trainable);
  throw new UsageError('give --model DIR (an HF checkpoint) or --config MODEL.json (a fresh model)');
}
