import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeGemmChoice, gemmChoice } from '../src/engine/gemm-choice.js';
import { gemmClassOf, getThreads, nativeKernels, setThreads } from '../src/engine/native.js';
import { cpuMs, KernelProfile } from '../src/engine/profile.js';
import { Rng } from '../src/engine/rng.js';
import { ggufDtypeOf, writeLlamaGguf } from '../src/model/gguf-llama.js';
import { Decoder } from '../src/model/generate.js';
import { Llama } from '../src/model/llama.js';
import { ChatTemplate } from '../src/tokenizer/chat-template.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { UsageError } from '../src/io/argv.js';
import { loadModel, saveModel } from '../src/model/checkpoint.js';
import { type PhaseTime, profileRows, profileTable } from './profile-table.js';
import { baseDtypeArg, benchConfig, parseWithShape } from './shape.js';

const USAGE = `chimed bench generate [--vocab V] [--dim D] [--layers L] [--heads H] [--kv-heads K] [--ffn F]
                      [--config CONFIG.json] [--base-dtype bf16|f16|q8_0|f32]
                      [--prompt P] [--tokens N] [--repeat R] [--threads N] [--llama-threads N] [--llama-kv f32|f16]
                      [--profile] [--json]

Greedy generation speed of one random f32 LLaMA (default vocab 8000, dim 512, 8 layers,
8 heads, ffn 1408) here (src/model/generate.ts) and in llama.cpp through node-llama-cpp (a
dev dependency) on the same weights exported as f32 GGUF: prefill tokens/s over a P-token
prompt (default 128) and decode tokens/s over N new tokens (default 64), one untimed
warm-up each, the same thread count (--llama-threads gives llama.cpp its own), best of R runs
(default 3) taken alternately from the two engines, so a loaded machine slows both alike. llama.cpp runs without flash attention and with an
f32 KV cache like ours (--llama-kv f16: its default cache type). greedy_agree counts the
leading new tokens both chose alike. Each engine's CPU time (all threads of the process, which
runs one engine at a time) for the prefill and per decoded token follows: the work done, which
other processes on a busy machine stretch far less than the wall time (llama.cpp's threads
busy-wait for each other, so a busy machine inflates its figure more than ours).
--config takes the shape from an HF config.json of any
supported family; --base-dtype keeps our weights frozen in that dtype (default f32), and the
GGUF llama.cpp reads is then f16 (for bf16 / f16) or q8_0, the same values where the dtypes
allow. load_s: the model saved as a checkpoint in its base dtype, loaded back (memory-mapped)
and run to its first token. --profile times each of our kernel calls by kind in the prefill and
in the decoding steps, and what each spends outside the kernels (TypeScript), per run in wall
and CPU time (the timers cost a little of the figures above).`;

interface Speed {
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  /** CPU time of the prefill, and per decoded token. */
  prefill_cpu_ms: number;
  decode_cpu_ms_per_token: number;
  tokens: number[];
}

/** Wall and CPU time of the prefill and of the n - 1 decoding steps after it. */
interface Marks {
  t0: bigint;
  t1: bigint;
  t2: bigint;
  c0: number;
  c1: number;
  c2: number;
}

const mark = () => ({ t: process.hrtime.bigint(), c: cpuMs() });

function speed(prompt: number, n: number, m: Marks, tokens: number[]): Speed {
  return {
    prefill_tokens_per_s: perSecond(prompt, m.t1 - m.t0),
    decode_tokens_per_s: perSecond(n - 1, m.t2 - m.t1),
    prefill_cpu_ms: round(m.c1 - m.c0),
    decode_cpu_ms_per_token: round((m.c2 - m.c1) / (n - 1), 2),
    tokens,
  };
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;
const perSecond = (n: number, ns: bigint) => round((n * 1e9) / Number(ns));

/** Times the first step (prefill of the prompt plus one token) and the N-1 steps after it. */
function oursRun(model: Llama<Float32Array>, prompt: number[], n: number, profile: KernelProfile<Float32Array> | null = null): Speed {
  const d = new Decoder(model, [prompt], { maxNewTokens: n, eosIds: [] });
  if (profile) profile.phase = 'prefill';
  const m0 = mark();
  d.step();
  const m1 = mark();
  if (profile) profile.phase = 'decode';
  while (!d.done()) d.step();
  const m2 = mark();
  d.release(); // the next run reuses the KV cache, as llama.cpp keeps its context
  return speed(prompt.length, n, { t0: m0.t, t1: m1.t, t2: m2.t, c0: m0.c, c1: m1.c, c2: m2.c }, d.results()[0][0].ids);
}

/** llama.cpp through node-llama-cpp: one context kept for every run (as llama.cpp's own tools do). */
async function llamaCpp(file: string, prompt: number[], n: number, threads: number, kv: 'F32' | 'F16') {
  const nlc = await import('node-llama-cpp');
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: file });
  const ctx = await model.createContext({
    contextSize: prompt.length + n + 8,
    batchSize: Math.max(512, prompt.length),
    threads: { ideal: threads, min: threads },
    experimentalKvCacheKeyType: kv,
    experimentalKvCacheValueType: kv,
    // exact attention like ours; on CPU llama.cpp's flash attention decodes slower anyway (it rounds through f16)
    flashAttention: false,
  });
  const seq = ctx.getSequence();
  type Ids = Parameters<typeof seq.evaluate>[0]; // node-llama-cpp brands token ids
  const evaluate = async (input: Ids, count: number) => {
    await seq.clearHistory();
    const out: number[] = [];
    const gen = seq.evaluate(input, { temperature: 0 });
    const m0 = mark();
    let m1 = m0;
    for await (const id of gen) {
      if (out.length === 0) m1 = mark();
      out.push(id);
      if (out.length === count) break;
    }
    const m2 = mark();
    return { out, marks: { t0: m0.t, t1: m1.t, t2: m2.t, c0: m0.c, c1: m1.c, c2: m2.c } };
  };
  await evaluate((prompt as Ids).slice(0, 8), 4); // warm-up
  return {
    run: async (): Promise<Speed> => {
      const r = await evaluate(prompt as Ids, n);
      return speed(prompt.length, n, r.marks, r.out);
    },
    dispose: async () => {
      await ctx.dispose();
      await model.dispose();
    },
  };
}

/** The best prefill and decode rates and the least CPU times over runs (the tokens of the first). */
function best(runs: Speed[]): Speed {
  return {
    prefill_tokens_per_s: Math.max(...runs.map((r) => r.prefill_tokens_per_s)),
    decode_tokens_per_s: Math.max(...runs.map((r) => r.decode_tokens_per_s)),
    prefill_cpu_ms: Math.min(...runs.map((r) => r.prefill_cpu_ms)),
    decode_cpu_ms_per_token: Math.min(...runs.map((r) => r.decode_cpu_ms_per_token)),
    tokens: runs[0].tokens,
  };
}

const figures = ({ tokens: _, ...rest }: Speed) => rest;
const describe = (s: Speed) =>
  `prefill ${s.prefill_tokens_per_s} tok/s (${s.prefill_cpu_ms} CPU ms), decode ${s.decode_tokens_per_s} tok/s (${s.decode_cpu_ms_per_token} CPU ms/token)`;

/** One JSON line: ours and llama.cpp's prefill / decode tokens/s on the same f32 model. */
export async function benchGenerate(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parseWithShape(
    argv,
    {
      prompt: { type: 'string' },
      tokens: { type: 'string' },
      repeat: { type: 'string' },
      threads: { type: 'string' },
      'llama-kv': { type: 'string' },
      'llama-threads': { type: 'string' },
      config: { type: 'string' },
      'base-dtype': { type: 'string' },
      profile: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  const P = a.int('prompt', 128),
    N = a.int('tokens', 64),
    R = a.int('repeat', 3);
  if (N < 2) throw new UsageError('--tokens: at least 2 (the first new token is timed with the prefill)');
  if (R < 1) throw new UsageError('--repeat: at least 1');
  const kv = (a.str('llama-kv') ?? 'f32').toUpperCase();
  if (kv !== 'F32' && kv !== 'F16') throw new UsageError(`--llama-kv: expected f32 or f16, got "${a.str('llama-kv')}"`);
  if (a.str('threads')) setThreads(a.int('threads'));
  const llamaThreads = a.int('llama-threads', getThreads());
  if (llamaThreads < 1) throw new UsageError('--llama-threads: at least 1');
  const config = benchConfig(a, { vocab: 8000, dim: 512, ffn: 1408, layers: 8, heads: 8 }, P + N + 8);
  const base = baseDtypeArg(a);
  const profile = a.flag('profile') ? new KernelProfile(nativeKernels, gemmClassOf) : null;
  const kernels = profile?.kernels ?? nativeKernels;
  let model = Llama.random(kernels, config, 1, false, base);
  // the byte tokenizer: any vocabulary size works (rows past it are unused tokens in the GGUF)
  const tokenizer = Tokenizer.bytes();
  if (tokenizer.vocabSize > config.vocab_size) throw new UsageError(`--vocab: at least ${tokenizer.vocabSize} (the byte tokenizer's size)`);
  const rng = new Rng(3);
  const prompt = Array.from({ length: P }, () => rng.int(256));

  const oursRuns: Speed[] = [],
    theirRuns: Speed[] = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chimed-bench-gen-'));
  let unavailable: string | undefined;
  const ggufDtype = ggufDtypeOf(model);
  let loadS: number;
  try {
    // load to first token from a checkpoint in the base's dtype; the loaded model is the one timed
    await saveModel(path.join(dir, 'hf'), model);
    const t0 = process.hrtime.bigint();
    model = await loadModel(path.join(dir, 'hf'), kernels, false, base);
    oursRun(model, prompt.slice(0, 1), 2);
    loadS = Number(process.hrtime.bigint() - t0) / 1e9;
    oursRun(model, prompt.slice(0, 8), 4); // warm-up: workspace, page-in
    const file = path.join(dir, 'model.gguf');
    await writeLlamaGguf(file, { model, tokenizer, template: ChatTemplate.builtin('chatml'), name: 'bench' }, ggufDtype);
    const them = await llamaCpp(file, prompt, N, llamaThreads, kv).catch((e: Error) => {
      unavailable = e.message;
      return null;
    });
    profile?.reset();
    try {
      for (let r = 0; r < R; r++) {
        oursRuns.push(oursRun(model, prompt, N, profile));
        if (them) theirRuns.push(await them.run());
      }
    } finally {
      await them?.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const ours = best(oursRuns),
    theirs = theirRuns.length ? best(theirRuns) : null;
  const mean = (f: (r: Speed) => number) => oursRuns.reduce((s, r) => s + f(r), 0) / R;
  const phases: Record<string, PhaseTime> = {
    prefill: { ms: mean((r) => (1000 * P) / r.prefill_tokens_per_s), cpuMs: mean((r) => r.prefill_cpu_ms) },
    decode: { ms: mean((r) => (1000 * (N - 1)) / r.decode_tokens_per_s), cpuMs: mean((r) => r.decode_cpu_ms_per_token * (N - 1)) },
  };
  const run = { ms: phases.prefill.ms + phases.decode.ms, cpuMs: phases.prefill.cpuMs + phases.decode.cpuMs };
  const rows = profile ? profileRows(profile.snapshot(), phases, R, run) : null;
  let agree = 0;
  while (theirs && agree < N && ours.tokens[agree] === theirs.tokens[agree]) agree++;
  const result = {
    bench: 'generate',
    ours: figures(ours),
    llama_cpp: theirs
      ? {
          ...figures(theirs),
          kv_cache: kv,
          flash_attention: false,
          threads: llamaThreads,
        }
      : null,
    ...(unavailable !== undefined && { llama_cpp_unavailable: unavailable }),
    prefill_ratio: theirs ? Math.round((ours.prefill_tokens_per_s / theirs.prefill_tokens_per_s) * 100) / 100 : null,
    decode_ratio: theirs ? Math.round((ours.decode_tokens_per_s / theirs.decode_tokens_per_s) * 100) / 100 : null,
    prefill_cpu_ratio: theirs ? round(theirs.prefill_cpu_ms / ours.prefill_cpu_ms, 2) : null,
    decode_cpu_ratio: theirs ? round(theirs.decode_cpu_ms_per_token / ours.decode_cpu_ms_per_token, 2) : null,
    greedy_agree: theirs ? agree : null,
    base_dtype: base,
    gguf_dtype: ggufDtype,
    load_s: Math.round(loadS * 100) / 100,
    params: model.params.count,
    vocab: config.vocab_size,
    dim: config.hidden_size,
    layers: config.num_hidden_layers,
    heads: config.num_attention_heads,
    kv_heads: config.num_key_value_heads,
    ffn: config.intermediate_size,
    prompt: P,
    tokens: N,
    repeat: R,
    threads: getThreads(),
    gemm: describeGemmChoice(gemmChoice()),
    ...(rows && { profile: { phases_ms: { prefill: round(phases.prefill.ms), decode: round(phases.decode.ms) }, kernels: rows } }),
  };
  process.stdout.write(
    a.flag('json')
      ? JSON.stringify(result) + '\n'
      : `ours: ${describe(ours)}; ` +
          (theirs
            ? `llama.cpp: ${describe(theirs)} (prefill ratio ${result.prefill_ratio}, decode ratio ${result.decode_ratio}; ` +
              `by CPU time: ${result.prefill_cpu_ratio}, ${result.decode_cpu_ratio})\n`
            : `llama.cpp unavailable: ${unavailable}\n`) +
          (rows ? `\nprofile of ours, per run (prefill and ${N - 1} decoding steps):\n${profileTable(rows, phases, 'run')}\n` : ''),
  );
  return result;
}
