import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray } from '../engine/kernels.js';
import { Context } from '../engine/tensor.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { generateReplies, type ChatTokenizer } from '../model/chat.js';
import type { Llama } from '../model/llama.js';
import type { RewardModel } from '../model/reward.js';
import type { ChatMessage, ChatTemplate } from '../tokenizer/chat-template.js';
import { collateResponses, encodeResponse } from './preference.js';

export interface RsPrompt {
  id: string;
  messages: ChatMessage[];
}

export interface RsOptions {
  /** Samples per prompt from the policy (ChiMed-GPT: 4). */
  k: number;
  /** Candidates kept per prompt, best reward first. */
  keep: number;
  /** Candidates below this reward are never kept. */
  threshold: number | null;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  maxSource: number;
  maxTarget: number;
  batchSize: number;
  seed: number;
}

export interface Candidate {
  text: string;
  source: 'policy' | 'external';
  reward: number;
}

export interface RoundRecord {
  id: string;
  prompt: ChatMessage[];
  candidates: Candidate[];
  kept: number[];
}

/** Rewards of answers to prompts under the reward model, in batches. */
export function scoreAnswers<F extends FloatArray>(
  rm: RewardModel<F>, tok: ChatTokenizer, template: ChatTemplate, items: { prompt: ChatMessage[]; answer: string }[], o: Pick<RsOptions, 'maxSource' | 'maxTarget' | 'batchSize'>,
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
 * One round of ChiMed-GPT's rejection sampling: k policy samples per prompt plus any external
 * candidates, all scored by the reward model; the best `keep` (above the threshold) become
 * the SFT set of the round. Returns every candidate with its reward and the choices.
 */
export function sampleAndRank<F extends FloatArray>(
  policy: Llama<F>, rm: RewardModel<F>, tok: ChatTokenizer, template: ChatTemplate,
  prompts: RsPrompt[], external: Map<string, string[]>, o: RsOptions, round: number,
): RoundRecord[] {
  const samples = generateReplies(policy, tok, template, prompts.map((p) => p.messages), {
    maxNewTokens: o.maxNewTokens, temperature: o.temperature, topP: o.topP, n: o.k, seed: o.seed * 1000 + round, batchSize: Math.max(1, Math.floor(o.batchSize / o.k)),
  });
  const records: RoundRecord[] = prompts.map((p, i) => ({
    id: p.id, prompt: p.messages, kept: [],
    candidates: [
      ...samples[i].map((g) => ({ text: (g.text ?? '').trim(), source: 'policy' as const, reward: 0 })),
      ...(external.get(p.id) ?? []).map((text) => ({ text, source: 'external' as const, reward: 0 })),
    ].filter((c) => c.text.length > 0),
  }));
  const flat = records.flatMap((r) => r.candidates.map((c) => ({ prompt: r.prompt, answer: c.text, c })));
  scoreAnswers(rm, tok, template, flat, o).forEach((s, i) => { flat[i].c.reward = s; });
  for (const r of records) {
    r.kept = r.candidates.map((c, i) => ({ c, i }))
      .filter(({ c }) => o.threshold === null || c.reward >= o.threshold)
      .sort((a, b) => b.c.reward - a.c.reward).slice(0, o.keep).map(({ i }) => i);
  }
  return records;
}

export function roundSummary(records: RoundRecord[]): Record<string, number> {
  const policy = records.flatMap((r) => r.candidates.filter((c) => c.source === 'policy').map((c) => c.reward));
  const best = records.filter((r) => r.candidates.length).map((r) => Math.max(...r.candidates.map((c) => c.reward)));
  const kept = records.flatMap((r) => r.kept.map((i) => r.candidates[i]));
  const mean = (a: number[]) => (a.length ? a.reduce((s, x) => s + x, 0) / a.length : NaN);
  return {
    'rs/mean_reward': mean(policy), 'rs/best_reward': mean(best), 'rs/kept': kept.length,
    'rs/kept_external': kept.filter((c) => c.source === 'external').length, 'rs/kept_mean_reward': mean(kept.map((c) => c.reward)),
  };
}

/** Mean reward of the policy's greedy answers to held-out prompts. */
export function greedyReward<F extends FloatArray>(
  policy: Llama<F>, rm: RewardModel<F>, tok: ChatTokenizer, template: ChatTemplate, prompts: RsPrompt[], o: RsOptions,
): number {
  if (!prompts.length) return NaN;
  const replies = generateReplies(policy, tok, template, prompts.map((p) => p.messages), { maxNewTokens: o.maxNewTokens, batchSize: o.batchSize });
  const rewards = scoreAnswers(rm, tok, template, prompts.map((p, i) => ({ prompt: p.messages, answer: replies[i][0].text ?? '' })), o);
  return rewards.reduce((s, x) => s + x, 0) / rewards.length;
}

export async function writeRound(dir: string, records: RoundRecord[], summary: Record<string, number>): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await writeFileAtomic(path.join(dir, 'candidates.jsonl'), records.map((r) => JSON.stringify(r) + '\n').join(''));
  await writeJsonAtomic(path.join(dir, 'summary.json'), summary);
}
