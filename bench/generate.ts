import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getThreads, nativeInfo, nativeKernels, setThreads } from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';
import { writeLlamaGguf } from '../src/model/gguf-llama.js';
import { Decoder } from '../src/model/generate.js';
import { Llama } from '../src/model/llama.js';
import { ChatTemplate } from '../src/tokenizer/chat-template.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { UsageError } from '../src/io/argv.js';
import { parseWithShape, shapeConfig } from './shape.js';

const USAGE = `chimed bench generate [--vocab V] [--dim D] [--layers L] [--heads H] [--kv-heads K] [--ffn F]
                      [--prompt P] [--tokens N] [--threads N] [--llama-kv f32|f16] [--json]

Greedy generation speed of one random f32 LLaMA (default vocab 8000, dim 512, 8 layers,
8 heads, ffn 1408) here (src/model/generate.ts) and in llama.cpp through node-llama-cpp (a
dev dependency) on the same weights exported as f32 GGUF: prefill tokens/s over a P-token
prompt (default 128) and decode tokens/s over N new tokens (default 64), one untimed
warm-up each, the same thread count. llama.cpp runs without flash attention and with an
f32 KV cache like ours (--llama-kv f16: its default cache type). greedy_agree counts the
leading new tokens both chose alike.`;

interface Speed {
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  tokens: number[];
}

const perSecond = (n: number, ns: bigint) => Math.round(((n * 1e9) / Number(ns)) * 10) / 10;

/** Times the first step (prefill of the prompt plus one token) and the N-1 steps after it. */
function oursSpeed(model: Llama<Float32Array>, prompt: number[], n: number): Speed {
  new Decoder(model, [prompt.slice(0, 8)], { maxNewTokens: 4, eosIds: [] }).step(); // warm-up: workspace, page-in
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

async function llamaCppSpeed(file: string, prompt: number[], n: number, threads: number, kv: 'F32' | 'F16'): Promise<Speed> {
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
  try {
    const seq = ctx.getSequence();
    const ids = prompt as Parameters<typeof seq.evaluate>[0]; // node-llama-cpp brands token ids
    const run = async (input: typeof ids, count: number) => {
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
    await run(ids.slice(0, 8), 4); // warm-up
    await seq.clearHistory();
    const r = await run(ids, n);
    return {
      prefill_tokens_per_s: perSecond(prompt.length, r.t1 - r.t0),
      decode_tokens_per_s: perSecond(n - 1, r.t2 - r.t1),
      tokens: r.out,
    };
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
}

/** One JSON line: ours and llama.cpp's prefill / decode tokens/s on the same f32 model. */
export async function benchGenerate(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parseWithShape(
    argv,
    {
      prompt: { type: 'string' },
      tokens: { type: 'string' },
      threads: { type: 'string' },
      'llama-kv': { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  const P = a.int('prompt', 128),
    N = a.int('tokens', 64);
  if (N < 2) throw new UsageError('--tokens: at least 2 (the first new token is timed with the prefill)');
  const kv = (a.str('llama-kv') ?? 'f32').toUpperCase();
  if (kv !== 'F32' && kv !== 'F16') throw new UsageError(`--llama-kv: expected f32 or f16, got "${a.str('llama-kv')}"`);
  if (a.str('threads')) setThreads(a.int('threads'));
  const config = shapeConfig(a, { vocab: 8000, dim: 512, ffn: 1408, layers: 8, heads: 8 }, P + N + 8);
  const model = Llama.random(nativeKernels, config, 1, false);
  // the byte tokenizer: any vocabulary size works (rows past it are unused tokens in the GGUF)
  const tokenizer = Tokenizer.bytes();
  if (tokenizer.vocabSize > config.vocab_size) throw new UsageError(`--vocab: at least ${tokenizer.vocabSize} (the byte tokenizer's size)`);
  const rng = new Rng(3);
  const prompt = Array.from({ length: P }, () => rng.int(256));

  const ours = oursSpeed(model, prompt, N);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chimed-bench-gen-'));
  let theirs: Awaited<ReturnType<typeof llamaCppSpeed>> | null = null,
    unavailable: string | undefined;
  try {
    const file = path.join(dir, 'model.gguf');
    await writeLlamaGguf(file, { model, tokenizer, template: ChatTemplate.builtin('chatml'), name: 'bench' }, 'f32');
    theirs = await llamaCppSpeed(file, prompt, N, getThreads(), kv);
  } catch (e) {
    unavailable = (e as Error).message;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
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
    decode_ratio: theirs ? Math.round((ours.decode_tokens_per_s / theirs.decode_tokens_per_s) * 100) / 100 : null,
    greedy_agree: theirs ? agree : null,
    params: model.params.size,
    vocab: config.vocab_size,
    dim: config.hidden_size,
    layers: config.num_hidden_layers,
    heads: config.num_attention_heads,
    kv_heads: config.num_key_value_heads,
    ffn: config.intermediate_size,
    prompt: P,
    tokens: N,
    threads: getThreads(),
    blas: nativeInfo().blas,
  };
  process.stdout.write(
    a.flag('json')
      ? JSON.stringify(result) + '\n'
      : `ours: prefill ${result.ours.prefill_tokens_per_s} tok/s, decode ${result.ours.decode_tokens_per_s} tok/s; ` +
          (theirs
            ? `llama.cpp: prefill ${theirs.prefill_tokens_per_s} tok/s, decode ${theirs.decode_tokens_per_s} tok/s (decode ratio ${result.decode_ratio})\n`
            : `llama.cpp unavailable: ${unavailable}\n`),
  );
  return result;
}
