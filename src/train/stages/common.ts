// What the stage modules share (TRL's TrainingArguments and the trainer plumbing): the
// trainer settings every stage's schema takes, the LoRA setting, the inputs that name a
// policy model, the run context, and running a task on the shared trainer.
import fs from 'node:fs';
import * as z from 'zod';
import { BASE_DTYPES, type BaseDtype } from '../../engine/frozen.js';
import { dist, say } from '../../engine/dist.js';
import { nativeKernels } from '../../engine/native.js';
import { Rng } from '../../engine/rng.js';
import { Context } from '../../engine/tensor.js';
import { DataError } from '../../data/errors.js';
import { preferenceOf, readJsonl, type SourcedRecord } from '../../data/stage-files.js';
import { replaceDirAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { RunDir } from '../../io/run-dir.js';
import { ConfigError } from '../../model/config.js';
import type { Llama } from '../../model/llama.js';
import { loadChatModel, type ChatModel, type RopeScalingRequest } from '../../model/load.js';
import { LoraAdapter } from '../../model/lora.js';
import { BUILTIN_TEMPLATES, type ChatTemplate, type TemplateTokenizer } from '../../tokenizer/chat-template.js';
import { MetricsLog } from '../metrics.js';
import { encodeResponse, type PreferencePair } from '../preference.js';
import { Trainer, trainerDefaults, type TrainerConfig, type TrainResult, type TrainTask } from '../trainer.js';

export const posInt = z.number().int().positive();
export const fraction = z.number().min(0).max(1);

/** The trainer settings of every stage, with that stage's defaults from the papers. */
export function trainerSettings(d: { lr: number; epochs: number; batch_size: number; weight_decay: number }) {
  return {
    lr: z.number().positive().default(d.lr).describe('peak learning rate'),
    epochs: z.number().positive().default(d.epochs).describe('passes over the training data'),
    max_steps: posInt.optional().describe('optimizer steps in total; overrides epochs'),
    batch_size: posInt.default(d.batch_size).describe('examples per micro-batch'),
    grad_accum: posInt.default(1).describe('micro-batches per optimizer step'),
    warmup_ratio: fraction.default(0.05).describe('share of the steps with a linear learning-rate warmup'),
    weight_decay: z.number().min(0).default(d.weight_decay).describe('AdamW weight decay'),
    clip: z.number().min(0).default(1).describe('gradient-norm clip (0: none)'),
    schedule: z.enum(['cosine', 'linear', 'constant']).default('cosine').describe('learning-rate decay after the warmup'),
    eval_every: z.number().int().min(0).default(0).describe('held-out evaluation every N steps (0: at the end only)'),
    save_every: posInt.default(100).describe('checkpoint every N steps (a re-run resumes from the last one)'),
    recompute: z
      .boolean()
      .default(false)
      .describe('recompute activations in the backward pass instead of keeping them (less memory, more time)'),
  };
}

export type TrainerSettings = z.output<z.ZodObject<ReturnType<typeof trainerSettings>>>;

/**
 * Both max_steps and epochs given: max_steps decides the length, as in HF transformers, and
 * the warning says so naming both (`name` spells a field as the user wrote it).
 */
export function warnStepsAndEpochs(given: Record<string, unknown>, where: string, name = (k: string) => k): void {
  if (given.max_steps === undefined || given.epochs === undefined) return;
  say(
    `warning: ${where}: both ${name('max_steps')} (${String(given.max_steps)}) and ${name('epochs')} (${String(given.epochs)}) are set; ` +
      `${name('max_steps')} decides the length of training (as in HF transformers) and ${name('epochs')} is ignored`,
  );
}

/** A LoRA adapter (PEFT layout); `alpha` is the stage's default. */
export function loraSchema(alpha: number) {
  return z.strictObject({
    r: posInt.default(8).describe('rank of the update'),
    alpha: z.number().positive().default(alpha).describe('the update is scaled by alpha / r'),
    dropout: fraction.default(0.05).describe('dropout on the adapter input'),
    target_modules: z
      .union([z.literal('all-linear'), z.array(z.string()).min(1)])
      .default('all-linear')
      .meta({
        flag: 'target-modules',
        description:
          "linear layers that get an adapter: PEFT module names (q_proj, ..., W_pack for Baichuan) or all-linear, every linear layer of the model's family",
      }),
  });
}

export type LoraSetting = false | z.output<ReturnType<typeof loraSchema>>;

/** The `lora` setting: off, or an adapter instead of training all weights. */
export function loraSetting(alpha: number, on: boolean) {
  const s = loraSchema(alpha);
  return z
    .union([z.literal(false), s])
    .default(on ? s.parse({}) : false)
    .describe('train a LoRA adapter (PEFT layout) instead of all weights');
}

/** RoPE scaling to train past the model's length; the saved config.json carries it. */
export const ropeSetting = {
  rope_scaling: z
    .strictObject({
      type: z
        .enum(['linear', 'dynamic', 'yarn'])
        .describe('linear (positions divided by factor), dynamic (NTK, as the length grows) or yarn'),
      factor: z.number().gt(1).describe('how many times the context grows'),
    })
    .optional()
    .meta({
      arg: 'TYPE:FACTOR',
      description: "scale RoPE to train past the model's length (e.g. linear:2 for 2k -> 4k); written into the saved config.json",
    }),
};

/** How a stage keeps the base weights it does not train (frozen.ts); full fine-tuning always trains f32. */
export const baseDtypeSetting = {
  base_dtype: z
    .enum(BASE_DTYPES as [BaseDtype, ...BaseDtype[]])
    .optional()
    .meta({
      flag: 'base-dtype',
      description:
        'how the frozen base weights are kept under LoRA (and by the reference and judge models): bf16, f16, q8_0 (8-bit, GGUF blocks of 32) or f32; default: the dtype the checkpoint stores. Full fine-tuning trains f32 weights',
    }),
};

/** The base dtype a stage loads its model with: none for full fine-tuning, which trains f32 weights (a base_dtype other than f32 is an error there). */
export function frozenBase(stage: string, s: { base_dtype?: BaseDtype; lora: LoraSetting }): BaseDtype | undefined {
  if (!s.lora && s.base_dtype && s.base_dtype !== 'f32')
    throw new ConfigError(`${stage}: base_dtype ${s.base_dtype} applies to a frozen base (lora); full fine-tuning trains f32 weights`);
  return s.lora ? s.base_dtype : undefined;
}

/** Prompt and answer lengths of the chat stages (Qilin-Med: 256 / 256). */
export const lengthSettings = {
  max_source: posInt.default(256).describe('prompt tokens kept (its end)'),
  max_target: posInt.default(256).describe('answer tokens kept (its start)'),
};

export const heldoutSetting = (d: number, what: string) => fraction.default(d).describe(`share of the ${what} held out for evaluation`);

/** The inputs that name the model a chat stage starts from. */
export const policyInputs = {
  model: z.string().meta({ arg: 'DIR', description: 'HF model folder to start from' }),
  adapter: z
    .string()
    .optional()
    .meta({ arg: 'DIR', description: 'a PEFT LoRA adapter merged into the model first (stacking, as Qilin-Med)' }),
  tokenizer: z.string().optional().meta({ arg: 'DIR', description: 'tokenizer folder (default: the model folder)' }),
  template: z
    .enum(Object.keys(BUILTIN_TEMPLATES) as [string, ...string[]])
    .optional()
    .describe("a built-in chat template instead of the model's own; a model without one needs it to chat"),
};

/** The inputs of the stages that read preference pairs (rm, dpo). */
export const pairInputs = {
  data: z
    .array(z.string())
    .min(1)
    .meta({ arg: 'FILE', description: 'preference JSONL: {prompt, chosen, rejected} (prompt a string or messages; history?, system?)' }),
  eval_data: z.string().optional().meta({ arg: 'FILE', description: 'held-out pairs (default: eval_fraction of the data)' }),
};

/** Whether a LoRA stage also writes its adapter merged into the model (the pipeline's next model). */
export const mergeInput = (stage: string) =>
  z.boolean().default(false).describe(`with lora: also write the adapter merged into the model (stages/${stage}/merged)`);

/** Where and how a stage runs: the run context the CLI's --out / --seed / --threads give. */
export const ContextSchema = z.strictObject({
  out: z.string().meta({
    arg: 'RUN_DIR',
    description:
      'run directory: RUN_DIR/stages/STAGE holds checkpoints and the final model; a re-run with the same data and settings resumes (or skips a finished stage), with any change it starts over, the old results moved to RUN_DIR/stale-TIME',
  }),
  seed: z.number().int().default(42).describe('seed of the data order, held-out split, initialisation and sampling'),
  threads: z.number().int().min(0).default(0).describe('compute threads (0: all cores)'),
});

export interface StageContext {
  /** The run directory (io/run-dir.ts); the stage writes under stages/STAGE. */
  runDir: string;
  seed: number;
}

/** What a stage leaves behind. */
export interface StageResult {
  /** The plain model folder the next stage starts from (merged when the stage trained LoRA). */
  output: string;
  /** The trained weights: a model, or the PEFT adapter under LoRA. */
  final: string;
}

/** A stage's settings with their defaults filled in; bad values are a ConfigError naming the key. */
export function resolveSettings<S extends z.ZodType>(schema: S, raw: z.input<S>, stage: string): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success)
    throw new ConfigError(`${stage}: ${r.error.issues.map((i) => `${i.path.join('.') || '(settings)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** The shared trainer's settings from a stage's: steps from epochs unless max_steps. */
export function trainerConfig(s: TrainerSettings, examples: number, seed: number): TrainerConfig & { batchSize: number } {
  return {
    ...trainerDefaults,
    batchSize: s.batch_size,
    lr: s.lr,
    warmupRatio: s.warmup_ratio,
    schedule: s.schedule,
    weightDecay: s.weight_decay,
    clipNorm: s.clip,
    gradAccum: s.grad_accum,
    evalEvery: s.eval_every,
    saveEvery: s.save_every,
    seed,
    maxSteps: s.max_steps ?? Math.max(1, Math.ceil((s.epochs * examples) / (s.batch_size * s.grad_accum))),
  };
}

/** Loads the policy (adapter merged in, RoPE scaled, a frozen base kept in baseDtype), its tokenizer and chat template. */
export function loadPolicy(
  inputs: { model: string; adapter?: string; tokenizer?: string; template?: string },
  trainable: boolean,
  ropeScaling?: RopeScalingRequest,
  baseDtype?: BaseDtype,
): Promise<ChatModel> {
  return loadChatModel({
    model: inputs.model,
    adapter: inputs.adapter,
    tokenizer: inputs.tokenizer,
    template: inputs.template,
    trainable,
    ropeScaling,
    baseDtype,
  });
}

/** A LoRA adapter on the model, initialised and attached, or null when the setting is off. */
export function attachLora(
  lora: LoraSetting,
  model: Llama<Float32Array>,
  seed: number,
  modulesToSave?: string[],
): LoraAdapter<Float32Array> | null {
  if (!lora) return null;
  return new LoraAdapter(model, { r: lora.r, alpha: lora.alpha, dropout: lora.dropout, targetModules: lora.target_modules, modulesToSave })
    .init(seed)
    .attach();
}

/** The records of the data files and the held-out set: the eval file, or a seeded fraction of the data. */
export async function readSplit(
  files: string[],
  evalFile: string | undefined,
  fraction: number,
  seed: number,
): Promise<{ train: SourcedRecord[]; heldout: SourcedRecord[] }> {
  const all = (await Promise.all(files.map(readJsonl))).flat();
  if (!all.length) throw new DataError(`${files.join(', ')}: no records`);
  if (evalFile) return { train: all, heldout: await readJsonl(evalFile) };
  return splitHeldout(all, fraction, seed);
}

/**
 * How a stage writes weights, tokenizer and chat template together: `model` the whole model
 * (also the merged one), `stage` what the stage trains (the PEFT adapter under LoRA).
 */
export function weightWriters(
  chat: Pick<ChatModel, 'tokenizer' | 'template'>,
  writeModel: (dir: string) => Promise<void>,
  adapter: LoraAdapter<Float32Array> | null,
  baseDir: string,
) {
  const withTokenizer = (write: (dir: string) => Promise<void>) => async (dir: string) => {
    await write(dir);
    await chat.tokenizer.save(dir, { template: chat.template });
  };
  const model = withTokenizer(writeModel);
  return { model, stage: adapter ? withTokenizer((dir) => adapter.save(dir, baseDir)) : model };
}

/**
 * A LoRA stage's adapter folded into its base model, written by `save` (weights, tokenizer and
 * chat template) to the stage's merged/ folder: the model the next stage starts from.
 */
export async function writeMerged(
  runDir: string,
  stage: string,
  adapter: LoraAdapter<Float32Array>,
  save: (dir: string) => Promise<void>,
): Promise<string> {
  const dir = new RunDir(runDir).stage(stage).merged;
  adapter.merge();
  if (dist().isRoot) await replaceDirAtomic(dir, save);
  dist().barrier();
  process.stdout.write(`merged: ${dir}\n`);
  return dir;
}

/** Preference records encoded with the chat template: both answers after the prompt, cut to the lengths. */
export function encodePairs(
  rows: SourcedRecord[],
  tok: TemplateTokenizer,
  template: ChatTemplate,
  o: { max_source: number; max_target: number },
): PreferencePair[] {
  return rows.map(({ rec, where }) => {
    const p = preferenceOf(rec, where);
    const side = (answer: string) => encodeResponse(tok, template, p.prompt, answer, o.max_source, o.max_target);
    return { prompt: p.prompt, chosen: side(p.chosen), rejected: side(p.rejected) };
  });
}

/** Splits records into train / held-out with a seeded coin per record. */
export function splitHeldout<T>(items: T[], fraction: number, seed: number): { train: T[]; heldout: T[] } {
  const rng = Rng.derive(seed, 0x5e1d);
  const train: T[] = [],
    heldout: T[] = [];
  for (const it of items) (rng.next() < fraction ? heldout : train).push(it);
  return { train, heldout };
}

/** Runs a task on the shared trainer: args.json, SIGINT / SIGTERM checkpointing, metrics. */
export async function trainStage(
  stage: string,
  runDir: string,
  cfg: TrainerConfig,
  task: TrainTask<Float32Array>,
  record: Record<string, unknown>,
): Promise<TrainResult> {
  const run = new RunDir(runDir);
  const dir = run.stage(stage);
  fs.mkdirSync(dir.dir, { recursive: true });
  if (dist().isRoot) await writeJsonAtomic(dir.args, { ...cfg, ...record });
  const trainer = new Trainer<Float32Array>(stage, dir.dir, cfg, new MetricsLog(run.metrics));
  const stop = () => trainer.requestStop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const r = await trainer.train(task, new Context(nativeKernels));
    const ev = Object.entries(r.evals)
      .map(([k, v]) => `${k} ${v.toFixed(4)}`)
      .join(', ');
    process.stdout.write(
      `${stage} done: ${r.steps} steps${r.resumedFrom ? ` (resumed at ${r.resumedFrom})` : ''}, train loss ${r.lastLoss.toFixed(4)}${ev ? `; ${ev}` : ''}\noutput: ${r.finalDir}\n`,
    );
    return r;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
