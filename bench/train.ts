import { describeGemmChoice, gemmChoice } from '../src/engine/gemm-choice.js';
import type { Kernels } from '../src/engine/kernels.js';
import { gemmClassOf, getThreads, nativeKernels, setThreads } from '../src/engine/native.js';
import { weightedSum } from '../src/engine/ops.js';
import { AdamW } from '../src/engine/optim.js';
import { cpuMs, KernelProfile, mainThreadCpuMs } from '../src/engine/profile.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';
import { LoraAdapter } from '../src/model/lora.js';
import { UsageError } from '../src/io/argv.js';
import { type PhaseTime, profileRows, profileTable } from './profile-table.js';
import { baseDtypeArg, benchConfig, parseWithShape } from './shape.js';

const USAGE = `chimed bench train --vocab V --dim D --layers L --heads H [--kv-heads K] --ffn F --seq T --batch B [--steps N] [--recompute]
                   [--config CONFIG.json] [--lora] [--base-dtype bf16|f16|q8_0|f32] [--profile] [--threads N] [--json]

Times full training steps (forward, backward, clipping, AdamW) of a random LLaMA on random
tokens, after two untimed warm-up steps (the first sizes the activation arena, the second
faults its pages in). Prints tokens/s, ms/step, parameters and peak RSS, and
the step's model rate 6 * params * tokens/s against the GEMM rate of a 2048^3 product measured
between the steps (best step against best GEMM, so a loaded machine disturbs both alike). The
same ratio from the main thread's time on a CPU (Linux) follows: other processes stretch wall
time while the main thread waits for a CPU, which that time leaves out, so on a busy machine it
is the better estimate of the idle ratio (from above, exactly when the threads share the work
evenly). 6 * params counts the embedding table, which costs no GEMM, so the ratio can pass 100%.
--config takes the model's shape from an HF config.json of any supported family instead of the
shape flags. --lora trains a rank-8 adapter on every linear layer (alpha 16) over a frozen base
kept in --base-dtype (default f32), as a LoRA stage does; the model rate then counts 4 * params
(forward and input gradients, no weight gradients) and trainable_params the adapter's.
--profile times every kernel call by kind and phase (forward, backward, optimizer) and what each
phase spends outside the kernels (TypeScript: tape, ops, allocation), from the same steps, in
wall and CPU time.`;

type F = Float32Array;
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** A step's or a GEMM's time; threadMs: the main thread's time on a CPU (null off Linux). */
interface RunTime extends PhaseTime {
  threadMs: number | null;
}

const PHASES = ['forward', 'backward', 'optimizer'] as const;

/** One 2048^3 GEMM on the path this machine dispatches it to: its times. */
function gemmProbe(k: Kernels<F>): () => RunTime {
  const n = 2048,
    rng = new Rng(9);
  const A = Float32Array.from({ length: n * n }, () => rng.next() - 0.5),
    B = Float32Array.from({ length: n * n }, () => rng.next() - 0.5);
  const C = new Float32Array(n * n);
  return () => timed(() => k.gemm(false, false, n, n, n, 1, A, B, 0, C));
}

function timed(fn: () => void): RunTime {
  const m0 = mainThreadCpuMs(),
    c0 = cpuMs(),
    t0 = process.hrtime.bigint();
  fn();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6,
    cpu = cpuMs() - c0,
    m1 = mainThreadCpuMs();
  return { ms, cpuMs: cpu, threadMs: m0 === null || m1 === null ? null : m1 - m0 };
}

/** One JSON line: {tokens_per_s, ms_per_step, params, peak_rss_mb, ...}. */
export async function benchTrain(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parseWithShape(
    argv,
    {
      seq: { type: 'string' },
      batch: { type: 'string' },
      steps: { type: 'string' },
      recompute: { type: 'boolean' },
      config: { type: 'string' },
      lora: { type: 'boolean' },
      'base-dtype': { type: 'string' },
      profile: { type: 'boolean' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  if (a.str('threads')) setThreads(a.int('threads'));
  const T = a.int('seq', 256),
    B = a.int('batch', 8),
    steps = a.int('steps', 5);
  const config = benchConfig(a, { vocab: 8000, dim: 256, ffn: 704, layers: 4, heads: 4 }, Math.max(4096, T));
  const lora = a.flag('lora'),
    base = baseDtypeArg(a);
  if (!lora && base !== 'f32') throw new UsageError(`--base-dtype ${base} needs --lora: full training keeps f32 weights`);
  const profile = a.flag('profile') ? new KernelProfile(nativeKernels, gemmClassOf) : null;
  const kernels = profile?.kernels ?? nativeKernels;
  const model = Llama.random(kernels, config, 1, !lora, base);
  const adapter = lora ? new LoraAdapter(model, { r: 8, alpha: 16, dropout: 0, targetModules: 'all-linear' }).init(1).attach() : null;
  const trained = adapter?.params ?? model.params;
  const opt = new AdamW(trained, { lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01 });
  const rng = new Rng(7);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(config.vocab_size));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(config.vocab_size));
  const batch = { ids, pos: sequentialPositions(B, T), B, T };
  const weights = new Float32Array(B * T).fill(-1 / (B * T));
  const ctx = new Context(kernels);
  const phases: Record<string, PhaseTime> = {};
  let loss = 0;
  const phase = (name: (typeof PHASES)[number], fn: () => void) => {
    if (profile) profile.phase = name;
    const t = timed(fn);
    phases[name] = { ms: (phases[name]?.ms ?? 0) + t.ms, cpuMs: (phases[name]?.cpuMs ?? 0) + t.cpuMs };
  };
  const step = () =>
    timed(() => {
      phase('optimizer', () => trained.zeroGrad());
      let l: ReturnType<typeof weightedSum<F>> | undefined;
      phase('forward', () => {
        l = weightedSum(ctx, model.logprobs(ctx, batch, targets, { recompute: a.flag('recompute') }), weights);
        loss = l.data[0];
      });
      phase('backward', () => {
        ctx.backward(l!);
        ctx.reset();
      });
      phase('optimizer', () => {
        opt.clip(1.0);
        opt.update(1e-4);
      });
    });
  step();
  step();
  const probe = gemmProbe(nativeKernels);
  probe();
  profile?.reset();
  for (const p of PHASES) phases[p] = { ms: 0, cpuMs: 0 };
  const total: PhaseTime = { ms: 0, cpuMs: 0 };
  type Best = Omit<RunTime, 'cpuMs'>;
  const bestStep: Best = { ms: Infinity, threadMs: Infinity },
    bestGemm: Best = { ms: Infinity, threadMs: Infinity };
  const keepBest = (best: Best, t: RunTime) => {
    best.ms = Math.min(best.ms, t.ms);
    best.threadMs = best.threadMs === null || t.threadMs === null ? null : Math.min(best.threadMs, t.threadMs);
  };
  for (let i = 0; i < steps; i++) {
    const t = step();
    total.ms += t.ms;
    total.cpuMs += t.cpuMs;
    keepBest(bestStep, t);
    keepBest(bestGemm, probe());
  }
  const ms = total.ms / steps,
    stepFlops = (lora ? 4 : 6) * model.params.count * B * T,
    gemmFlops = 2 * 2048 ** 3;
  const threads = getThreads();
  const modelGflops = stepFlops / 1e6 / bestStep.ms,
    gemmGflops = gemmFlops / 1e6 / bestGemm.ms;
  const onCpu =
    bestStep.threadMs === null || bestGemm.threadMs === null
      ? null
      : { model: stepFlops / 1e6 / bestStep.threadMs, gemm: gemmFlops / 1e6 / bestGemm.threadMs };
  for (const p of PHASES) phases[p] = { ms: phases[p].ms / steps, cpuMs: phases[p].cpuMs / steps };
  const rows = profile ? profileRows(profile.snapshot(), phases, steps, { ms, cpuMs: total.cpuMs / steps }) : null;
  const result = {
    bench: 'train',
    tokens_per_s: Math.round((B * T * 1000) / ms),
    ms_per_step: round(ms),
    best_ms_per_step: round(bestStep.ms),
    cpu_ms_per_step: round(total.cpuMs / steps),
    model_gflops: round(modelGflops),
    gemm_2048_gflops: round(gemmGflops),
    fraction_of_gemm: round(modelGflops / gemmGflops, 3),
    ...(onCpu && {
      oncpu_model_gflops: round(onCpu.model),
      oncpu_gemm_2048_gflops: round(onCpu.gemm),
      oncpu_fraction_of_gemm: round(onCpu.model / onCpu.gemm, 3),
    }),
    params: model.params.count,
    trainable_params: trained.size,
    lora,
    base_dtype: base,
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
    threads,
    gemm: describeGemmChoice(gemmChoice()),
    ...(rows && { profile: { phases_ms: Object.fromEntries(PHASES.map((p) => [p, round(phases[p].ms)])), kernels: rows } }),
  };
  process.stdout.write(
    a.flag('json')
      ? JSON.stringify(result) + '\n'
      : `${result.tokens_per_s} tokens/s, ${result.ms_per_step} ms/step (best ${result.best_ms_per_step}), ${result.params.toLocaleString('en-US')} params, peak RSS ${result.peak_rss_mb} MB\n` +
          `model rate 6*params*tokens/s ${result.model_gflops} GFLOP/s = ${round(100 * result.fraction_of_gemm)}% of the 2048^3 GEMM's ${result.gemm_2048_gflops} GFLOP/s ` +
          `(${onCpu ? `from the main thread's time on a CPU: ${result.oncpu_model_gflops} = ${round(100 * result.oncpu_fraction_of_gemm!)}% of ${result.oncpu_gemm_2048_gflops}; ` : ''}gemm: ${result.gemm})\n` +
          (rows ? `\nprofile, per step:\n${profileTable(rows, phases)}\n` : ''),
  );
  return result;
}
