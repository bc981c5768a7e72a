import type { FloatArray } from '../engine/kernels.js';
import type { ChatMessage, ChatTemplate } from '../tokenizer/chat-template.js';
import { generate, type Generation, type GenerateOptions } from './generate.js';
import type { Llama } from './llama.js';

/** What replying needs of a tokenizer. */
export interface ChatTokenizer {
  encode(text: string): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
  readonly eosToken?: string | null;
  readonly bosToken?: string | null;
}

export type ReplyOptions = Omit<GenerateOptions, 'eosIds' | 'decode'> & { batchSize?: number };

/**
 * Assistant replies to conversations: the one place where inference renders the chat
 * template, stops on the template's end-of-turn tokens and decodes, shared by chat, the
 * server, evaluation and rejection sampling.
 */
export function generateReplies<F extends FloatArray>(
  model: Llama<F>, tok: ChatTokenizer, template: ChatTemplate, convs: ChatMessage[][], opts: ReplyOptions,
): Generation[][] {
  const eosIds = template.stopIds(tok);
  const decode = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true });
  const stop = [...(opts.stop ?? []), ...template.stop.filter((s) => tok.tokenToId(s) === undefined)];
  const bs = Math.max(1, opts.batchSize ?? 8);
  const out: Generation[][] = [];
  for (let i = 0; i < convs.length; i += bs) {
    const prompts = convs.slice(i, i + bs).map((c) => template.encodePrompt(tok, c));
    out.push(...generate(model, prompts, { ...opts, eosIds, decode, stop, seed: (opts.seed ?? 0) + i }));
  }
  return out;
}
