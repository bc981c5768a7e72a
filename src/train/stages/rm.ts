// The reward model (ChiMed-GPT's RLHF): HF LlamaForSequenceClassification with one label,
// trained on preference pairs with the pairwise loss -log sigmoid(r_chosen - r_rejected).
import * as z from 'zod';
import { say } from '../../engine/dist.js';
import { nativeKernels } from '../../engine/native.js';
import { scaleRope } from '../../model/load.js';
import { isRewardModel, RewardModel } from '../../model/reward.js';
import { ChatTemplate } from '../../tokenizer/chat-template.js';
import { Tokenizer } from '../../tokenizer/index.js';
import { RewardTask } from '../reward.js';
import {
  attachLora,
  encodePairs,
  heldoutSetting,
  lengthSettings,
  loraSetting,
  pairInputs,
  policyInputs,
  readSplit,
  baseDtypeSetting,
  frozenBase,
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

export const RmConfigSchema = z.strictObject({
  ...trainerSettings({ lr: 2e-5, epochs: 1, batch_size: 4, weight_decay: 0.01 }),
  ...ropeSetting,
  ...baseDtypeSetting,
  lora: loraSetting(32, false),
  ...lengthSettings,
  eval_fraction: heldoutSetting(0.1, 'pairs'),
});
export type RmConfig = z.output<typeof RmConfigSchema>;

export const RmInputsSchema = z.strictObject({
  ...pairInputs,
  model: policyInputs.model.meta({ arg: 'DIR', description: 'a causal LM (the score head is added) or a reward model to continue' }),
  tokenizer: policyInputs.tokenizer,
  template: policyInputs.template,
});
export type RmInputs = z.input<typeof RmInputsSchema>;

/** Runs the stage: `settings` as in a run config's stage entry (defaults filled in here), inputs and run directory in `ctx`. */
export async function runRm(settings: z.input<typeof RmConfigSchema>, ctx: StageContext & RmInputs): Promise<StageResult> {
  const config = resolveSettings(RmConfigSchema, settings, 'rm');
  const dir = ctx.model;
  const loaded = isRewardModel(dir)
    ? await RewardModel.load(dir, nativeKernels, !config.lora, frozenBase('rm', config))
    : await RewardModel.fromCausalLm(dir, nativeKernels, !config.lora, ctx.seed, frozenBase('rm', config));
  const rm = new RewardModel(scaleRope(loaded.lm, config.rope_scaling));
  const tokenizer = Tokenizer.fromDir(ctx.tokenizer ?? dir);
  const template = ChatTemplate.forModel(tokenizer, ctx.tokenizer ?? dir, ctx.template);
  const split = await readSplit(ctx.data, ctx.eval_data, config.eval_fraction, ctx.seed);
  const train = encodePairs(split.train, tokenizer, template, config),
    heldout = encodePairs(split.heldout, tokenizer, template, config);
  const adapter = attachLora(config.lora, rm.lm, ctx.seed, ['score']);
  if (adapter) rm.useHead(adapter.saved('score'));
  const cfg = trainerConfig(config, train.length, ctx.seed);
  say(`rm: ${train.length} pairs, ${heldout.length} held out; ${cfg.maxSteps} steps`);
  const save = weightWriters({ tokenizer, template }, (out) => rm.save(out), adapter, dir);

  const task = new RewardTask(
    rm,
    train,
    heldout,
    { batchSize: config.batch_size, recompute: config.recompute, seed: ctx.seed },
    adapter,
    save.stage,
  );
  const r = await trainStage('rm', ctx.runDir, cfg, task, {
    model: dir,
    lora: adapter?.config ?? null,
    maxSource: config.max_source,
    maxTarget: config.max_target,
  });
  // under LoRA the reward model is always merged (head included): evaluation and rejection sampling load it whole
  const output = adapter ? await writeMerged(ctx.runDir, 'rm', adapter, save.model) : r.finalDir;
  return { output, final: r.finalDir };
}
