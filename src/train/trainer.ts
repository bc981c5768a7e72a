import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray } from '../engine/kernels.js';
import { AdamW, learningRate, type Schedule } from '../engine/optim.js';
import { ParamStore } from '../engine/params.js';
import { Context } from '../engine/tensor.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { replaceDirAtomic, writeJsonAtomic } from '../io/atomic.js';
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
}

/**
 * The optimizer and bookkeeping constants no stage setting covers; the rest of a
 * TrainerConfig comes from a stage's settings (train/stages/common.ts), where each default
 * is written once.
 */
export const trainerDefaults = {
  minLrRatio: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, keepCheckpoints: 2, logEvery: 1,
} satisfies Partial<TrainerConfig>;

export interface MicroResult {
  /** Mean loss over the micro-batch. */
  loss: number;
  /** Tokens processed (for throughput). */
  tokens: number;
  metrics?: Record<string, number>;
}

/** What a stage plugs into the shared loop. */
export interface TrainTask<F extends FloatArray> {
  /** The parameters this stage updates (a whole model, or an adapter). */
  params: ParamStore<F>;
  /**
   * Forward and backward of global micro-batch `index`, gradients scaled by `gradScale`.
   * The batch must be a pure function of `index` (and the seed) so a resumed run sees the
   * same data as an uninterrupted one.
   */
  microStep(ctx: Context<F>, index: number, gradScale: number): MicroResult;
  evaluate?(ctx: Context<F>): Record<string, number>;
  /** Writes what this stage trains, in its ecosystem format (HF model dir, PEFT adapter). */
  saveWeights(dir: string): Promise<void>;
}

export class TrainingError extends Error {}

export interface TrainResult {
  steps: number;
  resumedFrom: number;
  finalDir: string;
  lastLoss: number;
  evals: Record<string, number>;
}

/**
 * The loop every stage shares: gradient accumulation, warmup + decay schedule, clipping,
 * a NaN/Inf guard, evaluation, atomic checkpoints with resume, metrics.jsonl and progress.
 * Layout under stageDir (io/run-dir.ts): checkpoint-STEP/{weights, optimizer.safetensors,
 * trainer_state.json}, final/.
 */
export class Trainer<F extends FloatArray> {
  private stopRequested = false;
  private readonly layout: StageDir;

  constructor(
    readonly stage: string,
    readonly stageDir: string,
    readonly cfg: TrainerConfig,
    readonly metrics: MetricsLog,
  ) {
    this.layout = new StageDir(stageDir);
  }

  /** Asks the loop to checkpoint and return after the current step (SIGINT / SIGTERM). */
  requestStop(): void {
    this.stopRequested = true;
  }

  async train(task: TrainTask<F>, ctx: Context<F>): Promise<TrainResult> {
    const cfg = this.cfg;
    const opt = new AdamW(task.params, cfg);
    const resumedFrom = await this.resume(task, opt);
    await this.metrics.truncate(this.stage, resumedFrom);
    const warmup = Math.round(cfg.warmupRatio * cfg.maxSteps);
    const progress = new Progress(`${this.stage}`, cfg.maxSteps, resumedFrom);
    let lastLoss = NaN;
    let evals: Record<string, number> = {};
    const t0 = Date.now();
    let tokensSinceStart = 0;

    for (let step = resumedFrom; step < cfg.maxSteps; step++) {
      const tStep = Date.now();
      task.params.zeroGrad();
      let loss = 0, tokens = 0;
      const extra: Record<string, number> = {};
      for (let a = 0; a < cfg.gradAccum; a++) {
        const r = task.microStep(ctx, step * cfg.gradAccum + a, 1 / cfg.gradAccum);
        ctx.reset();
        loss += r.loss / cfg.gradAccum;
        tokens += r.tokens;
        for (const [k, v] of Object.entries(r.metrics ?? {})) extra[k] = (extra[k] ?? 0) + v / cfg.gradAccum;
      }
      const gradNorm = opt.clip(cfg.clipNorm);
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        progress.stop();
        throw new TrainingError(`${this.stage}: step ${step + 1}: ${Number.isFinite(loss) ? 'gradient norm' : 'loss'} is not finite ` +
          `(loss ${loss}, grad norm ${gradNorm}); weights were not updated. Lower the learning rate or check the data; ` +
          `the last checkpoint in ${this.stageDir} is intact and a re-run resumes from it.`);
      }
      const lr = learningRate(step, cfg.maxSteps, warmup, cfg.lr, cfg.schedule, cfg.minLrRatio);
      opt.update(lr);
      lastLoss = loss;
      tokensSinceStart += tokens;
      const done = step + 1;
      const stepSeconds = (Date.now() - tStep) / 1000;
      const tokensPerS = tokensSinceStart / Math.max(1e-9, (Date.now() - t0) / 1000);
      if (done % cfg.logEvery === 0 || done === cfg.maxSteps) {
        this.metrics.append({ stage: this.stage, step: done, loss, lr, grad_norm: gradNorm, tokens, tokens_per_s: tokensPerS, step_s: stepSeconds, ...extra });
      }
      progress.update(done, { loss, tokensPerS });
      const last = done === cfg.maxSteps;
      if (task.evaluate && ((cfg.evalEvery > 0 && done % cfg.evalEvery === 0) || last)) {
        evals = task.evaluate(ctx);
        ctx.reset();
        this.metrics.append({ stage: this.stage, step: done, ...evals });
        progress.note(Object.entries(evals).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  '));
      }
      // the step is synchronous: yield once so a pending SIGINT / SIGTERM handler runs now
      await new Promise((r) => setImmediate(r));
      if (!last && ((cfg.saveEvery > 0 && done % cfg.saveEvery === 0) || this.stopRequested)) await this.checkpoint(task, opt, done);
      if (this.stopRequested && !last) {
        progress.stop();
        throw new TrainingError(`${this.stage}: stopped at step ${done} on request; checkpoint saved, re-run to resume`);
      }
    }
    progress.stop();
    const finalDir = this.layout.final;
    await replaceDirAtomic(finalDir, (tmp) => task.saveWeights(tmp));
    return { steps: cfg.maxSteps, resumedFrom, finalDir, lastLoss, evals };
  }

  private async checkpoint(task: TrainTask<F>, opt: AdamW<F>, step: number): Promise<void> {
    const dir = this.layout.checkpoint(step);
    await replaceDirAtomic(dir, async (tmp) => {
      await task.saveWeights(tmp);
      await saveOptimizer(path.join(tmp, 'optimizer.safetensors'), task.params, opt);
      await writeJsonAtomic(path.join(tmp, 'trainer_state.json'), { stage: this.stage, global_step: step, max_steps: this.cfg.maxSteps, seed: this.cfg.seed });
    });
    for (const old of this.layout.checkpoints().slice(0, -this.cfg.keepCheckpoints)) fs.rmSync(old.dir, { recursive: true, force: true });
  }

  /** Restores parameters and optimizer state from the newest complete checkpoint; returns its step. */
  private async resume(task: TrainTask<F>, opt: AdamW<F>): Promise<number> {
    const latest = this.layout.checkpoints().at(-1);
    if (!latest) return 0;
    const state = JSON.parse(fs.readFileSync(path.join(latest.dir, 'trainer_state.json'), 'utf8'));
    if (state.max_steps !== this.cfg.maxSteps) {
      throw new TrainingError(`${latest.dir}: checkpoint was made for a ${state.max_steps}-step run but this run has ${this.cfg.maxSteps} steps; ` +
        `resume with the same settings or start in a new directory`);
    }
    const tensors = await readSafetensors(path.join(latest.dir, 'optimizer.safetensors'));
    for (const [name, buf] of [['params', task.params.data], ['exp_avg', opt.m], ['exp_avg_sq', opt.v]] as const) {
      const t = tensors.get(name);
      if (!t || t.data.length !== buf.length) throw new TrainingError(`${latest.dir}/optimizer.safetensors: ${name} missing or of the wrong size for this model`);
      buf.set(t.data);
    }
    opt.step = state.global_step;
    return state.global_step;
  }
}

/**
 * The trainable parameters are saved beside the moments, in f32, so a resumed run continues
 * from bit-identical weights whatever format the stage exports.
 */
async function saveOptimizer<F extends FloatArray>(file: string, params: ParamStore<F>, opt: AdamW<F>): Promise<void> {
  const f32 = (a: FloatArray) => (a instanceof Float32Array ? a : Float32Array.from(a));
  await writeSafetensors(file, [
    { name: 'params', shape: [params.size], data: f32(params.data) },
    { name: 'exp_avg', shape: [params.size], data: f32(opt.m) },
    { name: 'exp_avg_sq', shape: [params.size], data: f32(opt.v) },
  ], { step: String(opt.step) });
}
