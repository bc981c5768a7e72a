import { describeGemmChoice, gemmChoice } from '../src/engine/gemm-choice.js';
import type { Kernels } from '../src/engine/kernels.js';
import { gemmClassOf, getThreads, nativeKernels, setThreads } from '../src/engine/native.js';
import { weightedSum } from '../src/engine/ops.js';
import { AdamW } from '../src/engine/optim.js';
import { KernelProfile, type KernelTime } from '../src/engine/profile.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { parseModelConfig } from '../src/model/config.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';
import { parse } from '../src/cli/args.js';

const USAGE = `chimed bench train --vocab V --dim D --layers L --heads H [--kv-heads K] --ffn F --seq T --batch B [--steps N] [--recompute]
                   [--profile] [--threads N] [--json]

Times full training steps (forward, backward, clipping, AdamW) of a random LLaMA on random
tokens, after two untimed warm-up steps (the first sizes the activation arena, the second
faults its pages in). Prints tokens/s, ms/step, parameters and peak RSS, and
the step's model rate 6 * params * tokens/s against the GEMM rate of a 2048^3 product measured
between the steps (best step against best GEMM, so a loaded machine disturbs both alike).
--profile times every kernel call by kind and phase (forward, backward, optimizer) and what each
phase spends outside the kernels (TypeScript: tape, ops, allocation), from the same steps.`;

type F = Float32Array;
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** A row of the profile table: one kernel kind, ms per step in each phase. */
interface ProfileRow {
  kind: string;
  ms: Record<string, number>;
  total_ms: number;
  share: number;
  calls: number;
  gflops?: number;
}

const PHASES = ['forward', 'backward', 'optimizer'] as const;

function profileRows(times: Map<string, Map<string, KernelTime>>, phaseWall: Record<string, number>, steps: number, stepMs: number): ProfileRow[] {
  const kinds = new Map<string, ProfileRow & { flops: number }>();
  for (const [phase, byKind] of times)
    for (const [kind, t] of byKind) {
      const row = kinds.get(kind) ?? { kind, ms: {}, total_ms: 0, share: 0, calls: 0, flops: 0 };
      row.ms[phase] = (row.ms[phase] ?? 0) + t.ms / steps;
      row.total_ms += t.ms / steps;
      row.calls += t.calls / steps;
      row.flops += t.flops / steps;
      kinds.set(kind, row);
    }
  const ts: ProfileRow = { kind: 'TypeScript (outside kernels)', ms: {}, total_ms: 0, share: 0, calls: 0 };
  for (const phase of Object.keys(phaseWall)) {
    const inKernels = [...(times.get(phase)?.values() ?? [])].reduce((s, t) => s + t.ms, 0) / steps;
    ts.ms[phase] = Math.max(0, phaseWall[phase] - inKernels);
    ts.total_ms += ts.ms[phase];
  }
  const rows: ProfileRow[] = [...kinds.values()].map(({ flops, ...r }) => (flops > 0 ? { ...r, gflops: round(flops / 1e6 / r.total_ms) } : r));
  rows.push(ts);
  for (const r of rows) {
    r.share = round((100 * r.total_ms) / stepMs);
    r.total_ms = round(r.total_ms);
    r.calls = round(r.calls);
    for (const p of Object.keys(r.ms)) r.ms[p] = round(r.ms[p]);
  }
  return rows.sort((x, y) => y.total_ms - x.total_ms);
}

function profileTable(rows: ProfileRow[], phaseWall: Record<string, number>): string {
  const phases = Object.keys(phaseWall);
  const head = ['kind'.padEnd(30), ...phases.map((p) => p.padStart(10)), 'total'.padStart(9), '%step'.padStart(7), 'calls'.padStart(7), 'GFLOP/s'.padStart(9)].join(' ');
  const line = (r: ProfileRow) => [r.kind.padEnd(30), ...phases.map((p) => String(r.ms[p] ?? '').padStart(10)), String(r.total_ms).padStart(9),
    `${r.share}%`.padStart(7), String(r.calls).padStart(7), String(r.gflops ?? '').padStart(9)].join(' ');
  const wall = ['phase wall ms'.padEnd(30), ...phases.map((p) => String(round(phaseWall[p])).padStart(10))].join(' ');
  return [head, ...rows.map(line), wall].join('\n');
}

/** Best ms of a 2048^3 GEMM on the path this machine dispatches it to. */
function gemmProbe(k: Kernels<F>): () => number {
  const n = 2048, rng = new Rng(9);
  const A = Float32Array.from({ length: n * n }, () => rng.next() - 0.5), B = Float32Array.from({ length: n * n }, () => rng.next() - 0.5);
  const C = new Float32Array(n * n);
  return () => {
    const t0 = process.hrtime.bigint();
    k.gemm(false, false, n, n, n, 1, A, B, 0, C);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
}

/** One JSON line: {tokens_per_s, ms_per_step, params, peak_rss_mb, ...}. */
export async function benchTrain(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parse(argv, {
    vocab: { type: 'string' }, dim: { type: 'string' }, layers: { type: 'string' }, heads: { type: 'string' }, 'kv-heads': { type: 'string' },
    ffn: { type: 'string' }, seq: { type: 'string' }, batch: { type: 'string' }, steps: { type: 'string' }, recompute: { type: 'boolean' },
    profile: { type: 'boolean' }, threads: { type: 'string' }, json: { type: 'boolean' },
  }, USAGE);
  if (a.help) { process.stdout.write(USAGE + '\n'); return null; }
  if (a.str('threads')) setThreads(a.int('threads'));
  const T = a.int('seq', 256), B = a.int('batch', 8), steps = a.int('steps', 5);
  const heads = a.int('heads', 4);
  const config = parseModelConfig({
    vocab_size: a.int('vocab', 8000), hidden_size: a.int('dim', 256), intermediate_size: a.int('ffn', 704),
    num_hidden_layers: a.int('layers', 4), num_attention_heads: heads, num_key_value_heads: a.int('kv-heads', heads),
    max_position_embeddings: Math.max(4096, T),
  }, 'bench arguments');
  const profile = a.flag('profile') ? new KernelProfile(nativeKernels, gemmClassOf) : null;
  const kernels = profile?.kernels ?? nativeKernels;
  const model = Llama.random(kernels, config, 1);
  const opt = new AdamW(model.params, { lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01 });
  const rng = new Rng(7);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(config.vocab_size));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(config.vocab_size));
  const batch = { ids, pos: sequentialPositions(B, T), B, T };
  const weights = new Float32Array(B * T).fill(-1 / (B * T));
  const ctx = new Context(kernels);
  const phaseWall: Record<string, number> = Object.fromEntries(PHASES.map((p) => [p, 0]));
  let loss = 0;
  const phase = (name: (typeof PHASES)[number], fn: () => void) => {
    if (profile) profile.phase = name;
    const t0 = process.hrtime.bigint();
    fn();
    phaseWall[name] += Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const step = () => {
    const t0 = process.hrtime.bigint();
    phase('optimizer', () => model.params.zeroGrad());
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
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  step();
  step();
  const probe = gemmProbe(nativeKernels);
  probe();
  profile?.reset();
  for (const p of PHASES) phaseWall[p] = 0;
  let totalMs = 0, bestStepMs = Infinity, bestGemmMs = Infinity;
  for (let i = 0; i < steps; i++) {
    const ms = step();
    totalMs += ms;
    bestStepMs = Math.min(bestStepMs, ms);
    bestGemmMs = Math.min(bestGemmMs, probe());
  }
  const ms = totalMs / steps;
  const modelGflops = (6 * model.params.size * B * T) / 1e6 / bestStepMs, gemmGflops = (2 * 2048 ** 3) / 1e6 / bestGemmMs;
  for (const p of PHASES) phaseWall[p] /= steps;
  const rows = profile ? profileRows(profile.snapshot(), phaseWall, steps, ms) : null;
  const result = {
    bench: 'train', tokens_per_s: Math.round((B * T * 1000) / ms), ms_per_step: round(ms), best_ms_per_step: round(bestStepMs),
    model_gflops: round(modelGflops), gemm_2048_gflops: round(gemmGflops), fraction_of_gemm: round(modelGflops / gemmGflops, 3),
    params: model.params.size, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    workspace_mb: Math.round((ctx.ws.capacity() * 4) / 2 ** 20), loss: Math.round(loss * 1e4) / 1e4,
    vocab: config.vocab_size, dim: config.hidden_size, layers: config.num_hidden_layers, heads, kv_heads: config.num_key_value_heads,
    ffn: config.intermediate_size, seq: T, batch: B, steps, recompute: a.flag('recompute'), threads: getThreads(), gemm: describeGemmChoice(gemmChoice()),
    ...(rows && { profile: { phases_ms: Object.fromEntries(PHASES.map((p) => [p, round(phaseWall[p])])), kernels: rows } }),
  };
  process.stdout.write(a.flag('json') ? JSON.stringify(result) + '\n' :
    `${result.tokens_per_s} tokens/s, ${result.ms_per_step} ms/step (best ${result.best_ms_per_step}), ${result.params.toLocaleString('en-US')} params, peak RSS ${result.peak_rss_mb} MB\n` +
    `model rate 6*params*tokens/s ${result.model_gflops} GFLOP/s = ${round(100 * result.fraction_of_gemm)}% of the 2048^3 GEMM's ${result.gemm_2048_gflops} GFLOP/s (gemm: ${result.gemm})\n` +
    (rows ? `\nprofile, ms per step:\n${profileTable(rows, phaseWall)}\n` : ''));
  return result;
}
