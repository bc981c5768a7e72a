/**
 * llama.cpp (node-llama-cpp's prebuilt CPU binary) as the independent implementation our GGUF
 * exports are checked against: load a file, compare its next-token distributions and greedy
 * continuations with ours.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Token } from 'node-llama-cpp';
import { nativeKernels } from '../src/engine/native.js';
import { Context } from '../src/engine/tensor.js';
import { generate } from '../src/model/generate.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';

type NodeLlama = typeof import('node-llama-cpp');
let llama: Awaited<ReturnType<NodeLlama['getLlama']>> | null = null;

/** Loads llama.cpp once; returns why it cannot run here, or false. */
export async function llamaCppUnavailable(): Promise<string | false> {
  if (llama) return false;
  try {
    const nlc = await import('node-llama-cpp');
    // the prebuilt CPU binary only: never download or compile anything
    llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error });
    return false;
  } catch (e) {
    return `node-llama-cpp cannot load llama.cpp here: ${(e as Error).message}`;
  }
}

export function llamaCpp() {
  if (!llama) throw new Error('call llamaCppUnavailable() first');
  return llama;
}

/** node-llama-cpp brands token ids as its own number type. */
export const asTokens = (ids: number[]) => ids as Token[];

export async function loadGguf(file: string) {
  const m = await llamaCpp().loadModel({ modelPath: file });
  // f32 KV cache and no flash attention: llama.cpp's f32 path, so f32 weights must agree to rounding;
  // one thread: ggml's spinning worker threads collapse on a shared machine (24 tokens: 14 s with 2, 0.2 s with 1)
  const ctx = await m.createContext({
    contextSize: 256,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  return { m, ctx, seq: ctx.getSequence() };
}

/** Our logits [T, V] at every position of `ids`. */
export function ourLogits(model: Llama<Float32Array>, ids: number[]): Float32Array {
  const ctx = new Context(nativeKernels, undefined, false);
  const T = ids.length;
  return model.logits(ctx, model.hidden(ctx, { ids: Int32Array.from(ids), pos: sequentialPositions(1, T), B: 1, T })).slice();
}

/**
 * llama.cpp's next-token distribution at every position of `ids`, compared with ours as
 * logits: node-llama-cpp 3.21 reports probabilities, so its logits are recovered as
 * log p + our log-sum-exp at that position (exact when the two models agree). `rel` is the
 * largest difference relative to the largest logit.
 */
export async function compareLogits(file: string, model: Llama<Float32Array>, ids: number[]) {
  const { m, ctx, seq } = await loadGguf(file);
  try {
    const out = await seq.controlledEvaluate(asTokens(ids).map((id) => [id, { generateNext: { probabilities: true } }]));
    const ours = ourLogits(model, ids),
      V = model.config.vocab_size;
    let maxDiff = 0,
      maxAbs = 0,
      top1 = 0,
      compared = 0;
    for (let t = 0; t < ids.length; t++) {
      const theirs = out[t]?.next.probabilities;
      assert.ok(theirs && theirs.size > 0, `position ${t}: llama.cpp returned no probabilities`);
      const row = ours.subarray(t * V, (t + 1) * V);
      let best = 0,
        max = -Infinity,
        sum = 0;
      for (let v = 0; v < V; v++) {
        if (row[v] > row[best]) best = v;
        max = Math.max(max, row[v]);
      }
      for (let v = 0; v < V; v++) sum += Math.exp(row[v] - max);
      const lse = max + Math.log(sum);
      const sorted = [...theirs].sort((a, b) => b[1] - a[1]);
      if (sorted[0][0] === best) top1++;
      for (const [id, p] of sorted) {
        if (!(p > 1e-30)) continue;
        maxDiff = Math.max(maxDiff, Math.abs(Math.log(p) + lse - row[id]));
        maxAbs = Math.max(maxAbs, Math.abs(row[id]));
        compared++;
      }
    }
    console.log(
      `# ${path.basename(file)}: max |logit diff| ${maxDiff.toExponential(2)} (${(maxDiff / maxAbs).toExponential(2)} of max |logit| ${maxAbs.toFixed(2)}) over ${compared} token probabilities, top-1 agreement ${top1}/${ids.length}`,
    );
    return { rel: maxDiff / maxAbs, maxAbs, top1: top1 / ids.length };
  } finally {
    await ctx.dispose();
    await m.dispose();
  }
}

/**
 * Greedy continuations of `ids` by us (with our KV cache) and by llama.cpp (its KV cache, one
 * token per evaluation, end-of-generation tokens included), compared token by token up to the
 * first step where our top-2 logits are within `tie` (random weights have near-ties, where
 * float rounding may pick either). Returns how many tokens were compared.
 */
export async function compareGreedy(file: string, model: Llama<Float32Array>, ids: number[], n: number, tie = 1e-4): Promise<number> {
  const ours = generate(model, [ids], { maxNewTokens: n, eosIds: [] })[0][0].ids;
  const { m, ctx, seq } = await loadGguf(file);
  const theirs: number[] = [];
  try {
    const next = { generateNext: { token: true, options: { temperature: 0 } } };
    let input: number[] = ids;
    while (theirs.length < n) {
      const out = await seq.controlledEvaluate(asTokens(input).map((id, i) => (i === input.length - 1 ? [id, next] : id)));
      const id = out[input.length - 1]?.next.token;
      assert.ok(typeof id === 'number', 'llama.cpp returned no token');
      theirs.push(id);
      input = [id];
    }
  } finally {
    await ctx.dispose();
    await m.dispose();
  }
  // our logits at each generated step, teacher-forced on our own continuation
  const logits = ourLogits(model, [...ids, ...ours]),
    V = model.config.vocab_size;
  let k = 0;
  for (; k < n; k++) {
    const row = logits.subarray((ids.length - 1 + k) * V, (ids.length + k) * V);
    const sorted = Float32Array.from(row).sort().reverse();
    if (sorted[0] - sorted[1] < tie) break;
    assert.equal(
      theirs[k],
      ours[k],
      `greedy token ${k}: llama.cpp ${theirs[k]}, ours ${ours[k]} (ours: ${ours.join(' ')}; llama.cpp: ${theirs.join(' ')})`,
    );
  }
  return k;
}
