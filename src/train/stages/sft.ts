// Supervised fine-tuning (Qilin-Med's second stage): conversations rendered with the chat
// template, loss on the assistant turns; all weights or a LoRA adapter.
import * as z from 'zod';
import { say } from '../../engine/dist.js';
import { messagesOf } from '../../data/stage-files.js';
import { saveModel } from '../../model/checkpoint.js';
import { encodeSft, SftTask } from '../sft.js';
import {
  attachLora,
  heldoutSetting,
  lengthSettings,
  baseDtypeSetting,
  frozenBase,
  loadPolicy,
  loraSetting,
  mergeInput,
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

export const SftConfigSchema = z.strictObject({
  ...trainerSettings({ lr: 2e-5, epochs: 3, batch_size: 8, weight_decay: 0.05 }),
  ...ropeSetting,
  ...baseDtypeSetting,
  lora: loraSetting(32, false),
  train_on_prompt: z.boolean().default(false).describe('also train on the system and user tokens'),
  ...lengthSettings,
  eval_fraction: heldoutSetting(0.05, 'conversations'),
});
export type SftConfig = z.output<typeof SftConfigSchema>;

export const SftInputsSchema = z.strictObject({
  data: z
    .array(z.string())
    .min(1)
    .meta({ arg: 'FILE', description: 'conversations JSONL: {messages} or {prompt, response, history?, system?}' }),
  eval_data: z.string().optional().meta({ arg: 'FILE', description: 'held-out conversations (default: eval_fraction of the data)' }),
  ...policyInputs,
  merge: mergeInput('sft'),
});
export type SftInputs = z.input<typeof SftInputsSchema>;

/** Runs the stage: `settings` as in a run config's stage entry (defaults filled in here), inputs and run directory in `ctx`. */
export async function runSft(settings: z.input<typeof SftConfigSchema>, ctx: StageContext & SftInputs): Promise<StageResult> {
  const config = resolveSettings(SftConfigSchema, settings, 'sft');
  const { model, tokenizer, template, dir } = await loadPolicy(ctx, !config.lora, config.rope_scaling, frozenBase('sft', config));
  const split = await readSplit(ctx.data, ctx.eval_data, config.eval_fraction, ctx.seed);
  const enc = { maxSource: config.max_source, maxTarget: config.max_target, trainOnPrompt: config.train_on_prompt };
  const train = encodeSft(
    split.train.map((r) => messagesOf(r.rec, r.where)),
    tokenizer,
    template,
    enc,
  );
  const held = encodeSft(
    split.heldout.map((r) => messagesOf(r.rec, r.where)),
    tokenizer,
    template,
    enc,
  );
  const adapter = attachLora(config.lora, model, ctx.seed);
  const cfg = trainerConfig(config, train.examples.length, ctx.seed);
  say(
    `sft: ${train.stats.examples} conversations (${train.stats.truncated} truncated, ${train.stats.droppedHistoryTurns} old turns dropped, ${train.stats.skippedNoTarget} without answer tokens skipped), ${held.stats.examples} held out; ${cfg.maxSteps} steps`,
  );
  const save = weightWriters({ tokenizer, template }, (out) => saveModel(out, model), adapter, dir);

  const task = new SftTask(
    model,
    train.examples,
    held.examples,
    { batchSize: config.batch_size, recompute: config.recompute, seed: ctx.seed },
    adapter,
    save.stage,
  );
  const r = await trainStage('sft', ctx.runDir, cfg, task, {
    ...enc,
    model: dir,
    adapter: ctx.adapter ?? null,
    lora: adapter?.config ?? null,
    template: template.name,
    stats: train.stats,
  });
  const output = adapter && ctx.merge ? await writeMerged(ctx.runDir, 'sft', adapter, save.model) : r.finalDir;
  return { output, final: r.finalDir };
}
