import { nativeInfo, nativeKernels, getThreads } from '../src/engine/native.js';
import { weightedSum } from '../src/engine/ops.js';
import { AdamW } from '../src/engine/optim.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';
import { parseWithShape, shapeConfig } from './shape.js';

const USAGE = `chimed bench train --vocab V --dim D --layers L --heads H [--kv-heads K] --ffn F --seq T --batch B [--steps N] [--recompute] [--threads N] [--json]

Times full training steps (forward, backward, clipping, AdamW) of a random LLaMA on random
tokens, after one untimed warm-up step. Prints tokens/s, ms/step, parameters and peak RSS.`;

/** One JSON line: {tokens_per_s, ms_per_step, params, peak_rss_mb, ...}. */
export async function benchTrain(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parseWithShape(
    argv,
    {
      seq: { type: 'string' },
      batch: { type: 'string' },
      steps: { type: 'string' },
      recompute: { type: 'boolean' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  const T = a.int('seq', 256),
    B = a.int('batch', 8),
    steps = a.int('steps', 5);
  const config = shapeConfig(a, { vocab: 8000, dim: 256, ffn: 704, layers: 4, heads: 4 }, Math.max(4096, T));
  const model = Llama.random(nativeKernels, config, 1);
  const opt = new AdamW(model.params, { lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01 });
  const rng = new Rng(7);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(config.vocab_size));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(config.vocab_size));
  const batch = { ids, pos: sequentialPositions(B, T), B, T };
  const weights = new Float32Array(B * T).fill(-1 / (B * T));
  const ctx = new Context(nativeKernels);
  let loss = 0;
  const step = () => {
    model.params.zeroGrad();
    const l = weightedSum(ctx, model.logprobs(ctx, batch, targets, { recompute: a.flag('recompute') }), weights);
    loss = l.data[0];
    ctx.backward(l);
    ctx.reset();
    opt.clip(1.0);
    opt.update(1e-4);
  };
  step();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) step();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
  const result = {
    bench: 'train',
    tokens_per_s: Math.round((B * T * 1000) / ms),
    ms_per_step: Math.round(ms * 10) / 10,
    params: model.params.size,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    workspace_mb: Math.round((ctx.ws.capacity() * 4) / 2 ** 20),
    loss: Math.round(loss * 1e4) / 1e4,
    vocab: config.vocab_size,
    dim: config.hidden_size,
    layers: config.num_hidden_layers,
    heads: config.num_attention_heads,
    kv_heads: config.num_key_value_heads,
    ffn: config.intermediate_size,
    seq: T,
    batch: B,
    steps,
    recompute: a.flag('recompute'),
    threads: getThreads(),
    blas: nativeInfo().blas,
  };
  process.stdout.write(
    a.flag('json')
      ? JSON.stringify(result) + '\n'
      : `${result.tokens_per_s} tokens/s, ${result.ms_per_step} ms/step, ${result.params.toLocaleString('en-US')} params, peak RSS ${result.peak_rss_mb} MB\n`,
  );
  return result;
}
