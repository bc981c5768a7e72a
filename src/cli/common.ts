import { nativeKernels, setThreads } from '../engine/native.js';
import { loadModel, readConfigFile } from '../model/checkpoint.js';
import { Llama } from '../model/llama.js';
import { scaleRope, type RopeScalingRequest } from '../model/load.js';
import { UsageError } from './args.js';

/** Applies --threads (0 or absent keeps the OpenMP default: all cores). */
export function applyThreads(n: number | undefined): void {
  if (n !== undefined && n > 0) setThreads(n);
}

/** --model DIR loads an HF checkpoint; --config FILE initialises a fresh model from a config. */
export async function modelFrom(opts: { model?: string; config?: string; seed: number; trainable: boolean; ropeScaling?: RopeScalingRequest | null }): Promise<Llama<Float32Array>> {
  if (opts.model) return scaleRope(await loadModel(opts.model, nativeKernels, opts.trainable), opts.ropeScaling);
  if (opts.config) return scaleRope(Llama.random(nativeKernels, readConfigFile(opts.config), opts.seed, opts.trainable), opts.ropeScaling);
  throw new UsageError('give --model DIR (an HF checkpoint) or --config MODEL.json (a fresh model)');
}
