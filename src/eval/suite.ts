import fs from 'node:fs';
import path from 'node:path';
import type { NerExample } from '../data/records.js';
import { splitItems, splitItemsAsync } from '../engine/dist.js';
import { Context } from '../engine/tensor.js';
import { generateReplies } from '../model/chat.js';
import type { ChatModel } from '../model/load.js';
import type { RewardModel } from '../model/reward.js';
import { messagesOf, preferenceOf, readDocuments, readJsonl } from '../data/stage-files.js';
import { nllSum } from '../train/lm-loss.js';
import { collatePairs, encodeResponse } from '../train/preference.js';
import { scoreAnswers } from '../train/rejection.js';
import { sequentialPositions } from '../model/llama.js';
import {
  checkUniqueIds,
  genItems,
  mcqItems,
  nerItems,
  type Conversation,
  type GenEvalItem,
  type McqEvalItem,
  type NerEvalItem,
  type PairEvalItem,
  type PplEvalItem,
  type RewardEvalItem,
  type ScaleEvalItem,
} from './items.js';
import { evaluateMcq, type McqMode } from './mcq.js';
import { evaluateNer } from './ner.js';
import { LlamaEvalModel } from './model.js';
import { readMcqFile } from './read.js';
import { buildScalePrompt, evaluateScale, loadScale, scoreScale, type ScaleResult } from './scale.js';

/** Held-out perplexity: documents joined with EOS, cut into blocks, mean token NLL; `items` per block. */
export async function perplexity(
  cm: ChatModel,
  files: string[],
  blockSize = 256,
  maxBlocks = 64,
): Promise<{ ppl: number; loss: number; tokens: number; items: PplEvalItem[] }> {
  const { model, tokenizer } = cm;
  const T = Math.min(blockSize, model.config.max_position_embeddings - 1);
  const ids: number[] = [];
  for await (const doc of readDocuments(files)) {
    ids.push(...tokenizer.encode(doc), tokenizer.eosId);
    if (ids.length > maxBlocks * T + 1) break;
  }
  const ctx = new Context(model.k, undefined, false);
  const starts: number[] = [];
  for (let s = 0; s + T + 1 <= ids.length && s / T < maxBlocks; s += T) starts.push(s);
  const items = splitItems(starts, (mine) =>
    mine.map((s): PplEvalItem => {
      const r = nllSum(
        ctx,
        model,
        { ids: Int32Array.from(ids.slice(s, s + T)), pos: sequentialPositions(1, T), B: 1, T },
        Int32Array.from(ids.slice(s + 1, s + T + 1)),
      );
      return { eval: 'ppl', id: `block-${s / T}`, nll: r.sum, tokens: r.tokens };
    }),
  );
  const sum = items.reduce((a, b) => a + b.nll, 0),
    tokens = items.reduce((a, b) => a + b.tokens, 0);
  if (!tokens) throw new Error(`${files.join(', ')}: fewer than ${T + 1} tokens of held-out text`);
  return { ppl: Math.exp(sum / tokens), loss: sum / tokens, tokens, items };
}

export async function mcqEvalItems(
  cm: ChatModel,
  testFile: string,
  devFile: string | null,
  o: { k: number; mode: McqMode; chat: boolean; limit?: number },
): Promise<McqEvalItem[]> {
  const items = (await readMcqFile(testFile)).slice(0, o.limit);
  checkUniqueIds(items, testFile);
  const dev = devFile ? await readMcqFile(devFile) : [];
  const model = new LlamaEvalModel(cm, { chat: o.chat });
  return splitItemsAsync(items, async (mine) =>
    mcqItems(mine, (await evaluateMcq(model, mine, dev, { k: dev.length ? o.k : 0, mode: o.mode })).predictions),
  );
}

/** A JSONL record's id: its own, or FILE_NAME-LINE for one without, as the data importer keys records. */
function recordId(rec: Record<string, unknown>, where: string): string {
  if (typeof rec.id === 'string' && rec.id.trim()) return rec.id;
  if (typeof rec.id === 'number') return String(rec.id);
  const at = where.lastIndexOf(':');
  return `${path.basename(where.slice(0, at)).replace(/\.[^.]*$/, '')}-${where.slice(at + 1)}`;
}

/** The first `limit` conversations of a file that end with an assistant turn. */
export async function readConversations(file: string, limit = Infinity): Promise<Conversation[]> {
  const out: Conversation[] = [];
  for (const { rec, where } of await readJsonl(file)) {
    const msgs = messagesOf(rec, where);
    if (msgs.at(-1)?.role !== 'assistant') continue;
    out.push({ id: recordId(rec, where), prompt: msgs.slice(0, -1), reference: msgs.at(-1)!.content });
    if (out.length >= limit) break;
  }
  checkUniqueIds(out, file);
  return out;
}

/** Greedy replies to held-out conversations, with what each contributes to BLEU-1..4 and ROUGE-1/2/L (character level). */
export function generationItems(cm: ChatModel, convs: Conversation[], o: { maxNewTokens: number }): GenEvalItem[] {
  return splitItems(convs, (mine) => {
    const replies = generateReplies(
      cm.model,
      cm.tokenizer,
      cm.template,
      mine.map((c) => c.prompt),
      { maxNewTokens: o.maxNewTokens, batchSize: 8 },
    );
    return genItems(
      mine,
      replies.map((r) => r[0].text ?? ''),
    );
  });
}

/** Few-shot NER by generation (evaluateNer), one item per example with its strict span counts. */
export async function nerEvalItems(
  cm: ChatModel,
  examples: NerExample[],
  shots: NerExample[],
  o: { k: number; chat: boolean; maxNewTokens: number },
): Promise<NerEvalItem[]> {
  const model = new LlamaEvalModel(cm, { chat: o.chat });
  return splitItemsAsync(examples, async (mine) =>
    nerItems(mine, await evaluateNer(model, mine, shots, { k: o.k, maxNewTokens: o.maxNewTokens })),
  );
}

async function preferencePairs(file: string, limit: number) {
  const pairs = (await readJsonl(file)).slice(0, limit).map(({ rec, where }) => ({
    ...preferenceOf(rec, where),
    id: recordId(rec, where),
    kind: typeof rec.rejected_kind === 'string' ? rec.rejected_kind : 'all',
  }));
  checkUniqueIds(pairs, file);
  return pairs;
}

/**
 * Whether the policy gives the chosen answer a higher log-probability than the rejected one,
 * per held-out pair, with the rejected kind (wrong fact, unsafe, evasive) when the data says.
 */
export async function preferenceItems(cm: ChatModel, file: string, limit = 200): Promise<PairEvalItem[]> {
  const pairs = (await preferencePairs(file, limit)).map((p) => ({
    ...p,
    chosen: encodeResponse(cm.tokenizer, cm.template, p.prompt, p.chosen, 256, 256),
    rejected: encodeResponse(cm.tokenizer, cm.template, p.prompt, p.rejected, 256, 256),
  }));
  const ctx = new Context(cm.model.k, undefined, false);
  return splitItems(pairs, (mine) => {
    const out: PairEvalItem[] = [];
    for (let i = 0; i < mine.length; i += 8) {
      const chunk = mine.slice(i, i + 8);
      const { batch, targets, segment } = collatePairs(chunk);
      const logp = cm.model.logprobs(ctx, batch, targets);
      const sums = new Float64Array(2 * chunk.length);
      for (let t = 0; t < segment.length; t++) if (segment[t] >= 0) sums[segment[t]] += logp.data[t];
      chunk.forEach((p, j) => out.push({ eval: 'pref', id: p.id, kind: p.kind, win: sums[j] > sums[chunk.length + j] ? 1 : 0 }));
      ctx.reset();
    }
    return out;
  });
}

/** Whether the reward model scores the chosen answer above the rejected one, per held-out pair. */
export async function rewardModelItems(rm: RewardModel<Float32Array>, cm: ChatModel, file: string, limit = 200): Promise<PairEvalItem[]> {
  const pairs = await preferencePairs(file, limit);
  const o = { maxSource: 256, maxTarget: 256, batchSize: 8 };
  return splitItems(pairs, (mine) => {
    const score = (side: 'chosen' | 'rejected') =>
      scoreAnswers(
        rm,
        cm.tokenizer,
        cm.template,
        mine.map((p) => ({ prompt: p.prompt, answer: p[side] })),
        o,
      );
    const [chosen, rejected] = [score('chosen'), score('rejected')];
    return mine.map((p, i): PairEvalItem => ({ eval: 'rm', id: p.id, kind: p.kind, win: chosen[i] > rejected[i] ? 1 : 0 }));
  });
}

/** The reward model's score of each greedy reply already generated for the gen items. */
export function rewardItems(rm: RewardModel<Float32Array>, cm: ChatModel, gens: GenEvalItem[]): RewardEvalItem[] {
  return splitItems(gens, (mine) => {
    const r = scoreAnswers(
      rm,
      cm.tokenizer,
      cm.template,
      mine.map((g) => ({ prompt: g.prompt, answer: g.output })),
      { maxSource: 256, maxTarget: 256, batchSize: 8 },
    );
    return mine.map((g, i): RewardEvalItem => ({ eval: 'reward', id: g.id, reward: r[i] }));
  });
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
  let r: Pick<ScaleResult, 'items' | 'subscales' | 'total'> & { parse_failure_rate: number };
  if (o.mode === 'generate') r = await evaluateScale(model, scale, { n: o.samples, temperature: o.samples > 1 ? 0.7 : 0 });
  else {
    const choices = new Map<string, (number | null)[]>();
    for (const it of scale.items) {
      const scores = await model.scoreContinuations(
        buildScalePrompt(scale, it.text),
        scale.options.map((op) => op.text),
      );
      const norm = scores.map((x, i) => x / Math.max(1, [...scale.options[i].text].length));
      choices.set(it.id, [norm.indexOf(Math.max(...norm))]);
    }
    r = { ...scoreScale(scale, choices), parse_failure_rate: 0 };
  }
  return {
    total: r.total.score,
    total_range: `${r.total.min}-${r.total.max}`,
    parse_failure_rate: r.parse_failure_rate,
    subscales: Object.fromEntries(r.subscales.map((x) => [x.name, x.score])),
    items: r.items.map((it): ScaleEvalItem => ({ eval: 'scale', id: it.id, score: it.total_score })),
  };
}
