// ChiMed-GPT's rejection sampling: per round, k answers per prompt from the policy (plus any
// external candidates) are scored by the reward model; the best `keep` per prompt (above the
// threshold) become an SFT set the policy is fine-tuned on; the next round starts from it.
import fs from 'node:fs';
import * as z from 'zod';
import { DataError } from '../../data/errors.js';
import { jsonlRecords, promptOf, readJsonl, recordId } from '../../data/stage-files.js';
import { nativeKernels } from '../../engine/native.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { RunDir } from '../../io/run-dir.js';
import { saveModel } from '../../model/checkpoint.js';
import { ConfigError } from '../../model/config.js';
import { loadChatModel, type ChatModelSource } from '../../model/load.js';
import { RewardModel } from '../../model/reward.js';
import { MetricsLog } from '../metrics.js';
import { greedyReward, roundSummary, sampleAndRank, writeRound, type RoundRecord, type RsOptions, type RsPrompt } from '../rejection.js';
import { encodeSft, SftTask } from '../sft.js';
import {
  attachLora, heldoutSetting, lengthSettings, loraSetting, policyInputs, posInt, splitHeldout, trainerConfig, resolveSettings, trainerSettings, trainStage, weightWriters,
  type StageContext, type StageResult,
} from './common.js';

export const RsConfigSchema = z.strictObject({
  ...trainerSettings({ lr: 2e-5, epochs: 1, batch_size: 8, weight_decay: 0.05 }),
  lora: loraSetting(32, false),
  k: posInt.default(4).describe('answers sampled per prompt from the policy (ChiMed-GPT: 4)'),
  keep: posInt.default(1).describe('candidates kept per prompt, best reward first'),
  threshold: z.number().nullable().default(null).describe('candidates below this reward are never kept (null: no minimum)'),
  rounds: posInt.default(1).describe("rounds of sampling, ranking and fine-tuning, each from the previous round's policy"),
  temperature: z.number().min(0).default(0.8).describe('sampling temperature'),
  top_p: z.number().gt(0).max(1).default(0.9).describe('nucleus sampling: the smallest set of tokens with this much probability'),
  max_new_tokens: posInt.default(128).describe('longest sampled answer, in tokens'),
  prompts: posInt.optional().meta({ flag: 'limit', description: 'use at most this many prompts (default all)' }),
  external: z.string().optional().meta({ arg: 'FILE', description: 'JSONL {id or prompt, response}: extra candidates (references, other models)' }),
  ...lengthSettings,
  eval_fraction: heldoutSetting(0.1, 'prompts (their greedy answers\' reward is measured before and after each round)'),
});
export type RsConfig = z.output<typeof RsConfigSchema>;

export const RsInputsSchema = z.strictObject({
  prompts: z.string().meta({ arg: 'FILE', description: 'JSONL: {id?, messages} or {id?, prompt, history?}; a final assistant turn is dropped' }),
  reward: z.string().meta({ arg: 'DIR', description: 'the reward model (chimed train rm)' }),
  ...policyInputs,
});
export type RsInputs = z.input<typeof RsInputsSchema>;

/** External candidates by prompt id: {id, response} or {prompt (the last user turn), response}. */
async function readExternal(file: string, prompts: RsPrompt[]): Promise<Map<string, string[]>> {
  const byPrompt = new Map(prompts.map((p) => [p.messages.at(-1)!.content, p.id]));
  const out = new Map<string, string[]>();
  for await (const { rec, where } of jsonlRecords(file)) {
    const id = rec.id !== undefined ? String(rec.id) : byPrompt.get(String(rec.prompt ?? ''));
    if (id === undefined || typeof rec.response !== 'string') throw new DataError(`${where}: an external candidate needs "response" and an "id" or "prompt" matching a prompt`);
    out.set(id, [...(out.get(id) ?? []), rec.response]);
  }
  return out;
}

/** Runs the stage: `settings` as in a run config's stage entry (defaults filled in here), inputs and run directory in `ctx`. */
export async function runRs(settings: z.input<typeof RsConfigSchema>, ctx: StageContext & RsInputs): Promise<StageResult> {
  const config = resolveSettings(RsConfigSchema, settings, 'rs');
  const o: RsOptions = {
    k: config.k, keep: config.keep, threshold: config.threshold, temperature: config.temperature, topP: config.top_p, maxNewTokens: config.max_new_tokens,
    maxSource: config.max_source, maxTarget: config.max_target, batchSize: config.batch_size, seed: ctx.seed,
  };
  const prompts: RsPrompt[] = (await readJsonl(ctx.prompts)).slice(0, config.prompts).map(({ rec, where }, i) => ({ id: recordId(rec, i), messages: promptOf(rec, where, true) }));
  const external = config.external ? await readExternal(config.external, prompts) : new Map<string, string[]>();
  const { train, heldout } = splitHeldout(prompts, config.eval_fraction, ctx.seed);
  const rm = await RewardModel.load(ctx.reward, nativeKernels, false);
  const run = new RunDir(ctx.runDir);
  const metrics = new MetricsLog(run.metrics);
  const stage = run.stage('rs');
  // each round starts from the previous round's policy (the adapter merges into round 1 only)
  let source: ChatModelSource = { model: ctx.model, adapter: ctx.adapter, tokenizer: ctx.tokenizer, template: ctx.template };
  for (let round = 1; round <= config.rounds; round++) {
    const dir = stage.round(round);
    const next: ChatModelSource = { ...source, model: dir.policy, adapter: undefined };
    if (fs.existsSync(dir.done)) {
      process.stderr.write(`rs: round ${round} already done, policy in ${dir.policy}\n`);
      source = next;
      continue;
    }
    const { model, tokenizer, template } = await loadChatModel({ ...source, trainable: !config.lora });
    if (round === 1) {
      const before = greedyReward(model, rm, tokenizer, template, heldout, o);
      metrics.append({ stage: 'rs', step: 0, 'rs/heldout_greedy_reward': before });
      process.stderr.write(`rs: held-out greedy reward before round 1: ${before.toFixed(4)}\n`);
    }
    let records: RoundRecord[];
    if (fs.existsSync(dir.candidates)) records = (await readJsonl(dir.candidates)).map((r) => r.rec as unknown as RoundRecord);
    else {
      process.stderr.write(`rs: round ${round}: sampling ${o.k} answers for ${train.length} prompts\n`);
      records = sampleAndRank(model, rm, tokenizer, template, train, external, o, round);
      await writeRound(dir.dir, records, roundSummary(records));
    }
    const summary = roundSummary(records);
    const kept = records.flatMap((r) => r.kept.map((i) => [...r.prompt, { role: 'assistant' as const, content: r.candidates[i].text }]));
    if (!kept.length) throw new ConfigError(`rs: round ${round}: no candidate passed the threshold ${o.threshold}; lower threshold`);
    const adapter = attachLora(config.lora, model, ctx.seed);
    const save = weightWriters({ tokenizer, template }, (out) => saveModel(out, model), adapter, source.model);
    const enc = encodeSft(kept, tokenizer, template, { maxSource: o.maxSource, maxTarget: o.maxTarget, trainOnPrompt: false });
    const cfg = trainerConfig(config, enc.examples.length, ctx.seed);
    const task = new SftTask(model, enc.examples, [], { batchSize: config.batch_size, recompute: config.recompute, seed: ctx.seed + round }, adapter, save.stage);
    await trainStage(`rs/round-${round}`, ctx.runDir, cfg, task, { round, ...o, kept: kept.length });
    adapter?.merge();
    await save.model(dir.policy);
    const after = greedyReward(model, rm, tokenizer, template, heldout, o);
    metrics.append({ stage: 'rs', step: round, ...summary, 'rs/heldout_greedy_reward': after });
    await writeJsonAtomic(dir.done, { round, ...summary, heldout_greedy_reward: after });
    process.stdout.write(`rs round ${round}: mean sample reward ${summary['rs/mean_reward'].toFixed(4)}, best ${summary['rs/best_reward'].toFixed(4)}, ` +
      `kept ${summary['rs/kept']} (${summary['rs/kept_external']} external); held-out greedy reward ${after.toFixed(4)}\npolicy: ${dir.policy}\n`);
    source = next;
  }
  const last = stage.round(config.rounds);
  return { output: last.policy, final: last.final, inputs: [ctx.prompts, ctx.model, ctx.reward, ...[ctx.adapter, config.external].filter((x): x is string => !!x)] };
}
