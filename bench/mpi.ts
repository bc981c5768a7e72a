import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/engine/addon.js';
import { dist, mpiSummary, type Dist } from '../src/engine/dist.js';
import { getThreads, nativeKernels, setThreads } from '../src/engine/native.js';
import { Context } from '../src/engine/tensor.js';
import { Rng } from '../src/engine/rng.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';
import { lmLossStep } from '../src/train/lm-loss.js';
import { MetricsLog } from '../src/train/metrics.js';
import { Trainer, trainerDefaults, type RowRange, type TrainTask } from '../src/train/trainer.js';
import { parseWithShape, shapeConfig } from './shape.js';

const USAGE = `chimed bench mpi [--np N] [--threads N] [--vocab V --dim D --layers L --heads H --kv-heads K --ffn F]
                 [--seq T] [--batch B] [--steps N] [--tcp] [--json]

Data-parallel training throughput: the shared trainer (train/trainer.ts) on random tokens, one
global batch of B sequences of T tokens per step, run as 1 rank x N threads and as N ranks x 1
thread (mpirun -np N, each rank B / N sequences, gradients all-reduced each step). Prints
tokens/s of both, their ratio, the all-reduce time per step (the gradient buffer of every
parameter) and its share of the step. Defaults: the 58M config (V32000 D512 L8 FFN1408, T512
B4), N = 2, 3 timed steps after one warm-up. --tcp: the ranks talk over TCP (--mca btl
self,tcp, as across machines) instead of shared memory.`;

/** One worker's figures (printed as JSON by rank 0 of the worker run). */
interface WorkerResult {
  ranks: number;
  threads: number;
  params: number;
  tokens_per_s: number;
  step_ms: number;
  allreduce_ms: number;
}

/** Random-token next-token prediction: micro-batch i is a pure function of i, as the trainer needs. */
class RandomTokens implements TrainTask<Float32Array> {
  constructor(
    readonly model: Llama<Float32Array>,
    readonly batchSize: number,
    readonly T: number,
  ) {}

  get params() {
    return this.model.params;
  }

  microStep(ctx: Context<Float32Array>, index: number, gradScale: number, rows?: RowRange) {
    const rng = Rng.derive(7, index);
    const { batchSize: B, T } = this;
    const V = this.model.config.vocab_size;
    const ids = Int32Array.from({ length: B * T }, () => rng.int(V));
    const targets = Int32Array.from({ length: B * T }, () => rng.int(V));
    return lmLossStep(ctx, this.model, { ids, pos: sequentialPositions(B, T), B, T }, targets, gradScale, false, rows);
  }

  saveWeights = async () => {};
}

/**
 * The trainer's collectives, timing the all-reduce of the gradient buffer (the others are a few
 * numbers). A barrier first, so that the time is the exchange itself and not one rank waiting
 * for a slower one to finish its micro-batches.
 */
function timedRanks(d: Dist, params: number, times: number[]): Dist {
  return {
    ...d,
    allreduceSum: (a) => {
      if (a.length === params) d.barrier();
      const t0 = process.hrtime.bigint();
      d.allreduceSum(a);
      if (a.length === params) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    },
  };
}

async function worker(a: ReturnType<typeof parseWithShape>): Promise<WorkerResult> {
  const d = dist();
  setThreads(a.int('threads', 1));
  const T = a.int('seq', 512),
    B = a.int('batch', 4),
    steps = a.int('steps', 3);
  if (B % d.size) throw new Error(`--batch ${B} is not a multiple of the ${d.size} ranks`);
  const config = shapeConfig(a, { vocab: 32000, dim: 512, ffn: 1408, layers: 8, heads: 8 }, Math.max(4096, T));
  const model = Llama.random(nativeKernels, config, 1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chimed-bench-mpi-'));
  const allreduce: number[] = [];
  const warmup = 1;
  try {
    const metrics = new MetricsLog(path.join(dir, 'metrics.jsonl'));
    const cfg = {
      ...trainerDefaults,
      lr: 1e-4,
      warmupRatio: 0,
      schedule: 'constant' as const,
      weightDecay: 0.01,
      clipNorm: 1,
      // the global batch: one micro-batch of B sequences, B / size rows of it per rank
      gradAccum: 1,
      maxSteps: warmup + steps,
      evalEvery: 0,
      saveEvery: 0,
      seed: 1,
    };
    const trainer = new Trainer<Float32Array>('bench', path.join(dir, 'stage'), cfg, metrics, timedRanks(d, model.params.size, allreduce));
    await trainer.train(new RandomTokens(model, B, T), new Context(nativeKernels));
    const timedSteps = metrics.read('bench').slice(warmup);
    const seconds = timedSteps.reduce((s, r) => s + (r.step_s as number), 0);
    const tokens = timedSteps.reduce((s, r) => s + (r.tokens as number), 0);
    const reduceMs = allreduce.slice(warmup);
    return {
      ranks: d.size,
      threads: getThreads(),
      params: model.params.size,
      tokens_per_s: Math.round(tokens / seconds),
      step_ms: Math.round((1000 * seconds) / timedSteps.length),
      allreduce_ms: reduceMs.length ? Math.round((10 * reduceMs.reduce((s, x) => s + x, 0)) / reduceMs.length) / 10 : 0,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs this bench as a worker, alone or under mpirun, and reads rank 0's JSON line. */
function runWorker(np: number, threads: number, passArgs: string[], tcp: boolean): WorkerResult {
  const bin = path.join(packageRoot(), 'bin', 'chimed.js');
  const args = [bin, 'bench', 'mpi', '--worker', '--threads', String(threads), ...passArgs];
  const env = { ...process.env, CHIMED_QUIET: '1', OMP_NUM_THREADS: String(threads) };
  const r =
    np === 1
      ? spawnSync(process.execPath, args, { encoding: 'utf8', env })
      : spawnSync(
          'mpirun',
          [
            // a container's root user, more ranks than cores allowed, no kernel-assisted copy (often forbidden in containers)
            '--allow-run-as-root',
            '--oversubscribe',
            '--mca',
            'btl_vader_single_copy_mechanism',
            'none',
            ...(tcp ? ['--mca', 'btl', 'self,tcp'] : []),
            ...['OMP_NUM_THREADS', 'CHIMED_QUIET', 'OMP_WAIT_POLICY'].flatMap((v) => ['-x', v]),
            '-np',
            String(np),
            process.execPath,
            ...args,
          ],
          { encoding: 'utf8', env: { ...env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' } },
        );
  if (r.error) throw new Error(`bench mpi: cannot start ${np === 1 ? 'node' : 'mpirun'}: ${r.error.message}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  if (r.status !== 0 || !line) throw new Error(`bench mpi: the ${np}-rank run failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(line) as WorkerResult;
}

export async function benchMpi(argv: string[]) {
  const a = parseWithShape(
    argv,
    {
      np: { type: 'string' },
      threads: { type: 'string' },
      seq: { type: 'string' },
      batch: { type: 'string' },
      steps: { type: 'string' },
      tcp: { type: 'boolean' },
      worker: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  if (a.flag('worker')) {
    const r = await worker(a);
    process.stdout.write(JSON.stringify(r) + '\n');
    return r;
  }
  const np = a.int('np', 2);
  const shape = ['vocab', 'dim', 'layers', 'heads', 'kv-heads', 'ffn', 'seq', 'batch', 'steps'].flatMap((f) =>
    a.str(f) !== undefined ? [`--${f}`, a.str(f)!] : [],
  );
  const one = runWorker(1, np, shape, false);
  const many = runWorker(np, 1, shape, a.flag('tcp'));
  const result = {
    bench: 'mpi',
    mpi: mpiSummary(),
    transport: a.flag('tcp') ? 'tcp' : 'shared memory',
    load: os.loadavg()[0],
    one_rank: one,
    ranks: many,
    speedup: Math.round((100 * many.tokens_per_s) / one.tokens_per_s) / 100,
    communication_share: Math.round((1000 * many.allreduce_ms) / many.step_ms) / 1000,
  };
  if (a.flag('json')) process.stdout.write(JSON.stringify(result) + '\n');
  else {
    const row = (r: WorkerResult) =>
      `${r.ranks} rank${r.ranks > 1 ? 's' : ''} x ${r.threads} thread${r.threads > 1 ? 's' : ''}: ${r.tokens_per_s} tokens/s, ${r.step_ms} ms/step` +
      (r.ranks > 1 ? `, all-reduce ${r.allreduce_ms} ms/step (${(100 * result.communication_share).toFixed(1)}% of the step)` : '');
    process.stdout.write(
      `${result.mpi}; ${one.params.toLocaleString('en-US')} parameters; ranks over ${result.transport}; load ${result.load.toFixed(2)}\n` +
        `${row(one)}\n${row(many)}\n${np} ranks / 1 rank: ${result.speedup}x\n`,
    );
  }
  return result;
}
