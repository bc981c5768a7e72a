// The OpenAI wire format: request JSON Schemas (validated by Fastify's Ajv before a handler
// runs), the error shape every 4xx/5xx uses, and the response / stream-chunk objects.
// Field names and defaults follow the OpenAI API reference so the official clients work
// unchanged; `top_k`, `repetition_penalty` and `ignore_eos` are vLLM's extensions.
import { randomBytes } from 'node:crypto';
import type { ChatMessage } from '../tokenizer/chat-template.js';

export type ErrorType =
  'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error' | 'service_unavailable';

/** An error the API answers with `{error: {message, type, param, code}}` and an HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  body() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const nullable = <T extends object>(s: T) => ({ anyOf: [s, { type: 'null' }] });
const stopSchema = nullable({
  anyOf: [
    { type: 'string', minLength: 1 },
    { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 4 },
  ],
});

/** Sampling fields shared by both endpoints. */
const samplingProps = {
  model: { type: 'string', minLength: 1 },
  stream: nullable({ type: 'boolean' }),
  stream_options: nullable({ type: 'object', properties: { include_usage: { type: 'boolean' } } }),
  n: nullable({ type: 'integer', minimum: 1, maximum: 16 }),
  temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
  top_p: nullable({ type: 'number', minimum: 0, maximum: 1 }),
  top_k: nullable({ type: 'integer', minimum: -1 }),
  repetition_penalty: nullable({ type: 'number', exclusiveMinimum: 0 }),
  max_tokens: nullable({ type: 'integer', minimum: 1 }),
  stop: stopSchema,
  seed: nullable({ type: 'integer' }),
  user: { type: 'string' },
} as const;

const textPart = { type: 'object', required: ['type', 'text'], properties: { type: { const: 'text' }, text: { type: 'string' } } } as const;

export const chatCompletionSchema = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...samplingProps,
    max_completion_tokens: nullable({ type: 'integer', minimum: 1 }),
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant'] },
          content: { anyOf: [{ type: 'string' }, { type: 'array', items: textPart }] },
          name: { type: 'string' },
        },
      },
    },
  },
} as const;

export const completionSchema = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...samplingProps,
    prompt: { anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, maxItems: 16, items: { type: 'string' } }] },
    echo: nullable({ type: 'boolean' }),
    ignore_eos: nullable({ type: 'boolean' }),
  },
} as const;

interface SamplingRequest {
  model: string;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  n?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  repetition_penalty?: number | null;
  max_tokens?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  // fields we do not implement: refused rather than silently ignored
  logprobs?: unknown;
  tools?: unknown;
  suffix?: unknown;
  best_of?: unknown;
  functions?: unknown;
  logit_bias?: unknown;
  response_format?: unknown;
}

export interface ChatCompletionRequest extends SamplingRequest {
  messages: { role: 'system' | 'developer' | 'user' | 'assistant'; content: string | { type: 'text'; text: string }[] }[];
  max_completion_tokens?: number | null;
}

export interface CompletionRequest extends SamplingRequest {
  prompt: string | string[];
  echo?: boolean | null;
  ignore_eos?: boolean | null;
}

/** Refuses the request fields whose meaning we cannot honour. */
export function refuseUnsupported(req: SamplingRequest): void {
  const set = (v: unknown) => v !== undefined && v !== null && v !== false && v !== 0 && !(Array.isArray(v) && v.length === 0);
  if (set(req.logprobs)) throw new ApiError(400, 'logprobs are not supported by this server', 'invalid_request_error', 'logprobs');
  if (set(req.tools))
    throw new ApiError(400, 'tools (function calling) are not supported by this server', 'invalid_request_error', 'tools');
  if (set(req.suffix)) throw new ApiError(400, 'suffix (insertion) is not supported by this server', 'invalid_request_error', 'suffix');
  if (typeof req.best_of === 'number' && req.best_of > 1)
    throw new ApiError(400, 'best_of is not supported by this server', 'invalid_request_error', 'best_of');
  if (set(req.functions))
    throw new ApiError(400, 'functions (function calling) are not supported by this server', 'invalid_request_error', 'functions');
  const bias = req.logit_bias;
  if (bias !== undefined && bias !== null && !(typeof bias === 'object' && !Array.isArray(bias) && Object.keys(bias).length === 0)) {
    throw new ApiError(400, 'logit_bias is not supported by this server', 'invalid_request_error', 'logit_bias');
  }
  // JSON mode / structured output would be a promise the sampler does not keep
  const format = req.response_format as { type?: unknown } | null | undefined;
  if (format !== undefined && format !== null && format.type !== 'text') {
    throw new ApiError(
      400,
      `response_format ${JSON.stringify(format).slice(0, 80)} is not supported by this server (only {"type": "text"})`,
      'invalid_request_error',
      'response_format',
    );
  }
}

/**
 * OpenAI messages as chat-template messages. Content may not contain the tokenizer's special
 * tokens (`reserved`): the rendered prompt is tokenised as a whole, so a user typing
 * <|im_end|> would otherwise end their turn and write the assistant's.
 */
export function toChatMessages(messages: ChatCompletionRequest['messages'], reserved: readonly string[] = []): ChatMessage[] {
  const out = messages.map((m) => ({
    role: m.role === 'developer' ? ('system' as const) : m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
  }));
  out.forEach((m, i) => {
    const hit = reserved.find((t) => m.content.includes(t));
    if (hit)
      throw new ApiError(
        400,
        `messages[${i}].content contains the reserved token ${hit}`,
        'invalid_request_error',
        `messages[${i}].content`,
      );
  });
  if (out.at(-1)!.role === 'assistant')
    throw new ApiError(400, 'the last message must be from the user (or system), not the assistant', 'invalid_request_error', 'messages');
  return out;
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  return stop == null ? [] : typeof stop === 'string' ? [stop] : stop;
}

export type FinishReason = 'stop' | 'length';

/** Our generator's reasons in OpenAI's words: the end-of-turn token and a stop string are both 'stop'. */
export function finishReason(r: 'eos' | 'stop' | 'length'): FinishReason {
  return r === 'length' ? 'length' : 'stop';
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(prompt: number, completion: number): Usage {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function responseId(prefix: 'chatcmpl' | 'cmpl'): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

export const unixTime = () => Math.floor(Date.now() / 1000);

/** The envelope every object of one response shares (chunks of a stream repeat it). */
export interface Envelope {
  id: string;
  created: number;
  model: string;
}

/** OpenAI's key order: id, object, created, model. */
function head(env: Envelope, object: string) {
  return { id: env.id, object, created: env.created, model: env.model, system_fingerprint: null };
}

export function chatCompletion(env: Envelope, texts: { text: string; finish: FinishReason }[], u: Usage) {
  return {
    ...head(env, 'chat.completion'),
    choices: texts.map((c, index) => ({ index, message: { role: 'assistant', content: c.text }, logprobs: null, finish_reason: c.finish })),
    usage: u,
  };
}

export function chatChunk(
  env: Envelope,
  index: number,
  delta: { role?: 'assistant'; content?: string },
  finish: FinishReason | null,
  withUsage: boolean,
) {
  return {
    ...head(env, 'chat.completion.chunk'),
    choices: [{ index, delta, logprobs: null, finish_reason: finish }],
    ...(withUsage ? { usage: null } : {}),
  };
}

export function textCompletion(env: Envelope, texts: { text: string; finish: FinishReason }[], u: Usage) {
  return {
    ...head(env, 'text_completion'),
    choices: texts.map((c, index) => ({ index, text: c.text, logprobs: null, finish_reason: c.finish })),
    usage: u,
  };
}

export function textChunk(env: Envelope, index: number, text: string, finish: FinishReason | null, withUsage: boolean) {
  return {
    ...head(env, 'text_completion'),
    choices: [{ index, text, logprobs: null, finish_reason: finish }],
    ...(withUsage ? { usage: null } : {}),
  };
}

/** The last chunk of a stream asked for `stream_options.include_usage`: no choices, the totals. */
export function usageChunk(env: Envelope, object: 'chat.completion.chunk' | 'text_completion', u: Usage) {
  return { ...head(env, object), choices: [], usage: u };
}

export function modelObject(id: string, created: number) {
  return { id, object: 'model', created, owned_by: 'chimed' };
}

/** `instancePath` of an Ajv error as OpenAI's `param` ('/messages/0/role' -> 'messages[0].role'). */
export function paramOf(instancePath: string, missing?: string): string | null {
  const parts = instancePath.split('/').filter(Boolean);
  if (missing) parts.push(missing);
  if (!parts.length) return null;
  return parts.reduce((s, p) => (/^\d+$/.test(p) ? `${s}[${p}]` : s ? `${s}.${p}` : p), '');
}
