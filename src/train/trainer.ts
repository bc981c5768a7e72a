import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray } from '../engine/kernels.js';
import { engineRecord, pinnedGemmChoice, restoreEngineRecord, setGemmChoice, type EngineRecord } from '../engine/gemm-choice.js';
import { dist, type Dist } from '../engine/dist.js';
import { AdamW, learningRate, type Schedule } from '../engine/optim.js';
import { ParamStore } from '../engine/params.js';
import { Context } from '../engine/tensor.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { cleanAtomicLeftovers, replaceDirAtomic, writeJsonAtomic } from '../io/atomic.js';
import { verifyChecksums, writeChecksums } from '../io/checksums.js';
import { firstNonFinite } from '../io/finite.js';
import { StageDir } from '../io/run-dir.js';
import { MetricsLog } from './metrics.js';
import { Progress } from './progress.js';

/** Settings shared by every stage (TRL's TrainingArguments, trimmed to what we use). */
export interface TrainerConfig {
  lr: number;
  warmupRatio: number;
  schedule: Schedule;
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  clipNorm: number;
  gradAccum: number;
  /** Optimizer steps in total. */
  maxSteps: number;
  /** 0 = only at the end. */
  evalEvery: number;
  /** 0 = only the final weights. */
  saveEvery: number;
  keepCheckpoints: number;
  logEvery: number;
  seed: number;
  /** With several ranks: compare the ranks' weights every N steps (and before each checkpoint). */
  syncCheckEvery: number;
}

/**
 * The optimizer and bookkeeping constants no stage setting covers; the rest of a
 * TrainerConfig comes from a stage's settings (train/stages/common.ts), where each default
 * is written once.
 */
export const trainerDefaults = {
  minLrRatio: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  keepCheckpoints: 2,
  logEvery: 1,
  syncCheckEvery: 50,
} satisfies Partial<TrainerConfig>;

export interface MicroResult {
  /** Mean loss over the micro-batch; for a part of it, that part's share (the parts' shares sum to the mean). */
  loss: number;
  /** Tokens processed (for throughput). */
  tokens: number;
  metrics?: Record<string, number>;
}

/** What a stage plugs into the shared loop. */
export interface TrainTask<F extends FloatArray> {
  /** The parameters this stage updates (a whole model, or an adapter). */
  params: ParamStore<F>;
  /** Rows (sequences, or preference pairs) per micro-batch. */
  batchSize: number;
  /**
   * Forward and backward of global micro-batch `index`, gradients scaled by `gradScale`.
   * The batch must be a pure function of `index` (and the seed) so a resumed run sees the
   * same data as an uninterrupted one. With `rows`, only those rows of it run, and the loss,
   * metrics and gradients are that part's share of the whole micro-batch's (ranks that split
   * a micro-batch sum to the unsplit one).
   */
  microStep(ctx: Context<F>, index: number, gradScale: number, rows?: RowRange): MicroResult;
  evaluate?(ctx: Context<F>): Record<string, number>;
  /** Writes what this stage trains, in its ecosystem format (HF model dir, PEFT adapter). */
  saveWeights(dir: string): Promise<void>;
}

/** Rows [from, to) of a micro-batch. */
export interface RowRange {
  from: number;
  to: number;
}

/**
 * What rank `rank` of `size` runs of a step's global batch (gradAccum micro-batches of
 * batchSize rows): the global rows [rank, rank + 1) x G / size, as whole micro-batches where
 * they cover one (always, when size divides gradAccum) and as row ranges where they split one.
 */
export function rankShare(rank: number, size: number, batchSize: number, gradAccum: number): { micro: number; rows?: RowRange }[] {
  const per = (batchSize * gradAccum) / size;
  const lo = rank * per,
    hi = lo + per;
  const parts: { micro: number; rows?: RowRange }[] = [];
  for (let micro = Math.floor(lo / batchSize); micro * batchSize < hi; micro++) {
    const from = Math.max(lo - micro * batchSize, 0),
      to = Math.min(hi - micro * batchSize, batchSize);
    parts.push(from === 0 && to === batchSize ? { micro } : { micro, rows: { from, to } });
  }
  return parts;
}

/**
 * The rows a micro-batch of B rows runs (all, or `rows`) and their share of it: the factor
 * that turns a mean over those rows into their part of the micro-batch's mean.
 */
export function rowPart(B: number, rows?: RowRange): RowRange & { share: number } {
  const { from, to } = rows ?? { from: 0, to: B };
  return { from, to, share: (to - from) / B };
}

/** Each value times `share` (a part's metrics, as its share of the micro-batch's means). */
export function shareOf(metrics: Record<string, number>, share: number): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).map(([k, v]) => [k, v * share]));
}

export class TrainingError extends Error {}

/** A checkpoint that cannot be resumed from (corrupt, incomplete, inconsistent); the message names the file. */
class InvalidCheckpoint extends Error {}

export interface TrainResult {
  steps: number;
  resumedFrom: number;
  finalDir: string;
  lastLoss: number;
  evals: Record<string, number>;
}

const OPTIMIZER_TENSORS = ['params', 'exp_avg', 'exp_avg_sq'] as const;

/**
 * The loop every stage shares: gradient accumulation, warmup + decay schedule, clipping,
 * a NaN/Inf guard, evaluation, atomic checkpoints with resume, metrics.jsonl and progress.
 * Layout under stageDir (io/run-dir.ts): checkpoint-STEP/{weights, optimizer.safetensors, trainer_state.json,
 * checksums.sha256}, final/, engine.json (the kernels' GEMM paths, threads and CPU this stage ran
 * with; also in each trainer_state.json, and restored on resume so that the resumed run
 * multiplies exactly as the interrupted one did). Resume takes the newest checkpoint that
 * verifies, moving broken ones aside as checkpoint-STEP.invalid-TIME.
 *
 * Data-parallel over MPI ranks (engine/dist.ts): the global batch of a step is gradAccum
 * micro-batches, and each of N ranks runs 1 / N of its rows (rankShare: whole micro-batches
 * when N divides gradAccum, else rows of them; micro-batch i is a pure function of i, so the
 * global batch and data order are the 1-process run's whatever N). Each micro-batch's gradient
 * is already scaled by 1 / gradAccum (a part's by its share of that), so the sum over ranks of
 * the gradient buffer is the global batch's mean gradient; every rank then clips and steps
 * alike. LoRA dropout draws its masks per micro-batch, so a split micro-batch draws other
 * (equally distributed) masks than the unsplit one.
 * Rank 0 alone resumes (and broadcasts the state), writes checkpoints, metrics and progress.
 */
export class Trainer<F extends FloatArray> {
  private stopRequested = false;
  private readonly layout: StageDir;
  private engine: EngineRecord | null = null;
  private resumedEngine: unknown;

  constructor(
    readonly stage: string,
    readonly stageDir: string,
    readonly cfg: TrainerConfig,
    readonly metrics: MetricsLog,
    readonly ranks: Dist = dist(),
  ) {
    this.layout = new StageDir(stageDir);
  }

  /** Asks the loop to checkpoint and return after the current step (SIGINT / SIGTERM). */
  requestStop(): void {
    this.stopRequested = true;
  }

  async train(task: TrainTask<F>, ctx: Context<F>): Promise<TrainResult> {
    // a resume pins the checkpoint's GEMM paths for this stage only
    const pinnedBefore = pinnedGemmChoice();
    try {
      return await this.trainSteps(task, ctx);
    } finally {
      setGemmChoice(pinnedBefore);
    }
  }

  private async trainSteps(task: TrainTask<F>, ctx: Context<F>): Promise<TrainResult> {
    const cfg = this.cfg;
    const { rank, size, isRoot } = this.ranks;
    const globalBatch = task.batchSize * cfg.gradAccum;
    if (globalBatch % size) {
      throw new TrainingError(
        `${this.stage}: ${size} ranks cannot share a global batch of ${globalBatch} (batch_size ${task.batchSize} x grad_accum ${cfg.gradAccum}): ` +
          `start a number of ranks that divides ${globalBatch}, or change batch_size or grad_accum so that ${size} divides their product`,
      );
    }
    const opt = new AdamW(task.params, cfg);
    let resumedFrom = 0;
    if (isRoot) {
      // this stage directory is ours: finish or remove what a killed run's atomic writes left
      for (const line of await cleanAtomicLeftovers(this.stageDir)) this.warn(line);
      resumedFrom = await this.resume(task, opt);
      const problems = restoreEngineRecord(ctx.k, this.resumedEngine);
      if (problems.length) this.warn(`resuming from step ${resumedFrom} will not be bit-identical: ${problems.join('; ')}`);
    }
    if (size > 1) resumedFrom = this.startFromRoot(task, opt, ctx, resumedFrom);
    this.engine = engineRecord(ctx.k);
    if (this.engine && isRoot) {
      fs.mkdirSync(this.stageDir, { recursive: true });
      await writeJsonAtomic(path.join(this.stageDir, 'engine.json'), { ...this.engine, ...(size > 1 && { ranks: size }) });
    }
    if (isRoot) await this.metrics.truncate(this.stage, resumedFrom);
    const warmup = Math.round(cfg.warmupRatio * cfg.maxSteps);
    const progress = new Progress(`${this.stage}`, cfg.maxSteps, resumedFrom, !isRoot || undefined);
    const share = rankShare(rank, size, task.batchSize, cfg.gradAccum);
    let lastLoss = NaN;
    let evals: Record<string, number> = {};
    const t0 = Date.now();
    let tokensSinceStart = 0;

    for (let step = resumedFrom; step < cfg.maxSteps; step++) {
      const tStep = Date.now();
      task.params.zeroGrad();
      let loss = 0,
        tokens = 0;
      let extra: Record<string, number> = {};
      for (const { micro, rows } of share) {
        const r = task.microStep(ctx, step * cfg.gradAccum + micro, 1 / cfg.gradAccum, rows);
        ctx.reset();
        loss += r.loss / cfg.gradAccum;
        tokens += r.tokens;
        for (const [k, v] of Object.entries(r.metrics ?? {})) extra[k] = (extra[k] ?? 0) + v / cfg.gradAccum;
      }
      if (size > 1) ({ loss, tokens, extra } = this.sumOverRanks(task.params.grad!, loss, tokens, extra));
      const gradNorm = opt.clip(cfg.clipNorm);
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        progress.stop();
        throw new TrainingError(
          `${this.stage}: step ${step + 1}: ${Number.isFinite(loss) ? 'gradient norm' : 'loss'} is not finite ` +
            `(loss ${loss}, grad norm ${gradNorm}); weights were not updated. Lower the learning rate or check the data; ` +
            `the last checkpoint in ${this.stageDir} is intact and a re-run resumes from it.`,
        );
      }
      const lr = learningRate(step, cfg.maxSteps, warmup, cfg.lr, cfg.schedule, cfg.minLrRatio);
      opt.update(lr);
      lastLoss = loss;
      tokensSinceStart += tokens;
      const done = step + 1;
      const stepSeconds = (Date.now() - tStep) / 1000;
      const tokensPerS = tokensSinceStart / Math.max(1e-9, (Date.now() - t0) / 1000);
      if (isRoot && (done % cfg.logEvery === 0 || done === cfg.maxSteps)) {
        this.metrics.append({
          stage: this.stage,
          step: done,
          loss,
          lr,
          grad_norm: gradNorm,
          tokens,
          tokens_per_s: tokensPerS,
          step_s: stepSeconds,
          ...extra,
        });
      }
      progress.update(done, { loss, tokensPerS });
      const last = done === cfg.maxSteps;
      if (task.evaluate && ((cfg.evalEvery > 0 && done % cfg.evalEvery === 0) || last)) {
        evals = task.evaluate(ctx);
        ctx.reset();
        if (isRoot) this.metrics.append({ stage: this.stage, step: done, ...evals });
        progress.note(
          Object.entries(evals)
            .map(([k, v]) => `${k} ${v.toFixed(4)}`)
            .join('  '),
        );
      }
      // the step is synchronous: yield once so a pending SIGINT / SIGTERM handler runs now
      await new Promise((r) => setImmediate(r));
      // a signal reaches the ranks at different steps: all stop when any was asked to
      const stop = size > 1 ? this.anyRank(this.stopRequested) : this.stopRequested;
      const save = !last && ((cfg.saveEvery > 0 && done % cfg.saveEvery === 0) || stop);
      if (size > 1 && (save || last || done % cfg.syncCheckEvery === 0)) this.checkRanksAgree(task, opt, done);
      if (save && isRoot) await this.checkpoint(task, opt, done);
      if (stop && !last) {
        progress.stop();
        throw new TrainingError(`${this.stage}: stopped at step ${done} on request; checkpoint saved, re-run to resume`);
      }
    }
    progress.stop();
    const finalDir = this.layout.final;
    if (isRoot) await replaceDirAtomic(finalDir, (tmp) => task.saveWeights(tmp));
    // what runs next (evaluation, the next stage) reads the final weights on every rank
    this.ranks.barrier();
    return { steps: cfg.maxSteps, resumedFrom, finalDir, lastLoss, evals };
  }

  /**
   * Every rank starts from rank 0's state: the step it resumed from, its parameters and
   * AdamW moments (a fresh model too: initialisation need not be bitwise alike across CPUs)
   * and its GEMM path per shape class, so that all ranks multiply alike.
   */
  private startFromRoot(task: TrainTask<F>, opt: AdamW<F>, ctx: Context<F>, resumedFrom: number): number {
    const mine = { step: resumedFrom, opt: opt.step, engine: engineRecord(ctx.k) };
    const root = this.ranks.broadcast(this.ranks.isRoot ? mine : null) ?? mine;
    for (const buf of [task.params.data, opt.m, opt.v]) this.ranks.broadcastArray(buf);
    opt.step = root.opt;
    if (!this.ranks.isRoot) {
      const problems = restoreEngineRecord(ctx.k, root.engine ?? undefined);
      if (problems.length) this.warn(`rank ${this.ranks.rank} cannot multiply exactly as rank 0: ${problems.join('; ')}`);
    }
    return root.step;
  }

  /** The gradient buffer summed over ranks in place, and the step's loss, tokens and metrics summed likewise. */
  private sumOverRanks(grad: F, loss: number, tokens: number, extra: Record<string, number>) {
    this.ranks.allreduceSum(grad);
    const keys = Object.keys(extra).sort();
    const stats = Float64Array.from([loss, tokens, ...keys.map((k) => extra[k])]);
    this.ranks.allreduceSum(stats);
    return { loss: stats[0], tokens: stats[1], extra: Object.fromEntries(keys.map((k, i) => [k, stats[2 + i]])) };
  }

  private anyRank(flag: boolean): boolean {
    const f = Float64Array.of(flag ? 1 : 0);
    this.ranks.allreduceSum(f);
    return f[0] > 0;
  }

  /**
   * Compares the ranks' weights (ranks on CPUs with other instruction sets round differently):
   * beyond WEIGHT_TOLERANCE the run stops, naming the rank; any smaller difference is rounding,
   * wiped out by giving every rank rank 0's weights and moments so it never accumulates.
   */
  private checkRanksAgree(task: TrainTask<F>, opt: AdamW<F>, step: number): void {
    const all = this.ranks.allgather(weightSums(task.params.data));
    const d = weightsDivergence(all, task.params.size);
    if (d.worst > WEIGHT_TOLERANCE || Number.isNaN(d.worst)) {
      throw new TrainingError(
        `${this.stage}: step ${step}: the ranks' weights have diverged: rank ${d.rank} differs from rank 0 by ${d.worst.toExponential(2)} ` +
          `(relative, in parameters ${d.from}..${d.to - 1} of the flat buffer; tolerance ${WEIGHT_TOLERANCE}). The ranks no longer train one model ` +
          `(different data, code or a faulty node); the last checkpoint in ${this.stageDir} is intact and a re-run resumes from it.`,
      );
    }
    if (d.worst > 0) for (const buf of [task.params.data, opt.m, opt.v]) this.ranks.broadcastArray(buf);
  }

  private warn(message: string): void {
    process.stderr.write(`${this.stage}: warning: ${message}\n`);
  }

  private async checkpoint(task: TrainTask<F>, opt: AdamW<F>, step: number): Promise<void> {
    const dir = this.layout.checkpoint(step);
    await replaceDirAtomic(dir, async (tmp) => {
      await task.saveWeights(tmp);
      await saveOptimizer(path.join(tmp, 'optimizer.safetensors'), task.params, opt);
      await writeJsonAtomic(path.join(tmp, 'trainer_state.json'), {
        stage: this.stage,
        global_step: step,
        max_steps: this.cfg.maxSteps,
        seed: this.cfg.seed,
        ...(this.engine && { engine: this.engine }),
      });
      await writeChecksums(tmp);
    });
    for (const old of this.layout.checkpoints().slice(0, -this.cfg.keepCheckpoints)) fs.rmSync(old.dir, { recursive: true, force: true });
  }

  /**
   * Restores parameters and optimizer state from the newest checkpoint that verifies and
   * returns its step. Broken ones are moved aside (never deleted) with a warning naming what
   * was wrong; when none is left the run stops rather than silently starting over.
   */
  private async resume(task: TrainTask<F>, opt: AdamW<F>): Promise<number> {
    const problems: string[] = [];
    for (const c of this.layout.checkpoints().reverse()) {
      try {
        const step = await this.restore(c, task, opt);
        if (problems.length) this.warn(`resuming from ${c.dir} (step ${step}), the newest checkpoint that verifies`);
        return step;
      } catch (e) {
        if (!(e instanceof InvalidCheckpoint)) throw e;
        const aside = `${c.dir}.invalid-${Date.now()}`;
        fs.renameSync(c.dir, aside);
        problems.push(`${c.dir}: ${e.message}`);
        this.warn(`checkpoint ${c.dir} cannot be resumed from: ${e.message}; moved it to ${aside}`);
      }
    }
    if (problems.length) {
      throw new TrainingError(
        `${this.stage}: no checkpoint in ${this.stageDir} can be resumed from (moved aside as *.invalid-*):\n  ${problems.join('\n  ')}\n` +
          'Re-run to start this stage from step 0.',
      );
    }
    return 0;
  }

  /** Checks one checkpoint completely, then loads it; InvalidCheckpoint names the file at fault. */
  private async restore(c: { step: number; dir: string }, task: TrainTask<F>, opt: AdamW<F>): Promise<number> {
    const bad = await verifyChecksums(c.dir);
    if (bad.length) throw new InvalidCheckpoint(bad.join('; '));
    const stateFile = path.join(c.dir, 'trainer_state.json');
    const state = readJsonObject(stateFile);
    const steps = state.max_steps;
    if (!Number.isInteger(steps) || (steps as number) < 1)
      throw new InvalidCheckpoint(`${stateFile}: max_steps ${JSON.stringify(steps)} is not a positive integer`);
    if (state.stage !== this.stage)
      throw new InvalidCheckpoint(`${stateFile}: stage ${JSON.stringify(state.stage)} is not "${this.stage}"`);
    const step = state.global_step;
    // checkpoints are written after a step and before the last one, in a directory named for it
    if (!Number.isInteger(step) || (step as number) < 1 || (step as number) >= (steps as number) || step !== c.step) {
      throw new InvalidCheckpoint(
        `${stateFile}: global_step ${JSON.stringify(step)} is not the step of ${path.basename(c.dir)} within 1..${(steps as number) - 1}`,
      );
    }
    if (steps !== this.cfg.maxSteps) {
      throw new TrainingError(
        `${c.dir}: checkpoint was made for a ${steps}-step run but this run has ${this.cfg.maxSteps} steps; ` +
          `resume with the same settings or start in a new directory`,
      );
    }
    const file = path.join(c.dir, 'optimizer.safetensors');
    let tensors: Awaited<ReturnType<typeof readSafetensors>>;
    try {
      tensors = await readSafetensors(file);
    } catch (e) {
      throw new InvalidCheckpoint((e as Error).message);
    }
    const bufs = { params: task.params.data, exp_avg: opt.m, exp_avg_sq: opt.v };
    for (const name of OPTIMIZER_TENSORS) {
      const t = tensors.get(name);
      if (!t || t.data.length !== bufs[name].length)
        throw new InvalidCheckpoint(`${file}: ${name} missing or of the wrong size for this model`);
      let at = firstNonFinite(t.data);
      // the second moment is a running mean of squares
      if (name === 'exp_avg_sq') for (let i = 0; at < 0 && i < t.data.length; i++) if (t.data[i] < 0) at = i;
      if (at >= 0)
        throw new InvalidCheckpoint(
          `${file}: ${name}[${at}] is ${t.data[at]}${name === 'exp_avg_sq' ? ' (must be finite and >= 0)' : ' (must be finite)'}`,
        );
    }
    for (const name of OPTIMIZER_TENSORS) bufs[name].set(tensors.get(name)!.data);
    opt.step = step as number;
    this.resumedEngine = state.engine;
    return step as number;
  }
}

/**
 * How far ranks' weights may differ, relative to the weights' size: rounding differences of
 * other CPUs' kernels stay many orders below it between two checks (they are wiped at each);
 * a rank that trained on other data or code exceeds it within a step.
 */
export const WEIGHT_TOLERANCE = 1e-4;
const WEIGHT_BLOCKS = 64;

/** Per block of the flat parameter buffer: the sum of the weights and the sum of their magnitudes. */
export function weightSums(w: FloatArray): number[] {
  const out: number[] = [];
  const n = w.length,
    per = Math.ceil(n / WEIGHT_BLOCKS);
  for (let start = 0; start < n; start += per) {
    let sum = 0,
      abs = 0;
    for (let i = start; i < Math.min(n, start + per); i++) {
      sum += w[i];
      abs += Math.abs(w[i]);
    }
    out.push(sum, abs);
  }
  return out;
}

/**
 * The largest difference of any rank's block sums from rank 0's, relative to rank 0's block
 * magnitude, with the rank and the parameter range where it is (NaN when a rank's are not finite).
 */
export function weightsDivergence(sums: (number | null)[][], size: number): { worst: number; rank: number; from: number; to: number } {
  // sums crossed ranks as JSON, where a non-finite number arrives as null
  const at = (r: number, i: number) => sums[r][i] ?? NaN;
  const per = Math.ceil(size / WEIGHT_BLOCKS);
  const range = (worst: number, rank: number, b: number) => ({ worst, rank, from: b * per, to: Math.min(size, (b + 1) * per) });
  let worst = 0,
    rank = 0,
    block = 0;
  for (let r = 1; r < sums.length; r++)
    for (let b = 0; 2 * b < sums[0].length; b++) {
      const d = Math.abs(at(r, 2 * b) - at(0, 2 * b)) / Math.max(at(0, 2 * b + 1), 1e-30);
      if (Number.isNaN(d)) return range(NaN, r, b);
      if (d > worst) [worst, rank, block] = [d, r, b];
    }
  return range(worst, rank, block);
}

/** A JSON object from a file; InvalidCheckpoint naming the file otherwise. */
function readJsonObject(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InvalidCheckpoint(
      `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `not valid JSON: ${(e as Error).message}`}`,
    );
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidCheckpoint(`${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * The trainable parameters are saved beside the moments, in f32, so a resumed run continues
 * from bit-identical weights whatever format the stage exports.
 */
async function saveOptimizer<F extends FloatArray>(file: string, params: ParamStore<F>, opt: AdamW<F>): Promise<void> {
  const f32 = (a: FloatArray) => (a instanceof Float32Array ? a : Float32Array.from(a));
  await writeSafetensors(
    file,
    [
      { name: 'params', shape: [params.size], data: f32(params.data) },
      { name: 'exp_avg', shape: [params.size], data: f32(opt.m) },
      { name: 'exp_avg_sq', shape: [params.size], data: f32(opt.v) },
    ],
    { step: String(opt.step) },
  );
}
