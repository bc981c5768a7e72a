import type { FloatArray } from '../engine/kernels.js';
import { Rng } from '../engine/rng.js';
import { Context } from '../engine/tensor.js';
import type { LoraAdapter } from '../model/lora.js';
import type { Llama, TokenBatch } from '../model/llama.js';
import type { ChatMessage, ChatTemplate, TemplateTokenizer } from '../tokenizer/chat-template.js';
import { DataError } from '../data/errors.js';
import { lmLossStep, lossMetrics, nllSum } from './lm-loss.js';
import { EpochSampler } from './sampler.js';
import type { MicroResult, RowRange, TrainTask } from './trainer.js';

export interface SftExample {
  ids: number[];
  /** Target id per position of `ids` (the token itself where trained, -100 elsewhere). */
  labels: number[];
}

export interface SftEncodeOptions {
  /** Qilin-Med: 256 / 256. The prompt keeps its end, the answer its start. */
  maxSource: number;
  maxTarget: number;
  trainOnPrompt: boolean;
}

export interface SftEncodeStats {
  examples: number;
  truncated: number;
  droppedHistoryTurns: number;
  skippedNoTarget: number;
}

/**
 * Encodes conversations with the chat template. Over-long ones first lose their oldest
 * turns, then the final prompt is cut from the left to maxSource tokens and the final answer
 * from the right to maxTarget; every cut is counted and reported.
 */
export function encodeSft(
  convs: ChatMessage[][],
  tok: TemplateTokenizer,
  template: ChatTemplate,
  o: SftEncodeOptions,
): { examples: SftExample[]; stats: SftEncodeStats } {
  const stats: SftEncodeStats = { examples: 0, truncated: 0, droppedHistoryTurns: 0, skippedNoTarget: 0 };
  const limit = o.maxSource + o.maxTarget;
  const examples: SftExample[] = [];
  for (const conv of convs) {
    let msgs = conv;
    let ex = template.encodeConversation(tok, msgs, o.trainOnPrompt);
    // drop the oldest user/assistant pair (keeping a system message) while too long
    while (ex.ids.length > limit && countTurns(msgs) > 1) {
      const sys = msgs[0].role === 'system' ? 1 : 0;
      msgs = [...msgs.slice(0, sys), ...msgs.slice(sys + 2)];
      stats.droppedHistoryTurns++;
      ex = template.encodeConversation(tok, msgs, o.trainOnPrompt);
    }
    if (ex.ids.length > limit && ex.spans.length) {
      const split = ex.spans[ex.spans.length - 1][0];
      const src = Math.max(0, split - o.maxSource),
        end = Math.min(ex.ids.length, split + o.maxTarget);
      ex = { ids: ex.ids.slice(src, end), labels: ex.labels.slice(src, end), spans: [] };
      stats.truncated++;
    }
    if (!ex.labels.some((l, i) => i > 0 && l >= 0)) {
      stats.skippedNoTarget++;
      continue;
    }
    examples.push(ex);
  }
  stats.examples = examples.length;
  return { examples, stats };
}

function countTurns(msgs: ChatMessage[]): number {
  return msgs.filter((m) => m.role === 'assistant').length;
}

/** Right-pads examples into a [B, T] batch; targets are labels shifted left by one. */
export function collate(examples: SftExample[]): { batch: TokenBatch; targets: Int32Array } {
  const B = examples.length;
  const T = Math.max(...examples.map((e) => e.ids.length - 1));
  const ids = new Int32Array(B * T),
    targets = new Int32Array(B * T).fill(-100),
    pos = new Int32Array(B * T);
  examples.forEach((e, b) => {
    for (let t = 0; t < T; t++) {
      pos[b * T + t] = t;
      if (t < e.ids.length - 1) {
        ids[b * T + t] = e.ids[t];
        targets[b * T + t] = e.labels[t + 1];
      }
    }
  });
  return { batch: { ids, pos, B, T }, targets };
}

/** Supervised fine-tuning on chat-formatted conversations; full or through a LoRA adapter. */
export class SftTask<F extends FloatArray> implements TrainTask<F> {
  private sampler: EpochSampler;

  constructor(
    readonly model: Llama<F>,
    readonly train: SftExample[],
    readonly heldout: SftExample[],
    readonly opts: { batchSize: number; recompute: boolean; seed: number },
    readonly adapter: LoraAdapter<F> | null,
    readonly saveWeights: (dir: string) => Promise<void>,
  ) {
    if (!train.length) throw new DataError('SFT: no training conversations left after encoding');
    this.sampler = new EpochSampler(train.length, opts.seed);
  }

  get params() {
    return this.adapter ? this.adapter.params : this.model.params;
  }

  get batchSize() {
    return this.opts.batchSize;
  }

  microStep(ctx: Context<F>, index: number, gradScale: number, rows?: RowRange): MicroResult {
    const B = this.opts.batchSize;
    const exs = Array.from({ length: B }, (_, b) => this.train[this.sampler.at(index * B + b)]);
    if (this.adapter) this.adapter.stepSeed = Rng.derive(this.opts.seed, index).nextU32();
    const { batch, targets } = collate(exs);
    return lmLossStep(ctx, this.model, batch, targets, gradScale, this.opts.recompute, rows);
  }

  /** Held-out loss / perplexity on the answer tokens. */
  evaluate(ctx: Context<F>): Record<string, number> {
    let sum = 0,
      tokens = 0;
    for (let i = 0; i < this.heldout.length; i += this.opts.batchSize) {
      const { batch, targets } = collate(this.heldout.slice(i, i + this.opts.batchSize));
      const r = nllSum(ctx, this.model, batch, targets);
      sum += r.sum;
      tokens += r.tokens;
    }
    return lossMetrics(sum, tokens);
  }
}
