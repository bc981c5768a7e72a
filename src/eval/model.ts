import { Context } from '../engine/tensor.js';
import { generateReplies } from '../model/chat.js';
import { generate } from '../model/generate.js';
import type { ChatModel } from '../model/load.js';
import { sequentialPositions } from '../model/llama.js';
import { collateResponses } from '../train/preference.js';
import type { EvalModel, GenerateOptions } from './lm.js';

export interface LlamaEvalOptions {
  /** Wrap each prompt as a user turn of the chat template (fine-tuned models); raw text otherwise. */
  chat: boolean;
  batchSize?: number;
}

/**
 * Our model behind the evaluation interface. Continuations that are one token each (option
 * letters) are scored from a single forward pass over the shared prompt; longer ones as one
 * padded batch of prompt + continuation rows.
 */
export class LlamaEvalModel implements EvalModel {
  constructor(
    readonly cm: ChatModel,
    readonly opts: LlamaEvalOptions,
  ) {}

  private promptIds(prompt: string): number[] {
    const { tokenizer, template } = this.cm;
    return this.opts.chat ? template.encodePrompt(tokenizer, [{ role: 'user', content: prompt }]) : tokenizer.encode(prompt);
  }

  async scoreContinuations(prompt: string, continuations: string[]): Promise<number[]> {
    const { model, tokenizer } = this.cm;
    const p = this.promptIds(prompt);
    const conts = continuations.map((c) => tokenizer.encode(c));
    const ctx = new Context(model.k, undefined, false);
    try {
      if (conts.every((c) => c.length === 1)) {
        const T = p.length;
        const h = model.hidden(ctx, { ids: Int32Array.from(p), pos: sequentialPositions(1, T), B: 1, T });
        const last = ctx.tensor([1, model.config.hidden_size], false);
        last.data.set(h.data.subarray((T - 1) * model.config.hidden_size));
        const logits = model.logits(ctx, last);
        let max = -Infinity,
          sum = 0;
        for (const v of logits) max = Math.max(max, v);
        for (const v of logits) sum += Math.exp(v - max);
        const lse = max + Math.log(sum);
        return conts.map((c) => logits[c[0]] - lse);
      }
      const rows = conts.map((c) => ({ ids: [...p, ...c], start: p.length, end: p.length + c.length }));
      const { batch, targets, segment } = collateResponses(rows);
      const logp = model.logprobs(ctx, batch, targets);
      const out = new Array<number>(rows.length).fill(0);
      for (let i = 0; i < segment.length; i++) if (segment[i] >= 0) out[segment[i]] += logp.data[i];
      return out;
    } finally {
      ctx.reset();
    }
  }

  async generate(prompts: string[], o: GenerateOptions): Promise<string[][]> {
    const { model, tokenizer, template } = this.cm;
    const s = { maxNewTokens: o.maxNewTokens, temperature: o.temperature ?? 0, topP: o.topP, n: o.n ?? 1, seed: o.seed ?? 0, stop: o.stop };
    const gens = this.opts.chat
      ? generateReplies(
          model,
          tokenizer,
          template,
          prompts.map((p) => [{ role: 'user' as const, content: p }]),
          { ...s, batchSize: this.opts.batchSize },
        )
      : generate(
          model,
          prompts.map((p) => tokenizer.encode(p)),
          { ...s, eosIds: [tokenizer.eosId], decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: true }) },
        );
    return gens.map((g) => g.map((x) => x.text ?? ''));
  }
}
