import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeGemmChoice, gemmChoice } from '../src/engine/gemm-choice.js';
import { getThreads, nativeKernels, setThreads } from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';
import { ggufDtypeOf, writeLlamaGguf } from '../src/model/gguf-llama.js';
import { Decoder } from '../src/model/generate.js';
import { Llama } from '../src/model/llama.js';
import { ChatTemplate } from '../src/tokenizer/chat-template.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { UsageError } from '../src/io/argv.js';
import { loadModel, saveModel } from '../src/model/checkpoint.js';
import { baseDtypeArg, benchConfig, parseWithShape } from './shape.js';

const USAGE = `chimed bench generate [--vocab V] [--dim D] [--layers L] [--heads H] [--kv-heads K] [--ffn F]
                      [--config CONFIG.json] [--base-dtype bf16|f16|q8_0|f32]
                      [--prompt P] [--tokens N] [--repeat R] [--threads N] [--llama-kv f32|f16] [--json]

Greedy generation speed of one random f32 LLaMA (default vocab 8000, dim 512, 8 layers,
8 heads, ffn 1408) here (src/model/generate.ts) and in llama.cpp through node-llama-cpp (a
dev dependency) on the same weights exported as f32 GGUF: prefill tokens/s over a P-token
prompt (default 128) and decode tokens/s over N new tokens (default 64), one untimed
warm-up each, the same thread count, best of R runs (default 3) taken alternately from the two
engines, so a loaded machine slows both alike. llama.cpp runs without flash attention and with an
f32 KV cache like ours (--llama-kv f16: its default cache type). greedy_agree counts the
leading new tokens both chose alike. --config takes the shape from an HF config.json of any
supported family; --base-dtype keeps our weights frozen in that dtype (default f32), and the
GGUF llama.cpp reads is then f16 (for bf16 / f16) or q8_0, the same values where the dtypes
allow. load_s: the model saved as a checkpoint in its base dtype, loaded back (memory-mapped)
and run to its first token.`;

interface Speed {
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  tokens: number[];
}

const perSecond = (n: number, ns: bigint) => Math.round(((n * 1e9) / Number(ns)) * 10) / 10;

/** Times the first step (prefill of the prompt plus one token) and the N-1 steps after it. */
function oursRun(model: Llama<Float32Array>, prompt: number[], n: number): Speed {
  const d = new Decoder(model, [prompt], { maxNewTokens: n, eosIds: [] });
  const t0 = process.hrtime.bigint();
  d.step();
  const t1 = process.hrtime.bigint();
  while (!d.done()) d.step();
  const t2 = process.hrtime.bigint();
  return {
    prefill_tokens_per_s: perSecond(prompt.length, t1 - t0),
    decode_tokens_per_s: perSecond(n - 1, t2 - t1),
    tokens: d.results()[0][0].ids,
  };
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
    const t0 = process.hrtime.bigint();
    let t1 = t0;
    for await (const id of gen) {
      if (out.length === 0) t1 = process.hrtime.bigint();
      out.push(id);
      if (out.length === count) break;
    }
    return { out, t0, t1, t2: process.hrtime.bigint() };
  };
  await evaluate((prompt as Ids).slice(0, 8), 4); // warm-up
  return {
    run: async (): Promise<Speed> => {
      const r = await evaluate(prompt as Ids, n);
      return {
        prefill_tokens_per_s: perSecond(prompt.length, r.t1 - r.t0),
        decode_tokens_per_s: perSecond(n - 1, r.t2 - r.t1),
        tokens: r.out,
      };
    },
    dispose: async () => {
      await ctx.dispose();
      await model.dispose();
    },
  };
}

/** The best prefill and the best decode rate over runs (the tokens of the first). */
function best(runs: Speed[]): Speed {
  return {
    prefill_tokens_per_s: Math.max(...runs.map((r) => r.prefill_tokens_per_s)),
    decode_tokens_per_s: Math.max(...runs.map((r) => r.decode_tokens_per_s)),
    tokens: runs[0].tokens,
  };
}

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
      config: { type: 'string' },
      'base-dtype': { type: 'string' },
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
  const config = benchConfig(a, { vocab: 8000, dim: 512, ffn: 1408, layers: 8, heads: 8 }, P + N + 8);
  const base = baseDtypeArg(a);
  let model = Llama.random(nativeKernels, config, 1, false, base);
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
    model = await loadModel(path.join(dir, 'hf'), nativeKernels, false, base);
    oursRun(model, prompt.slice(0, 1), 2);
    loadS = Number(process.hrtime.bigint() - t0) / 1e9;
    oursRun(model, prompt.slice(0, 8), 4); // warm-up: workspace, page-in
    const file = path.join(dir, 'model.gguf');
    await writeLlamaGguf(file, { model, tokenizer, template: ChatTemplate.builtin('chatml'), name: 'bench' }, ggufDtype);
    const them = await llamaCpp(file, prompt, N, getThreads(), kv).catch((e: Error) => {
      unavailable = e.message;
      return null;
    });
    try {
      for (let r = 0; r < R; r++) {
        oursRuns.push(oursRun(model, prompt, N));
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
  let agree = 0;
  while (theirs && agree < N && ours.tokens[agree] === theirs.tokens[agree]) agree++;
  const result = {
    bench: 'generate',
    ours: { prefill_tokens_per_s: ours.prefill_tokens_per_s, decode_tokens_per_s: ours.decode_tokens_per_s },
    llama_cpp: theirs
      ? {
          prefill_tokens_per_s: theirs.prefill_tokens_per_s,
          decode_tokens_per_s: theirs.decode_tokens_per_s,
          kv_cache: kv,
          flash_attention: false,
        }
      : null,
    ...(unavailable !== undefined && { llama_cpp_unavailable: unavailable }),
    prefill_ratio: theirs ? Math.round((ours.prefill_tokens_per_s / theirs.prefill_tokens_per_s) * 100) / 100 : null,
    decode_ratio: theirs ? Math.round((ours.decode_tokens_per_s / theirs.decode_tokens_per_s) * 100) / 100 : null,
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
  };
  process.stdout.write(
    a.flag('json')
      ? JSON.stringify(result) + '\n'
      : `ours: prefill ${result.ours.prefill_tokens_per_s} tok/s, decode ${result.ours.decode_tokens_per_s} tok/s; ` +
          (theirs
            ? `llama.cpp: prefill ${theirs.prefill_tokens_per_s} tok/s, decode ${theirs.decode_tokens_per_s} tok/s (prefill ratio ${result.prefill_ratio}, decode ratio ${result.decode_ratio})\n`
            : `llama.cpp unavailable: ${unavailable}\n`),
  );
  return result;
}
