import fs from 'node:fs';
import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { Rng } from '../engine/rng.js';
import { Context } from '../engine/tensor.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { loadChatModel, type ChatModel, type RopeScalingRequest } from '../model/load.js';
import type { Llama } from '../model/llama.js';
import { LoraAdapter } from '../model/lora.js';
import { MetricsLog } from '../train/metrics.js';
import { Trainer, trainerDefaults, type TrainerConfig, type TrainResult, type TrainTask } from '../train/trainer.js';
import { parse, UsageError } from './args.js';

type Parsed = ReturnType<typeof parse>;

/** Flags every training stage takes (defaults differ per stage, from the papers). */
export const TRAINER_FLAGS = {
  out: { type: 'string' }, 'batch-size': { type: 'string' }, 'grad-accum': { type: 'string' }, epochs: { type: 'string' },
  'max-steps': { type: 'string' }, lr: { type: 'string' }, 'warmup-ratio': { type: 'string' }, 'weight-decay': { type: 'string' },
  clip: { type: 'string' }, schedule: { type: 'string' }, 'eval-every': { type: 'string' }, 'save-every': { type: 'string' },
  recompute: { type: 'boolean' }, seed: { type: 'string' }, threads: { type: 'string' },
} as const;

export const TRAINER_USAGE = `  --out RUN_DIR        run directory (checkpoints in RUN_DIR/stages/STAGE; re-run resumes)
  --batch-size N  --grad-accum N  --epochs X | --max-steps N
  --lr X  --warmup-ratio X  --weight-decay X  --clip X  --schedule cosine|linear|constant
  --eval-every N  --save-every N  --recompute  --seed N  --threads N`;

export const LORA_FLAGS = {
  lora: { type: 'boolean' }, 'lora-r': { type: 'string' }, 'lora-alpha': { type: 'string' }, 'lora-dropout': { type: 'string' },
  'target-modules': { type: 'string' },
} as const;

export const LORA_USAGE = `  --lora               train a LoRA adapter (PEFT layout) instead of all weights
  --lora-r N  --lora-alpha X  --lora-dropout X  --target-modules q_proj,v_proj,... (default all-linear:
                       the family's linear layers, W_pack instead of q/k/v_proj for Baichuan)`;

export const ROPE_FLAGS = { 'rope-scaling': { type: 'string' } } as const;

export const ROPE_USAGE = `  --rope-scaling TYPE:FACTOR   train past the model's length: linear, dynamic or yarn RoPE
                       scaling by FACTOR (e.g. linear:2 for 2k -> 4k), written into config.json`;

/** --rope-scaling TYPE:FACTOR, or null. */
export function ropeScalingFrom(a: Parsed): RopeScalingRequest | null {
  const v = a.str('rope-scaling');
  if (v === undefined) return null;
  const m = /^(linear|dynamic|yarn):(\d+(?:\.\d+)?)$/.exec(v.trim());
  if (!m || !(Number(m[2]) > 1)) throw new UsageError(`--rope-scaling: expected linear|dynamic|yarn:FACTOR with FACTOR > 1, got "${v}"`);
  return { type: m[1] as RopeScalingRequest['type'], factor: Number(m[2]) };
}

export const MODEL_FLAGS = { model: { type: 'string' }, adapter: { type: 'string' }, tokenizer: { type: 'string' }, template: { type: 'string' } } as const;

export const MODEL_USAGE = `  --model DIR          HF model folder to start from
  --adapter DIR        a PEFT LoRA adapter merged into --model first (stacking, as Qilin-Med)
  --tokenizer DIR      tokenizer folder (default: the --model folder)
  --template NAME      a built-in chat template (chatml, vicuna, llama2) instead of the model's own;
                       a model without one needs it to chat`;

export interface StageDefaults {
  lr: number;
  epochs: number;
  batchSize: number;
  warmupRatio: number;
  weightDecay: number;
}

export function trainerConfig(a: Parsed, examples: number, d: StageDefaults): TrainerConfig & { batchSize: number } {
  const batchSize = a.int('batch-size', d.batchSize), gradAccum = a.int('grad-accum', 1);
  const schedule = a.str('schedule') ?? 'cosine';
  if (!['cosine', 'linear', 'constant'].includes(schedule)) throw new UsageError(`--schedule: expected cosine, linear or constant, got "${schedule}"`);
  return {
    ...trainerDefaults, batchSize, gradAccum, schedule: schedule as TrainerConfig['schedule'],
    lr: a.num('lr', d.lr), warmupRatio: a.num('warmup-ratio', d.warmupRatio), weightDecay: a.num('weight-decay', d.weightDecay), clipNorm: a.num('clip', 1.0),
    seed: a.num('seed', 42, Number.isInteger, 'an integer'),
    maxSteps: a.str('max-steps') ? a.int('max-steps') : Math.max(1, Math.ceil((a.num('epochs', d.epochs) * examples) / (batchSize * gradAccum))),
    evalEvery: a.str('eval-every') ? a.int('eval-every') : 0, saveEvery: a.int('save-every', 100),
  };
}

/** Loads --model (merging --adapter into it), its tokenizer and chat template. */
export function loadPolicy(a: Parsed, trainable: boolean): Promise<ChatModel> {
  return loadChatModel({ model: a.need('model'), adapter: a.str('adapter'), tokenizer: a.str('tokenizer'), template: a.str('template'), trainable, ropeScaling: ropeScalingFrom(a) });
}

export function loraFrom(a: Parsed, model: Llama<Float32Array>, d: { r: number; alpha: number; dropout: number }, modulesToSave?: string[]): LoraAdapter<Float32Array> | null {
  if (!a.flag('lora')) return null;
  const targets = a.list('target-modules');
  return new LoraAdapter(model, {
    r: a.int('lora-r', d.r), alpha: a.num('lora-alpha', d.alpha), dropout: a.num('lora-dropout', d.dropout),
    targetModules: !targets.length || (targets.length === 1 && targets[0] === 'all-linear') ? 'all-linear' : targets, modulesToSave,
  }).init(a.num('seed', 42)).attach();
}

/** Splits records into train / held-out with a seeded coin per record. */
export function splitHeldout<T>(items: T[], fraction: number, seed: number): { train: T[]; heldout: T[] } {
  const rng = Rng.derive(seed, 0x5e1d);
  const train: T[] = [], heldout: T[] = [];
  for (const it of items) (rng.next() < fraction ? heldout : train).push(it);
  return { train, heldout };
}

/** Runs a stage on the shared trainer: args.json, SIGINT/SIGTERM checkpointing, metrics. */
export async function runStage(stage: string, runDir: string, cfg: TrainerConfig, task: TrainTask<Float32Array>, record: Record<string, unknown>): Promise<TrainResult> {
  const stageDir = path.join(runDir, 'stages', stage);
  fs.mkdirSync(stageDir, { recursive: true });
  await writeJsonAtomic(path.join(stageDir, 'args.json'), { ...cfg, ...record });
  const trainer = new Trainer<Float32Array>(stage, stageDir, cfg, new MetricsLog(path.join(runDir, 'metrics.jsonl')));
  const stop = () => trainer.requestStop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const r = await trainer.train(task, new Context(nativeKernels));
    const ev = Object.entries(r.evals).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ');
    process.stdout.write(`${stage} done: ${r.steps} steps${r.resumedFrom ? ` (resumed at ${r.resumedFrom})` : ''}, train loss ${r.lastLoss.toFixed(4)}${ev ? `; ${ev}` : ''}\noutput: ${r.finalDir}\n`);
    return r;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
