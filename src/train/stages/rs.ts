// ChiMed-GPT's rejection sampling: per round, the policy's greedy answer and k samples per
// prompt (plus any external candidates and the reference answer) are scored by the reward
// model; the best `keep` samples that beat the greedy answer by the margin, with replayed
// reference answers, become an SFT set the policy is fine-tuned on; the round hands on its best
// judged weights, and the next round starts from them.
import fs from 'node:fs';
import * as z from 'zod';
import { DataError } from '../../data/errors.js';
import { ConfigError } from '../../model/config.js';
import { jsonlRecords, promptAndAnswer, readJsonl, recordId } from '../../data/stage-files.js';
import { dist, say } from '../../engine/dist.js';
import { nativeKernels } from '../../engine/native.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { RunDir } from '../../io/run-dir.js';
import { saveModel } from '../../model/checkpoint.js';
import { loadChatModel, type ChatModelSource } from '../../model/load.js';
import { RewardModel } from '../../model/reward.js';
import { MetricsLog } from '../metrics.js';
import {
  formatRound,
  judgeGreedy,
  roundSummary,
  roundTrainingSet,
  RoundTask,
  sampleAndRank,
  writeCandidates,
  type JudgeBounds,
  type RoundRecord,
  type RsOptions,
  type RsPrompt,
} from '../rejection.js';
import { encodeSft, SftTask } from '../sft.js';
import type { ChatMessage, ChatTemplate, TemplateTokenizer } from '../../tokenizer/chat-template.js';
import {
  attachLora,
  baseDtypeSetting,
  fraction,
  lengthSettings,
  loraSetting,
  policyInputs,
  posInt,
  splitHeldout,
  trainerConfig,
  resolveSettings,
  trainerSettings,
  trainStage,
  weightWriters,
  type StageContext,
  type StageResult,
} from './common.js';

export const RsConfigSchema = z.strictObject({
  ...trainerSettings({ lr: 2e-5, epochs: 1, batch_size: 8, weight_decay: 0.05 }),
  lora: loraSetting(32, false),
  ...baseDtypeSetting,
  k: posInt.default(4).describe('answers sampled per prompt from the policy (ChiMed-GPT: 4)'),
  keep: posInt.default(1).describe('candidates kept per prompt, best reward first'),
  threshold: z.number().nullable().default(null).describe('absolute floor: samples below this reward are never kept'),
  margin: z
    .number()
    .min(0)
    .default(0)
    .describe("a sample is kept only if its reward exceeds the policy's greedy answer's by more than this"),
  beat_reference: z.boolean().default(false).describe("also require it to exceed the reference answer's reward by the margin"),
  reference_candidate: z.boolean().default(false).describe('the reference answer competes as a candidate too'),
  replay: z
    .number()
    .min(0)
    .lt(1)
    .default(0.5)
    .describe("share of each round's fine-tuning set that replays the prompts' reference answers"),
  rounds: posInt.default(1).describe("rounds of sampling, ranking and fine-tuning, each from the previous round's policy"),
  max_loss_rise: z
    .number()
    .min(0)
    .default(0.02)
    .describe(
      "a judged step counts only if the held-out prompts' reference answers' loss rose by at most this share of the stage's starting policy's (one bound for every round)",
    ),
  max_rouge_drop: z
    .number()
    .min(0)
    .max(1)
    .nullable()
    .default(null)
    .describe(
      "a judged step counts only if its greedy answers' ROUGE-L against the held-out references fell by at most this share of the stage's starting policy's (null: not checked)",
    ),
  temperature: z.number().min(0).default(0.8).describe('sampling temperature'),
  top_p: z.number().gt(0).max(1).default(0.9).describe('nucleus sampling: the smallest set of tokens with this much probability'),
  max_new_tokens: posInt.default(128).describe('longest sampled answer, in tokens'),
  prompts: posInt.optional().meta({ flag: 'limit', description: 'use at most this many prompts (default all)' }),
  external: z
    .string()
    .optional()
    .meta({ arg: 'FILE', description: 'JSONL {id or prompt, response}: extra candidates (references, other models)' }),
  ...lengthSettings,
  eval_fraction: fraction
    .default(0.1)
    .describe(
      'share of the prompts held out to judge each round by the reward of greedy answers (without eval_data); a round keeps its best judged weights (eval_every steps apart, the starting ones included)',
    ),
  eval_limit: posInt.optional().describe('judge on at most this many of the eval_data prompts (default all)'),
});
export type RsConfig = z.output<typeof RsConfigSchema>;

export const RsInputsSchema = z.strictObject({
  prompts: z.string().meta({
    arg: 'FILE',
    description:
      'JSONL: {id?, messages} or {id?, prompt, response?, history?}; a final assistant turn (or response) is the reference answer',
  }),
  reward: z.string().meta({ arg: 'DIR', description: 'the reward model (chimed train rm)' }),
  eval_data: z.string().optional().meta({
    arg: 'FILE',
    description:
      'held-out prompts with reference answers that judge the rounds (default: eval_fraction of the prompts); prompts outside the training distribution make a round keep only gains that carry over',
  }),
  ...policyInputs,
});
export type RsInputs = z.input<typeof RsInputsSchema>;

/** The first `limit` prompts of a file, each with its reference answer when it has one. */
async function readPrompts(file: string, limit?: number): Promise<RsPrompt[]> {
  return (await readJsonl(file)).slice(0, limit).map(({ rec, where }, i) => {
    const { prompt, answer } = promptAndAnswer(rec, where);
    const reference = answer?.trim();
    return { id: recordId(rec, i), messages: prompt, ...(reference ? { reference } : {}) };
  });
}

/** External candidates by prompt id: {id, response} or {prompt (the last user turn), response}. */
async function readExternal(file: string, prompts: RsPrompt[]): Promise<Map<string, string[]>> {
  const byPrompt = new Map(prompts.map((p) => [p.messages.at(-1)!.content, p.id]));
  const out = new Map<string, string[]>();
  for await (const { rec, where } of jsonlRecords(file)) {
    const id = rec.id !== undefined ? String(rec.id) : byPrompt.get(String(rec.prompt ?? ''));
    if (id === undefined || typeof rec.response !== 'string')
      throw new DataError(`${where}: an external candidate needs "response" and an "id" or "prompt" matching a prompt`);
    out.set(id, [...(out.get(id) ?? []), rec.response]);
  }
  return out;
}

/** The stage's judge bounds as a round's summary recorded them (the finite ones). */
function boundsOf(summary: Record<string, number | undefined>): JudgeBounds | undefined {
  const loss = summary['rs/max_reference_loss'],
    rouge = summary['rs/min_greedy_rouge_l'];
  return loss === undefined && rouge === undefined ? undefined : { maxLoss: loss ?? Infinity, minRougeL: rouge ?? -Infinity };
}

/** Runs the stage: `settings` as in a run config's stage entry (defaults filled in here), inputs and run directory in `ctx`. */
export async function runRs(settings: z.input<typeof RsConfigSchema>, ctx: StageContext & RsInputs): Promise<StageResult> {
  const config = resolveSettings(RsConfigSchema, settings, 'rs');
  if (config.eval_limit !== undefined && !ctx.eval_data)
    throw new ConfigError('rs: eval_limit limits the eval_data prompts; give eval_data (--eval-data FILE) or drop it');
  const o: RsOptions = {
    k: config.k,
    keep: config.keep,
    threshold: config.threshold,
    margin: config.margin,
    beatReference: config.beat_reference,
    referenceCandidate: config.reference_candidate,
    replay: config.replay,
    maxLossRise: config.max_loss_rise,
    maxRougeDrop: config.max_rouge_drop,
    temperature: config.temperature,
    topP: config.top_p,
    maxNewTokens: config.max_new_tokens,
    maxSource: config.max_source,
    maxTarget: config.max_target,
    batchSize: config.batch_size,
    seed: ctx.seed,
  };
  const prompts = await readPrompts(ctx.prompts, config.prompts);
  const external = config.external ? await readExternal(config.external, prompts) : new Map<string, string[]>();
  const { train, heldout } = ctx.eval_data
    ? { train: prompts, heldout: await readPrompts(ctx.eval_data, config.eval_limit) }
    : splitHeldout(prompts, config.eval_fraction, ctx.seed);
  // the judge is never trained: its base follows base_dtype even when the policy trains in full
  const rm = await RewardModel.load(ctx.reward, nativeKernels, false, config.base_dtype);
  const run = new RunDir(ctx.runDir);
  const metrics = new MetricsLog(run.metrics);
  const stage = run.stage('rs');
  // every rank generates and trains its share (train/rejection.ts, the trainer); rank 0 alone writes
  const root = dist().isRoot;
  const encode = (convs: ChatMessage[][], tok: TemplateTokenizer, template: ChatTemplate) =>
    encodeSft(convs, tok, template, { maxSource: o.maxSource, maxTarget: o.maxTarget, trainOnPrompt: false });
  // each round starts from the previous round's policy (the adapter merges into round 1 only)
  let source: ChatModelSource = { model: ctx.model, adapter: ctx.adapter, tokenizer: ctx.tokenizer, template: ctx.template };
  // the bounds of the first round that judged steps hold for the later ones
  let bounds: JudgeBounds | undefined;
  for (let round = 1; round <= config.rounds; round++) {
    const dir = stage.round(round);
    const next: ChatModelSource = { ...source, model: dir.policy, adapter: undefined };
    if (fs.existsSync(dir.done)) {
      say(`rs: round ${round} already done, policy in ${dir.policy}`);
      bounds ??= boundsOf(JSON.parse(fs.readFileSync(dir.done, 'utf8')));
      source = next;
      continue;
    }
    const { model, tokenizer, template } = await loadChatModel({
      ...source,
      trainable: !config.lora,
      baseDtype: config.lora ? config.base_dtype : undefined,
    });
    const judge = () => judgeGreedy(model, rm, tokenizer, template, heldout, o);
    const start = judge();
    const before = start.reward;
    if (round === 1 && root)
      metrics.append({ stage: 'rs', step: 0, 'rs/heldout_greedy_reward': before, 'rs/heldout_greedy_rouge_l': start.rougeL });
    say(`rs: round ${round}: held-out greedy reward of the starting policy ${before.toFixed(4)}`);
    let records: RoundRecord[];
    if (fs.existsSync(dir.candidates)) records = (await readJsonl(dir.candidates)).map((r) => r.rec as unknown as RoundRecord);
    else {
      say(`rs: round ${round}: greedy answer and ${o.k} samples for each of ${train.length} prompts`);
      records = sampleAndRank(model, rm, tokenizer, template, train, external, o, round);
      if (root) await writeCandidates(dir.dir, records);
    }
    const set = roundTrainingSet(records, train, o, round);
    const adapter = set.kept ? attachLora(config.lora, model, ctx.seed) : null;
    const save = weightWriters({ tokenizer, template }, (out) => saveModel(out, model), adapter, source.model);
    let selectedStep = 0;
    if (set.kept) {
      const enc = encode(set.conversations, tokenizer, template);
      const cfg = trainerConfig(config, enc.examples.length, ctx.seed);
      const opts = { batchSize: config.batch_size, gradAccum: config.grad_accum, recompute: config.recompute, seed: ctx.seed + round };
      // with held-out prompts the round keeps its best judged weights; without, its last
      const references = heldout
        .filter((p) => p.reference)
        .map((p) => [...p.messages, { role: 'assistant' as const, content: p.reference! }]);
      const task = heldout.length
        ? new RoundTask(model, enc.examples, encode(references, tokenizer, template).examples, opts, adapter, save.stage, judge, {
            judged: start,
            maxLossRise: o.maxLossRise,
            maxRougeDrop: o.maxRougeDrop,
            bounds,
          })
        : new SftTask(model, enc.examples, [], opts, adapter, save.stage);
      await trainStage(`rs/round-${round}`, ctx.runDir, cfg, task, { round, ...o, kept: set.kept, replayed: set.replayed });
      if (task instanceof RoundTask) {
        selectedStep = task.restoreBest().step;
        bounds = task.bounds;
      } else selectedStep = cfg.maxSteps;
      adapter?.merge();
    } else say(`rs: round ${round}: no sample beat its prompt's bar, so the policy stays as it was`);
    if (root) await save.model(dir.policy);
    // the next round (on every rank) loads this policy
    dist().barrier();
    const after = selectedStep ? judge() : start;
    const summary = {
      ...roundSummary(records),
      'rs/replayed': set.replayed,
      'rs/selected_step': selectedStep,
      'rs/heldout_greedy_reward_before': before,
      'rs/heldout_greedy_reward': after.reward,
      'rs/heldout_greedy_rouge_l_before': start.rougeL,
      'rs/heldout_greedy_rouge_l': after.rougeL,
      ...(bounds && Number.isFinite(bounds.maxLoss) && { 'rs/max_reference_loss': bounds.maxLoss }),
      ...(bounds && Number.isFinite(bounds.minRougeL) && { 'rs/min_greedy_rouge_l': bounds.minRougeL }),
    };
    if (root) {
      metrics.append({ stage: 'rs', step: round, ...summary });
      await writeJsonAtomic(dir.summary, { round, ...summary });
      await writeJsonAtomic(dir.done, { round, ...summary });
    }
    process.stdout.write(
      `${formatRound(round, summary, set.replayed)}\nrs round ${round}: held-out greedy reward ${before.toFixed(4)} -> ${after.reward.toFixed(4)} ` +
        `(${selectedStep ? `weights of step ${selectedStep}` : 'the starting policy kept: no judged step improved it'})\npolicy: ${dir.policy}\n`,
    );
    source = next;
  }
  const last = stage.round(config.rounds);
  return { output: last.policy, final: last.final };
}
