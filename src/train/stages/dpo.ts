// Direct preference optimisation (Qilin-Med's third stage): LoRA on the SFT-merged model,
// sigmoid (or IPO) loss against cached reference log-probabilities.
import * as z from 'zod';
import { say } from '../../engine/dist.js';
import { nativeKernels } from '../../engine/native.js';
import { Context } from '../../engine/tensor.js';
import { saveModel } from '../../model/checkpoint.js';
import { DpoTask } from '../dpo.js';
import {
  attachLora,
  encodePairs,
  heldoutSetting,
  lengthSettings,
  baseDtypeSetting,
  frozenBase,
  loadPolicy,
  loraSetting,
  mergeInput,
  pairInputs,
  policyInputs,
  readSplit,
  ropeSetting,
  trainerConfig,
  resolveSettings,
  trainerSettings,
  trainStage,
  weightWriters,
  writeMerged,
  type StageContext,
  type StageResult,
} from './common.js';

export const DpoConfigSchema = z.strictObject({
  ...trainerSettings({ lr: 2e-5, epochs: 1, batch_size: 4, weight_decay: 0.05 }),
  ...ropeSetting,
  ...baseDtypeSetting,
  beta: z.number().positive().default(0.1).describe('strength of the pull towards the reference model'),
  loss: z.enum(['sigmoid', 'ipo']).default('sigmoid').describe('sigmoid (Rafailov et al.) or IPO'),
  lora: loraSetting(16, true),
  ...lengthSettings,
  eval_fraction: heldoutSetting(0.1, 'pairs'),
});
export type DpoConfig = z.output<typeof DpoConfigSchema>;

export const DpoInputsSchema = z.strictObject({
  ...pairInputs,
  ...policyInputs,
  merge: mergeInput('dpo'),
});
export type DpoInputs = z.input<typeof DpoInputsSchema>;

/** Runs the stage: `settings` as in a run config's stage entry (defaults filled in here), inputs and run directory in `ctx`. */
export async function runDpo(settings: z.input<typeof DpoConfigSchema>, ctx: StageContext & DpoInputs): Promise<StageResult> {
  const config = resolveSettings(DpoConfigSchema, settings, 'dpo');
  const { model, tokenizer, template, dir } = await loadPolicy(ctx, !config.lora, config.rope_scaling, frozenBase('dpo', config));
  const split = await readSplit(ctx.data, ctx.eval_data, config.eval_fraction, ctx.seed);
  const train = encodePairs(split.train, tokenizer, template, config),
    heldout = encodePairs(split.heldout, tokenizer, template, config);
  const adapter = attachLora(config.lora, model, ctx.seed);
  const cfg = trainerConfig(config, train.length, ctx.seed);
  const save = weightWriters({ tokenizer, template }, (out) => saveModel(out, model), adapter, dir);

  const opts = { beta: config.beta, loss: config.loss, batchSize: config.batch_size, recompute: config.recompute, seed: ctx.seed };
  say(`dpo: ${train.length} pairs, ${heldout.length} held out; ${cfg.maxSteps} steps (reference log-probs cached)`);
  const task = new DpoTask(model, train, heldout, opts, adapter, save.stage, new Context(nativeKernels));
  const r = await trainStage('dpo', ctx.runDir, cfg, task, {
    ...opts,
    model: dir,
    adapter: ctx.adapter ?? null,
    lora: adapter?.config ?? null,
  });
  const output = adapter && ctx.merge ? await writeMerged(ctx.runDir, 'dpo', adapter, save.model) : r.finalDir;
  return { output, final: r.finalDir };
}
