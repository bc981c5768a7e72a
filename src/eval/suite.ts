import fs from 'node:fs';
import { Context } from '../engine/tensor.js';
import { generateReplies } from '../model/chat.js';
import type { ChatModel } from '../model/load.js';
import type { RewardModel } from '../model/reward.js';
import { messagesOf, preferenceOf, readDocuments, readJsonl } from '../data/stage-files.js';
import { nllSum } from '../train/lm-loss.js';
import { collatePairs, encodeResponse } from '../train/preference.js';
import { scoreAnswers } from '../train/rejection.js';
import { sequentialPositions } from '../model/llama.js';
import type { ChatMessage } from '../tokenizer/chat-template.js';
import { evaluateMcq, type McqMode } from './mcq.js';
import { LlamaEvalModel } from './model.js';
import { readMcqFile } from './read.js';
import { buildScalePrompt, evaluateScale, loadScale, scoreScale, type ScaleResult } from './scale.js';
import { textgenScores } from './textgen.js';

/** Held-out perplexity: documents joined with EOS, cut into blocks, mean token NLL. */
export async function perplexity(cm: ChatModel, files: string[], blockSize = 256, maxBlocks = 64): Promise<{ ppl: number; loss: number; tokens: number }> {
  const { model, tokenizer } = cm;
  const T = Math.min(blockSize, model.config.max_position_embeddings - 1);
  const ids: number[] = [];
  for await (const doc of readDocuments(files)) {
    ids.push(...tokenizer.encode(doc), tokenizer.eosId);
    if (ids.length > maxBlocks * T + 1) break;
  }
  const ctx = new Context(model.k, undefined, false);
  let sum = 0, tokens = 0;
  for (let s = 0; s + T + 1 <= ids.length && s / T < maxBlocks; s += T) {
    const r = nllSum(ctx, model, { ids: Int32Array.from(ids.slice(s, s + T)), pos: sequentialPositions(1, T), B: 1, T }, Int32Array.from(ids.slice(s + 1, s + T + 1)));
    sum += r.sum;
    tokens += r.tokens;
  }
  if (!tokens) throw new Error(`${files.join(', ')}: fewer than ${T + 1} tokens of held-out text`);
  return { ppl: Math.exp(sum / tokens), loss: sum / tokens, tokens };
}

export async function mcqAccuracy(cm: ChatModel, testFile: string, devFile: string | null, o: { k: number; mode: McqMode; chat: boolean; limit?: number }) {
  const items = (await readMcqFile(testFile)).slice(0, o.limit);
  const dev = devFile ? await readMcqFile(devFile) : [];
  const r = await evaluateMcq(new LlamaEvalModel(cm, { chat: o.chat }), items, dev, { k: dev.length ? o.k : 0, mode: o.mode });
  return { accuracy: r.accuracy, weighted_f1: r.weighted_f1, extraction_failure_rate: r.extraction_failure_rate, n: r.n };
}

async function conversations(file: string, limit: number): Promise<{ prompt: ChatMessage[]; reference: string }[]> {
  const out: { prompt: ChatMessage[]; reference: string }[] = [];
  for (const { rec, where } of await readJsonl(file)) {
    const msgs = messagesOf(rec, where);
    if (msgs.at(-1)?.role !== 'assistant') continue;
    out.push({ prompt: msgs.slice(0, -1), reference: msgs.at(-1)!.content });
    if (out.length >= limit) break;
  }
  return out;
}

/** BLEU-1..4 and ROUGE-1/2/L (character level) of greedy replies against held-out answers. */
export async function generationScores(cm: ChatModel, file: string, o: { limit: number; maxNewTokens: number }) {
  const convs = await conversations(file, o.limit);
  const replies = generateReplies(cm.model, cm.tokenizer, cm.template, convs.map((c) => c.prompt), { maxNewTokens: o.maxNewTokens, batchSize: 8 });
  return { ...textgenScores(replies.map((r) => r[0].text ?? ''), convs.map((c) => c.reference)), n: convs.length };
}

/**
 * How often the policy gives the chosen answer a higher log-probability than the rejected
 * one, overall and per rejected kind (wrong fact, unsafe, evasive) when the data says.
 */
export async function preferenceAccuracy(cm: ChatModel, file: string, limit = 200) {
  const rows = (await readJsonl(file)).slice(0, limit);
  const pairs = rows.map(({ rec, where }) => {
    const p = preferenceOf(rec, where);
    return {
      kind: typeof rec.rejected_kind === 'string' ? rec.rejected_kind : 'all', prompt: p.prompt,
      chosen: encodeResponse(cm.tokenizer, cm.template, p.prompt, p.chosen, 256, 256),
      rejected: encodeResponse(cm.tokenizer, cm.template, p.prompt, p.rejected, 256, 256),
    };
  });
  const ctx = new Context(cm.model.k, undefined, false);
  const wins: Record<string, [number, number]> = {};
  for (let i = 0; i < pairs.length; i += 8) {
    const chunk = pairs.slice(i, i + 8);
    const { batch, targets, segment } = collatePairs(chunk);
    const logp = cm.model.logprobs(ctx, batch, targets);
    const sums = new Float64Array(2 * chunk.length);
    for (let t = 0; t < segment.length; t++) if (segment[t] >= 0) sums[segment[t]] += logp.data[t];
    chunk.forEach((p, j) => {
      for (const k of new Set(['all', p.kind])) {
        const w = (wins[k] ??= [0, 0]);
        w[0] += sums[j] > sums[chunk.length + j] ? 1 : 0;
        w[1]++;
      }
    });
    ctx.reset();
  }
  return Object.fromEntries(Object.entries(wins).map(([k, [w, n]]) => [k === 'all' ? 'accuracy' : `accuracy_${k}`, w / n]));
}

/** Mean reward-model score of the policy's greedy answers to held-out prompts. */
export async function meanReward(cm: ChatModel, rm: RewardModel<Float32Array>, file: string, o: { limit: number; maxNewTokens: number }) {
  const convs = await conversations(file, o.limit);
  const replies = generateReplies(cm.model, cm.tokenizer, cm.template, convs.map((c) => c.prompt), { maxNewTokens: o.maxNewTokens, batchSize: 8 });
  const r = scoreAnswers(rm, cm.tokenizer, cm.template, convs.map((c, i) => ({ prompt: c.prompt, answer: replies[i][0].text ?? '' })), { maxSource: 256, maxTarget: 256, batchSize: 8 });
  return r.reduce((s, x) => s + x, 0) / Math.max(1, r.length);
}

/**
 * Attitude-scale scores per subscale and in total. `generate` parses free answers (large
 * models); `loglik` picks the option whose text the model finds most likely after the item
 * (small models that have not learned to answer with a number), so every item is answered.
 */
export async function attitudeScale(cm: ChatModel, file: string, o: { samples: number; chat: boolean; mode: 'generate' | 'loglik' }) {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such scale file`);
  const scale = loadScale(file);
  const model = new LlamaEvalModel(cm, { chat: o.chat });
  let r: Pick<ScaleResult, 'subscales' | 'total'> & { parse_failure_rate: number };
  if (o.mode === 'generate') r = await evaluateScale(model, scale, { n: o.samples, temperature: o.samples > 1 ? 0.7 : 0 });
  else {
    const choices = new Map<string, (number | null)[]>();
    for (const it of scale.items) {
      const scores = await model.scoreContinuations(buildScalePrompt(scale, it.text), scale.options.map((op) => op.text));
      const norm = scores.map((x, i) => x / Math.max(1, [...scale.options[i].text].length));
      choices.set(it.id, [norm.indexOf(Math.max(...norm))]);
    }
    r = { ...scoreScale(scale, choices), parse_failure_rate: 0 };
  }
  return {
    total: r.total.score, total_range: `${r.total.min}-${r.total.max}`, parse_failure_rate: r.parse_failure_rate,
    ...Object.fromEntries(r.subscales.map((x) => [x.name, x.score])),
  };
}
