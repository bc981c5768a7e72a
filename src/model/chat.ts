import type { FloatArray } from '../engine/kernels.js';
import type { ChatMessage, ChatTemplate } from '../tokenizer/chat-template.js';
import { generate, generateAsync, type Generation, type GenerateOptions } from './generate.js';
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
  model: Llama<F>,
  tok: ChatTokenizer,
  template: ChatTemplate,
  convs: ChatMessage[][],
  opts: ReplyOptions,
): Generation[][] {
  const bs = Math.max(1, opts.batchSize ?? 8);
  const out: Generation[][] = [];
  for (let i = 0; i < convs.length; i += bs) out.push(...generate(model, ...replyRequest(tok, template, convs.slice(i, i + bs), opts, i)));
  return out;
}

/** One batch of replies, yielding to the event loop between tokens (the server's path). */
export function generateRepliesAsync<F extends FloatArray>(
  model: Llama<F>,
  tok: ChatTokenizer,
  template: ChatTemplate,
  convs: ChatMessage[][],
  opts: ReplyOptions & { signal?: AbortSignal },
): Promise<Generation[][]> {
  const [prompts, o] = replyRequest(tok, template, convs, opts, 0);
  return generateAsync(model, prompts, { ...o, signal: opts.signal });
}

function replyRequest(
  tok: ChatTokenizer,
  template: ChatTemplate,
  convs: ChatMessage[][],
  opts: ReplyOptions,
  offset: number,
): [number[][], GenerateOptions] {
  const stop = [...(opts.stop ?? []), ...template.stop.filter((s) => tok.tokenToId(s) === undefined)];
  return [
    convs.map((c) => template.encodePrompt(tok, c)),
    {
      ...opts,
      eosIds: template.stopIds(tok),
      stop,
      seed: (opts.seed ?? 0) + offset,
      decode: (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true }),
    },
  ];
}
