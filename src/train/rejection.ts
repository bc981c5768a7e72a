import fs from 'node:fs';
import path from 'node:path';
import { splitBatches } from '../engine/dist.js';
import type { FloatArray } from '../engine/kernels.js';
import { Rng } from '../engine/rng.js';
import { Context } from '../engine/tensor.js';
import { charTokens, lcsLength } from '../data/overlap.js';
import { writeFileAtomic } from '../io/atomic.js';
import { generateReplies, type ChatTokenizer } from '../model/chat.js';
import type { Llama } from '../model/llama.js';
import type { RewardModel } from '../model/reward.js';
import type { ChatMessage, ChatTemplate } from '../tokenizer/chat-template.js';
import { collateResponses, encodeResponse } from './preference.js';
import { SftTask, type SftExample } from './sft.js';
import type { LoraAdapter } from '../model/lora.js';

export interface RsPrompt {
  id: string;
  messages: ChatMessage[];
  /** The dataset's own answer (an SFT record's final assistant turn), when it has one. */
  reference?: string;
}

export interface RsOptions {
  /** Samples per prompt from the policy (ChiMed-GPT: 4). */
  k: number;
  /** Candidates kept per prompt, best reward first. */
  keep: number;
  /** Absolute floor: candidates below this reward are never kept. */
  threshold: number | null;
  /** A candidate is kept only if its reward exceeds the policy's own greedy answer's by more than this. */
  margin: number;
  /** Also require it to exceed the reference answer's reward by `margin` where the prompt has one. */
  beatReference: boolean;
  /** The reference answer competes as a candidate too. */
  referenceCandidate: boolean;
  /** Share of each round's fine-tuning set that replays reference answers of the prompts (0 = none). */
  replay: number;
  /** A judged step counts only if the validation references' loss rose by at most this share. */
  maxLossRise: number;
  /** ... and its greedy answers' ROUGE-L against them fell by at most this share (null: unchecked). */
  maxRougeDrop: number | null;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  maxSource: number;
  maxTarget: number;
  batchSize: number;
  seed: number;
}

/**
 * `policy`: a sample at the sampling temperature; `external`: a given extra candidate (other
 * models, as ChiMed-GPT); `greedy` and `reference` are scored as the bar and the report's
 * comparison points and are never kept as samples (the reference returns through replay).
 */
export interface Candidate {
  text: string;
  source: 'policy' | 'external' | 'greedy' | 'reference';
  reward: number;
}

export interface RoundRecord {
  id: string;
  prompt: ChatMessage[];
  candidates: Candidate[];
  /** The reward a candidate had to exceed to be kept. */
  bar: number;
  kept: number[];
}

/** Rewards of answers to prompts under the reward model, in batches. */
export function scoreAnswers<F extends FloatArray>(
  rm: RewardModel<F>,
  tok: ChatTokenizer,
  template: ChatTemplate,
  items: { prompt: ChatMessage[]; answer: string }[],
  o: Pick<RsOptions, 'maxSource' | 'maxTarget' | 'batchSize'>,
): number[] {
  const ctx = new Context(rm.lm.k, undefined, false);
  const out: number[] = [];
  for (let i = 0; i < items.length; i += o.batchSize) {
    const rows = items.slice(i, i + o.batchSize).map((it) => encodeResponse(tok, template, it.prompt, it.answer, o.maxSource, o.maxTarget));
    const { batch, last } = collateResponses(rows);
    out.push(...Array.from(rm.scores(ctx, batch, last).data));
    ctx.reset();
  }
  return out;
}

/**
 * The bar of one prompt and the candidates that pass it (best first, at most `keep`). A sample
 * earns its place only by beating what the policy already answers greedily (Llama 2's and
 * RAFT's best-of-k, made conditional so a round cannot teach answers the RM ranks below the
 * policy's own), optionally the reference too, and never below the absolute threshold.
 */
export function selectKept(
  candidates: Candidate[],
  o: Pick<RsOptions, 'keep' | 'threshold' | 'margin' | 'beatReference' | 'referenceCandidate'>,
): { bar: number; kept: number[] } {
  const rewardOf = (s: Candidate['source']) => candidates.find((c) => c.source === s)?.reward;
  const greedy = rewardOf('greedy'),
    reference = o.beatReference ? rewardOf('reference') : undefined;
  const bar = Math.max(greedy ?? -Infinity, reference ?? -Infinity) + o.margin;
  const kept = candidates
    .map((c, i) => ({ c, i }))
    .filter(
      ({ c }) =>
        (c.source === 'policy' || c.source === 'external' || (o.referenceCandidate && c.source === 'reference')) &&
        c.reward > bar &&
        (o.threshold === null || c.reward >= o.threshold),
    )
    .sort((a, b) => b.c.reward - a.c.reward)
    .slice(0, o.keep)
    .map(({ i }) => i);
  return { bar, kept };
}

/**
 * One round of ChiMed-GPT's rejection sampling: per prompt the policy's greedy answer and k
 * samples, any external candidates and the reference answer, all scored by the reward model;
 * `selectKept` chooses what the round fine-tunes on.
 */
export function sampleAndRank<F extends FloatArray>(
  policy: Llama<F>,
  rm: RewardModel<F>,
  tok: ChatTokenizer,
  template: ChatTemplate,
  prompts: RsPrompt[],
  external: Map<string, string[]>,
  o: RsOptions,
  round: number,
): RoundRecord[] {
  const sampleBatch = Math.max(1, Math.floor(o.batchSize / o.k));
  // under MPI each rank generates whole batches (engine/dist.ts): the same samples as one process
  const records = splitBatches(prompts, lcm(o.batchSize, sampleBatch), (batch, offset) => {
    const convs = batch.map((p) => p.messages);
    const greedy = generateReplies(policy, tok, template, convs, { maxNewTokens: o.maxNewTokens, batchSize: o.batchSize });
    const samples = generateReplies(policy, tok, template, convs, {
      maxNewTokens: o.maxNewTokens,
      temperature: o.temperature,
      topP: o.topP,
      n: o.k,
      seed: o.seed * 1000 + round + offset,
      batchSize: sampleBatch,
    });
    const rows: RoundRecord[] = batch.map((p, i) => ({
      id: p.id,
      prompt: p.messages,
      bar: NaN,
      kept: [],
      candidates: [
        { text: (greedy[i][0].text ?? '').trim(), source: 'greedy' as const, reward: 0 },
        ...samples[i].map((g) => ({ text: (g.text ?? '').trim(), source: 'policy' as const, reward: 0 })),
        ...(external.get(p.id) ?? []).map((text) => ({ text, source: 'external' as const, reward: 0 })),
        ...(p.reference ? [{ text: p.reference, source: 'reference' as const, reward: 0 }] : []),
      ].filter((c) => c.text.length > 0 || c.source === 'greedy'),
    }));
    const flat = rows.flatMap((r) => r.candidates.map((c) => ({ prompt: r.prompt, answer: c.text, c })));
    scoreAnswers(rm, tok, template, flat, o).forEach((s, i) => {
      flat[i].c.reward = s;
    });
    return rows;
  });
  // after the gather: the bars crossed ranks as JSON, which has no NaN or Infinity
  for (const r of records) Object.assign(r, selectKept(r.candidates, o));
  return records;
}

function lcm(a: number, b: number): number {
  const gcd = (x: number, y: number): number => (y ? gcd(y, x % y) : x);
  return (a / gcd(a, b)) * b;
}

/**
 * The round's fine-tuning conversations: every kept candidate, plus reference answers of the
 * round's prompts drawn at random so they make up `replay` of the set (as replaying SFT data
 * keeps what SFT taught while the policy moves toward its best samples).
 */
export function roundTrainingSet(
  records: RoundRecord[],
  prompts: RsPrompt[],
  o: Pick<RsOptions, 'replay' | 'seed'>,
  round: number,
): { conversations: ChatMessage[][]; kept: number; replayed: number } {
  const kept = records.flatMap((r) => r.kept.map((i) => [...r.prompt, { role: 'assistant' as const, content: r.candidates[i].text }]));
  const pool = prompts.filter((p) => p.reference);
  const wanted = o.replay > 0 && o.replay < 1 ? Math.round((kept.length * o.replay) / (1 - o.replay)) : 0;
  const replayed = Rng.derive(o.seed, round, 0x7e91a4)
    .shuffle([...pool])
    .slice(0, wanted)
    .map((p) => [...p.messages, { role: 'assistant' as const, content: p.reference! }]);
  return { conversations: [...kept, ...replayed], kept: kept.length, replayed: replayed.length };
}

const mean = (a: number[]) => (a.length ? a.reduce((s, x) => s + x, 0) / a.length : NaN);

/**
 * What a round found: the share of prompts with a kept candidate, and the mean reward of the
 * samples, the best sample, the kept candidates, the greedy answers and the references.
 */
export function roundSummary(records: RoundRecord[]): Record<string, number> {
  const rewards = (s: Candidate['source']) => records.flatMap((r) => r.candidates.filter((c) => c.source === s).map((c) => c.reward));
  const sampled = records.map((r) => r.candidates.filter((c) => c.source === 'policy' || c.source === 'external')).filter((c) => c.length);
  const kept = records.flatMap((r) => r.kept.map((i) => r.candidates[i]));
  return {
    'rs/prompts': records.length,
    'rs/kept': kept.length,
    'rs/kept_fraction': records.length ? records.filter((r) => r.kept.length).length / records.length : NaN,
    'rs/kept_external': kept.filter((c) => c.source === 'external').length,
    'rs/mean_reward': mean(rewards('policy')),
    'rs/best_reward': mean(sampled.map((c) => Math.max(...c.map((x) => x.reward)))),
    'rs/kept_mean_reward': mean(kept.map((c) => c.reward)),
    'rs/greedy_mean_reward': mean(rewards('greedy')),
    'rs/reference_mean_reward': mean(rewards('reference')),
  };
}

/** One line for the console: what a round kept and how its rewards compare. */
export function formatRound(round: number, s: Record<string, number>, replayed: number): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '-');
  return (
    `rs round ${round}: kept ${s['rs/kept']} of ${s['rs/prompts']} prompts (${(100 * s['rs/kept_fraction']).toFixed(0)}%, ${s['rs/kept_external']} external) + ${replayed} replayed references; ` +
    `mean reward: kept ${f(s['rs/kept_mean_reward'])}, greedy ${f(s['rs/greedy_mean_reward'])}, reference ${f(s['rs/reference_mean_reward'])}, samples ${f(s['rs/mean_reward'])} (best of k ${f(s['rs/best_reward'])})`
  );
}

/**
 * A round's fine-tuning: SFT on the round's set, judged every eval_every steps and at the end
 * on the validation prompts by two numbers: the reward of the greedy answers, and the loss of
 * the reference answers (what SFT taught). The round keeps the judged weights with the best
 * reward among those whose reference loss rose by at most `maxLossRise` of the starting one;
 * the starting weights compete too, so a round never hands on a policy that answers those
 * prompts worse, nor one that has drifted from its references to please the reward model
 * (Llama 2 likewise kept each round's best checkpoint). With `maxRougeDrop` a step also counts
 * only if its greedy answers' ROUGE-L against the references stays within that share: the
 * reward model may prefer wordings far from the references, which the loss hardly shows.
 * The bounds are the stage's: later rounds get the first judged round's, so drift cannot
 * compound round after round. The best weights are held in memory
 * (one more copy of what is trained: the adapter under LoRA); a round resumed from a
 * checkpoint chooses among the starting policy and what it judges after resuming.
 */
export class RoundTask<F extends FloatArray> extends SftTask<F> {
  private best: { reward: number; step: number; weights: F };
  private step = 0;
  private readonly gradAccum: number;
  /** The highest reference loss and the lowest greedy ROUGE-L a judged step may have and count. */
  readonly bounds: JudgeBounds;

  constructor(
    model: Llama<F>,
    train: SftExample[],
    validation: SftExample[],
    opts: { batchSize: number; gradAccum: number; recompute: boolean; seed: number },
    adapter: LoraAdapter<F> | null,
    saveWeights: (dir: string) => Promise<void>,
    /** The validation prompts' greedy answers of the model as it is now. */
    private readonly judge: () => Judgement,
    start: { judged: Judgement; maxLossRise: number; maxRougeDrop: number | null; bounds?: JudgeBounds },
  ) {
    super(model, train, validation, opts, adapter, saveWeights);
    this.gradAccum = opts.gradAccum;
    this.bounds = start.bounds ?? {
      maxLoss: (this.referenceLoss(new Context(model.k)) ?? Infinity) * (1 + start.maxLossRise),
      minRougeL: start.maxRougeDrop === null ? -Infinity : start.judged.rougeL * (1 - start.maxRougeDrop),
    };
    this.best = { reward: start.judged.reward, step: 0, weights: this.params.data.slice() as F };
  }

  private referenceLoss(ctx: Context<F>): number | undefined {
    return super.evaluate(ctx).eval_loss;
  }

  microStep(...a: Parameters<SftTask<F>['microStep']>) {
    this.step = Math.floor(a[1] / this.gradAccum) + 1;
    return super.microStep(...a);
  }

  evaluate(ctx: Context<F>): Record<string, number> {
    const { reward, rougeL } = this.judge(),
      loss = this.referenceLoss(ctx) ?? NaN;
    if (reward > this.best.reward && !(loss > this.bounds.maxLoss) && !(rougeL < this.bounds.minRougeL))
      this.best = { reward, step: this.step, weights: this.params.data.slice() as F };
    return {
      eval_greedy_reward: reward,
      ...(Number.isNaN(rougeL) ? {} : { eval_greedy_rouge_l: rougeL }),
      ...(Number.isNaN(loss) ? {} : { eval_loss: loss }),
    };
  }

  /** Puts the best judged weights back; their step (0: the starting policy) and reward. */
  restoreBest(): { step: number; reward: number } {
    this.params.data.set(this.best.weights);
    return { step: this.best.step, reward: this.best.reward };
  }
}

/** What the judge sees of the greedy answers to the validation prompts. */
export interface Judgement {
  /** Their mean reward. */
  reward: number;
  /** Their mean ROUGE-L F1 (0-100, characters) against the prompts' references; NaN without any. */
  rougeL: number;
}

/** Limits a judged step must keep to count. */
export interface JudgeBounds {
  maxLoss: number;
  minRougeL: number;
}

/** ROUGE-L F1 of one answer against its reference, on characters, 0-100 (as the evaluation's). */
function rougeL(answer: string, reference: string): number {
  const h = charTokens(answer),
    r = charTokens(reference);
  return h.length && r.length ? (200 * lcsLength(h, r)) / (h.length + r.length) : 0;
}

/** The policy's greedy answers to held-out prompts: mean reward and ROUGE-L. */
export function judgeGreedy<F extends FloatArray>(
  policy: Llama<F>,
  rm: RewardModel<F>,
  tok: ChatTokenizer,
  template: ChatTemplate,
  prompts: RsPrompt[],
  o: RsOptions,
): Judgement {
  if (!prompts.length) return { reward: NaN, rougeL: NaN };
  const scored = splitBatches(prompts, o.batchSize, (batch) => {
    const answers = generateReplies(
      policy,
      tok,
      template,
      batch.map((p) => p.messages),
      { maxNewTokens: o.maxNewTokens, batchSize: o.batchSize },
    ).map((r) => r[0].text ?? '');
    const rewards = scoreAnswers(
      rm,
      tok,
      template,
      batch.map((p, i) => ({ prompt: p.messages, answer: answers[i] })),
      o,
    );
    return rewards.map((reward, i) => ({ reward, rougeL: batch[i].reference ? rougeL(answers[i], batch[i].reference!) : null }));
  });
  const overlaps = scored.flatMap((x) => (x.rougeL === null ? [] : [x.rougeL]));
  return { reward: mean(scored.map((x) => x.reward)), rougeL: mean(overlaps) };
}
/** The round's candidates, rewards and choices (read back when an interrupted round resumes). */
export async function writeCandidates(dir: string, records: RoundRecord[]): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await writeFileAtomic(path.join(dir, 'candidates.jsonl'), records.map((r) => JSON.stringify(r) + '\n').join(''));
}
