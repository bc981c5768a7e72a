// The HTTP server: OpenAI-compatible endpoints, the web UI's files and the annotation API on
// Fastify (schema validation, body limits and content-type parsing come from the framework;
// every error leaves in OpenAI's shape).
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { generateRepliesAsync } from '../model/chat.js';
import { generateAsync, type Generation } from '../model/generate.js';
import { AppendError } from '../io/append-jsonl.js';
import type { ChatModel } from '../model/load.js';
import { allowedHostSet, checkHost, checkKey, normaliseTarget, routerUrl, type RequestTarget } from './access.js';
import { Annotator, sampleDistinct, VerdictError } from './annotate.js';
import {
  ApiError,
  chatChunk,
  chatCompletion,
  chatCompletionSchema,
  completionSchema,
  finishReason,
  modelObject,
  paramOf,
  refuseUnsupported,
  responseId,
  stopList,
  textChunk,
  textCompletion,
  toChatMessages,
  unixTime,
  usage,
  usageChunk,
  type ChatCompletionRequest,
  type CompletionRequest,
  type Envelope,
  type FinishReason,
  type Usage,
} from './openai.js';
import { QueueClosedError, QueueFullError, RequestQueue } from './queue.js';
import { SseWriter, TextDelta } from './stream.js';

export interface ServeOptions {
  chat: ChatModel;
  /** The id clients put in `model` (default "chimed"). */
  modelName?: string;
  /** When set, every route but /health, the UI files and /ui/config needs `Authorization: Bearer KEY`. */
  apiKey?: string;
  /**
   * Without a key, requests must name this machine (localhost, 127.0.0.1, ::1) or one of
   * these hosts in their Host header (DNS-rebinding defence). Ignored when a key is set.
   */
  allowedHosts?: string[];
  /** Generations running at once (default 1: the CPU model runs one batch at a time). */
  concurrency?: number;
  /** Requests waiting for a slot before new ones get 429 (default 16). */
  queueSize?: number;
  /** Most completion tokens one request may ask for (default 1024). */
  maxTokensLimit?: number;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimit?: number;
  /** Enables the preference-annotation API and tab. */
  annotator?: Annotator;
  /** How annotation replies are sampled. */
  annotate?: Partial<AnnotateSampling>;
  logLevel?: 'silent' | 'error' | 'warn' | 'info' | 'debug';
}

export interface AnnotateSampling {
  /** Replies per prompt (default 2). */
  k: number;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  /** Makes the draws reproducible (default: a random seed per draw). */
  seed?: number;
}

type Settings = Required<Omit<ServeOptions, 'apiKey' | 'allowedHosts' | 'annotator' | 'annotate' | 'logLevel'>> &
  Pick<ServeOptions, 'apiKey' | 'annotator'> & { annotate: AnnotateSampling };

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Served without the API key (the UI files, /health, /ui/config); every other route needs it. */
    public?: boolean;
  }
}
const PUBLIC = { config: { public: true } };

/** Most generated rows (prompts x n) in one request: the KV cache grows with each. */
const MAX_ROWS = 16;

/** The chunks of one streamed response, per choice (row). */
interface StreamChunks {
  object: 'chat.completion.chunk' | 'text_completion';
  /** Sent for every choice before any text (chat: the assistant role). */
  opening?: (row: number) => unknown;
  text: (row: number, text: string) => unknown;
  finish: (row: number, reason: FinishReason) => unknown;
}

interface Job {
  stream: boolean;
  chunks: StreamChunks;
  includeUsage: boolean;
  promptTokens: number;
  rows: number;
  /** Holds back stop-string prefixes while streaming. */
  stops: string[];
  /** Text each choice starts with (`echo`). */
  prefix: (row: number) => string;
  run: (onToken: (row: number, id: number) => void, signal: AbortSignal) => Promise<Generation[][]>;
  answer: (texts: { text: string; finish: FinishReason }[], promptTokens: number, completionTokens: number) => unknown;
  /** The last chunk of a stream that asked for usage. */
  usage: (u: Usage) => unknown;
}

class ClientGone extends Error {}

const UI_FILES: Record<string, string> = { '/': 'index.html', '/app.js': 'app.js', '/style.css': 'style.css' };
const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** src/serve/ui next to this module when bundled, else in the source tree beside dist/. */
function uiDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dirs = [path.join(here, 'ui'), path.resolve(here, '../../../src/serve/ui')];
  const dir = dirs.find((d) => fs.existsSync(path.join(d, 'index.html')));
  if (!dir) throw new Error(`web UI files not found (looked in ${dirs.join(', ')})`);
  return dir;
}

/** State behind one server: the admission queue, running generations and counters. */
class ServerState {
  readonly queue: RequestQueue;
  readonly running = new Set<AbortController>();
  readonly created = unixTime();
  /** Annotation draws so far (each gets its own seed). */
  draws = 0;
  readonly totals = { requests: 0, completed: 0, rejected_busy: 0, client_disconnects: 0, prompt_tokens: 0, completion_tokens: 0 };

  constructor(readonly o: Settings) {
    this.queue = new RequestQueue(o.concurrency, o.queueSize);
  }
}

const states = new WeakMap<FastifyInstance, ServerState>();

/** The Fastify app with every route; `listen` it, or use `startServer`. */
export async function buildServer(opts: ServeOptions): Promise<FastifyInstance> {
  const o: Settings = {
    modelName: 'chimed',
    concurrency: 1,
    queueSize: 16,
    maxTokensLimit: 1024,
    bodyLimit: 1 << 20,
    ...opts,
    annotate: { k: 2, temperature: 1, topP: 1, maxNewTokens: 256, ...opts.annotate },
  };
  const state = new ServerState(o);
  const allowed = allowedHostSet(opts.allowedHosts);
  const targets = new WeakMap<IncomingMessage, RequestTarget>();
  const app = Fastify({
    bodyLimit: o.bodyLimit,
    // the router reads the normalised target, the checks below the route it chose
    rewriteUrl: (req) => {
      const t = normaliseTarget(req.url ?? '/');
      targets.set(req, t);
      return routerUrl(t);
    },
    logger: opts.logLevel && opts.logLevel !== 'silent' ? { level: opts.logLevel } : false,
    // types are checked, never coerced ("5" is not a number), and unknown fields are kept:
    // OpenAI clients send fields (user, stream_options, ...) that we may ignore
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false } },
  });
  states.set(app, state);
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = toApiError(err);
    if (e.status >= 500) req.log.error(err);
    if (!reply.sent) void reply.code(e.status).send(e.body());
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send(new ApiError(404, `no route ${req.method} ${targets.get(req.raw)?.path}`, 'not_found_error', null, 'not_found').body());
  });
  app.addHook('onRequest', async (req) => {
    const t = targets.get(req.raw)!;
    if (t.error) throw new ApiError(400, t.error, 'invalid_request_error', null, 'bad_request_target');
    if (!o.apiKey) checkHost(req.raw, t, allowed);
    else if (!req.routeOptions.config.public) checkKey(req.headers.authorization, o.apiKey);
  });
  app.addHook('onClose', async () => {
    await o.annotator?.close();
  });

  const ui = uiDir();
  for (const [route, file] of Object.entries(UI_FILES)) {
    const body = fs.readFileSync(path.join(ui, file));
    app.get(route, PUBLIC, (_req, reply) =>
      reply.header('content-type', MIME[path.extname(file)]).header('cache-control', 'no-cache').send(body),
    );
  }

  app.get('/health', PUBLIC, async () => ({ status: 'ok', model: o.modelName, queue: state.queue.stats, totals: state.totals }));
  app.get('/ui/config', PUBLIC, async () => ({
    model: o.modelName,
    auth: Boolean(o.apiKey),
    annotate: Boolean(o.annotator),
    k: o.annotate.k,
    max_tokens_limit: o.maxTokensLimit,
  }));
  app.get('/v1/models', async () => ({ object: 'list', data: [modelObject(o.modelName, state.created)] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (req) => {
    checkModel(req.params.id, o.modelName, 'id');
    return modelObject(o.modelName, state.created);
  });
  app.post<{ Body: ChatCompletionRequest }>('/v1/chat/completions', { schema: { body: chatCompletionSchema } }, (req, reply) =>
    execute(state, chatJob(state, req.body), reply),
  );
  app.post<{ Body: CompletionRequest }>('/v1/completions', { schema: { body: completionSchema } }, (req, reply) =>
    execute(state, completionJob(state, req.body), reply),
  );
  registerAnnotation(app, state);
  return app;
}

function checkModel(name: string, served: string, param = 'model'): void {
  if (name !== served)
    throw new ApiError(
      404,
      `The model \`${name}\` does not exist; this server serves \`${served}\`.`,
      'invalid_request_error',
      param,
      'model_not_found',
    );
}

function toApiError(err: FastifyError | Error): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof QueueFullError) return new ApiError(429, err.message, 'rate_limit_error', null, 'queue_full');
  if (err instanceof QueueClosedError) return new ApiError(503, err.message, 'service_unavailable', null, 'shutting_down');
  if (err instanceof ClientGone) return new ApiError(499, err.message);
  if (err instanceof VerdictError) return new ApiError(400, err.message);
  // a save that did not happen says why (disk full, file replaced): never a bare 500
  if (err instanceof AppendError) return new ApiError(err.status, err.message, 'server_error', null, err.code);
  const fe = err as FastifyError;
  if (fe.validation?.length) {
    const v = fe.validation[0];
    const missing = v.keyword === 'required' ? String((v.params as { missingProperty?: string }).missingProperty) : undefined;
    const param = paramOf(v.instancePath, missing);
    const where = fe.validationContext === 'body' ? '' : `${fe.validationContext} `;
    return new ApiError(
      400,
      missing ? `Missing required parameter: '${param}'.` : `Invalid value for ${where}'${param ?? '(root)'}': ${v.message}.`,
      'invalid_request_error',
      param,
    );
  }
  const status = fe.statusCode ?? 500;
  // Fastify's own 4xx: malformed JSON, body over the limit (413), wrong content type (415)
  if (status >= 400 && status < 500) return new ApiError(status, err.message, 'invalid_request_error', null, fe.code ?? null);
  return new ApiError(500, 'The server had an error while processing your request.', 'server_error');
}

function sampling(r: ChatCompletionRequest | CompletionRequest) {
  return {
    temperature: r.temperature ?? 1,
    topP: r.top_p ?? 1,
    topK: r.top_k && r.top_k > 0 ? r.top_k : undefined,
    repetitionPenalty: r.repetition_penalty ?? 1,
    n: r.n ?? 1,
    seed: r.seed ?? randomInt(2 ** 31),
  };
}

/**
 * Completion tokens for a request: what it asked for, checked against the server's limit and
 * the room the prompt leaves in the context window, else the room (capped by `fallback`).
 */
function completionBudget(
  state: ServerState,
  promptLens: number[],
  asked: number | null | undefined,
  fallback: number,
  param: string,
  promptParam: string,
): number {
  const ctx = state.o.chat.model.config.max_position_embeddings,
    longest = Math.max(...promptLens);
  const room = ctx - longest;
  if (room < 1) {
    throw new ApiError(
      400,
      `This model's maximum context length is ${ctx} tokens. However, your prompt is ${longest} tokens. Please reduce the length of the prompt.`,
      'invalid_request_error',
      promptParam,
      'context_length_exceeded',
    );
  }
  if (asked == null) return Math.min(fallback, room);
  if (asked > state.o.maxTokensLimit) {
    throw new ApiError(
      400,
      `${param} is too large: ${asked}. This server allows at most ${state.o.maxTokensLimit} completion tokens per request.`,
      'invalid_request_error',
      param,
      'max_tokens_exceeded',
    );
  }
  if (asked > room) {
    throw new ApiError(
      400,
      `This model's maximum context length is ${ctx} tokens. However, you requested ${longest + asked} tokens (${longest} in the prompt, ${asked} in the completion). Please reduce the prompt or the completion length.`,
      'invalid_request_error',
      param,
      'context_length_exceeded',
    );
  }
  return asked;
}

function envelope(state: ServerState, prefix: 'chatcmpl' | 'cmpl'): Envelope {
  return { id: responseId(prefix), created: unixTime(), model: state.o.modelName };
}

function chatJob(state: ServerState, r: ChatCompletionRequest): Job {
  checkModel(r.model, state.o.modelName);
  refuseUnsupported(r);
  const { model, tokenizer, template } = state.o.chat;
  const messages = toChatMessages(r.messages, tokenizer.specialTokens);
  let prompt: number[];
  try {
    prompt = template.encodePrompt(tokenizer, messages);
  } catch (e) {
    // custom Jinja templates may refuse some conversations (raise_exception)
    throw new ApiError(400, `the chat template cannot render these messages: ${(e as Error).message}`, 'invalid_request_error', 'messages');
  }
  const s = sampling(r);
  if (s.n > MAX_ROWS) throw new ApiError(400, `n may be at most ${MAX_ROWS}`, 'invalid_request_error', 'n');
  const maxNewTokens = completionBudget(
    state,
    [prompt.length],
    r.max_completion_tokens ?? r.max_tokens,
    state.o.maxTokensLimit,
    r.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens',
    'messages',
  );
  const stop = stopList(r.stop);
  const env = envelope(state, 'chatcmpl');
  const includeUsage = r.stream_options?.include_usage === true;
  return {
    stream: r.stream === true,
    includeUsage,
    chunks: {
      object: 'chat.completion.chunk',
      opening: (row) => chatChunk(env, row, { role: 'assistant', content: '' }, null, includeUsage),
      text: (row, text) => chatChunk(env, row, { content: text }, null, includeUsage),
      finish: (row, reason) => chatChunk(env, row, {}, reason, includeUsage),
    },
    usage: (u) => usageChunk(env, 'chat.completion.chunk', u),
    promptTokens: prompt.length,
    rows: s.n,
    stops: [...stop, ...template.stop],
    prefix: () => '',
    run: (onToken, signal) => generateRepliesAsync(model, tokenizer, template, [messages], { ...s, maxNewTokens, stop, onToken, signal }),
    answer: (texts, p, c) => chatCompletion(env, texts, usage(p, c)),
  };
}

function completionJob(state: ServerState, r: CompletionRequest): Job {
  checkModel(r.model, state.o.modelName);
  refuseUnsupported(r);
  const { model, tokenizer } = state.o.chat;
  const texts = typeof r.prompt === 'string' ? [r.prompt] : r.prompt;
  const prompts = texts.map((t) => tokenizer.encode(t));
  const empty = prompts.findIndex((p) => p.length === 0);
  if (empty >= 0) throw new ApiError(400, `prompt${texts.length > 1 ? `[${empty}]` : ''} is empty`, 'invalid_request_error', 'prompt');
  const s = sampling(r);
  if (s.n * prompts.length > MAX_ROWS)
    throw new ApiError(400, `prompts x n may be at most ${MAX_ROWS}, got ${prompts.length} x ${s.n}`, 'invalid_request_error', 'n');
  // OpenAI's default for the legacy completions endpoint is 16 tokens
  const maxNewTokens = completionBudget(
    state,
    prompts.map((p) => p.length),
    r.max_tokens,
    16,
    'max_tokens',
    'prompt',
  );
  const stop = stopList(r.stop);
  const env = envelope(state, 'cmpl');
  const decode = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
  const prefix = (row: number) => (r.echo ? texts[Math.floor(row / s.n)] : '');
  const includeUsage = r.stream_options?.include_usage === true;
  return {
    stream: r.stream === true,
    includeUsage,
    chunks: {
      object: 'text_completion',
      text: (row, text) => textChunk(env, row, text, null, includeUsage),
      finish: (row, reason) => textChunk(env, row, '', reason, includeUsage),
    },
    usage: (u) => usageChunk(env, 'text_completion', u),
    promptTokens: prompts.reduce((a, p) => a + p.length, 0),
    rows: prompts.length * s.n,
    stops: stop,
    prefix,
    run: (onToken, signal) =>
      generateAsync(model, prompts, { ...s, maxNewTokens, stop, decode, onToken, signal, eosIds: r.ignore_eos ? [] : [tokenizer.eosId] }),
    answer: (out, p, c) =>
      textCompletion(
        env,
        out.map((x, row) => ({ ...x, text: prefix(row) + x.text })),
        usage(p, c),
      ),
  };
}

/** Queues a job, runs it and answers, streamed or whole; a client that leaves ends it. */
async function execute(state: ServerState, job: Job, reply: FastifyReply): Promise<unknown> {
  state.totals.requests++;
  const ctl = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) ctl.abort(new ClientGone('client closed the connection'));
  };
  res.on('close', onClose);
  let release: () => void;
  try {
    release = await state.queue.acquire(ctl.signal);
  } catch (e) {
    if (e instanceof QueueFullError) state.totals.rejected_busy++;
    if (e instanceof ClientGone) state.totals.client_disconnects++;
    res.off('close', onClose);
    throw e;
  }
  state.running.add(ctl);
  const { chat } = state.o;
  const counted = (onToken?: (row: number, id: number) => void) => (row: number, id: number) => {
    state.totals.completion_tokens++;
    onToken?.(row, id);
  };
  try {
    state.totals.prompt_tokens += job.promptTokens;
    if (!job.stream) {
      const gens = (await job.run(counted(), ctl.signal)).flat();
      if (ctl.signal.reason instanceof ClientGone) {
        state.totals.client_disconnects++;
        return reply.code(499).send(new ApiError(499, 'client closed the connection').body());
      }
      state.totals.completed++;
      return reply.send(
        job.answer(
          gens.map((g) => ({ text: g.text ?? '', finish: finishReason(g.finishReason) })),
          job.promptTokens,
          completionTokens(gens),
        ),
      );
    }
    reply.hijack();
    const sse = new SseWriter(res);
    const { chunks } = job;
    const decode = (ids: number[]) => chat.tokenizer.decode(ids, { skipSpecialTokens: true });
    const deltas = Array.from({ length: job.rows }, (_, row) => new TextDelta(decode, job.stops, job.prefix(row)));
    if (chunks.opening) for (let row = 0; row < job.rows; row++) sse.send(chunks.opening(row));
    try {
      const gens = (
        await job.run(
          counted((row, id) => {
            const d = deltas[row].push(id);
            if (d) sse.send(chunks.text(row, d));
          }),
          ctl.signal,
        )
      ).flat();
      if (ctl.signal.reason instanceof ClientGone) {
        state.totals.client_disconnects++;
        res.destroy();
        return;
      }
      gens.forEach((g, row) => {
        const rest = deltas[row].finish(g.text ?? '');
        if (rest) sse.send(chunks.text(row, rest));
        sse.send(chunks.finish(row, finishReason(g.finishReason)));
      });
      if (job.includeUsage) sse.send(job.usage(usage(job.promptTokens, completionTokens(gens))));
      state.totals.completed++;
    } catch (e) {
      // the status line is gone already: the error travels as a stream event
      const err = toApiError(e as Error);
      if (err.status >= 500) reply.log.error(e);
      sse.send(err.body());
    }
    sse.end();
  } finally {
    release();
    state.running.delete(ctl);
    res.off('close', onClose);
  }
}

function completionTokens(gens: Generation[]): number {
  return gens.reduce((a, g) => a + g.ids.length, 0);
}

function registerAnnotation(app: FastifyInstance, state: ServerState): void {
  const need = (): Annotator => {
    if (!state.o.annotator)
      throw new ApiError(
        404,
        'annotation is not enabled: start the server with --annotate-prompts FILE --annotate-out FILE',
        'not_found_error',
      );
    return state.o.annotator;
  };
  const view = (a: Annotator, index: number | null) => ({
    prompt: index === null ? null : a.prompt(index),
    progress: a.progress(),
    k: state.o.annotate.k,
    out: path.basename(a.outFile),
  });

  app.get<{ Querystring: { after?: string } }>(
    '/annotate/next',
    {
      schema: { querystring: { type: 'object', properties: { after: { type: 'string', pattern: '^-?[0-9]+$' } } } },
    },
    async (req) => {
      const a = need();
      return view(a, a.next(req.query.after === undefined ? -1 : Number(req.query.after))?.index ?? null);
    },
  );

  app.post<{ Body: { index: number } }>(
    '/annotate/sample',
    {
      schema: { body: { type: 'object', required: ['index'], properties: { index: { type: 'integer', minimum: 0 } } } },
    },
    async (req, reply) => {
      const a = need();
      const p = a.prompt(req.body.index);
      const ctl = new AbortController();
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) ctl.abort(new ClientGone('client closed the connection'));
      });
      const { k, temperature, topP, maxNewTokens, seed } = state.o.annotate;
      const room =
        state.o.chat.model.config.max_position_embeddings - state.o.chat.template.encodePrompt(state.o.chat.tokenizer, p.messages).length;
      if (room < 1) throw new ApiError(400, `prompt ${p.id} does not fit in the model's context window`);
      const responses = await state.queue.run(
        () =>
          sampleDistinct(state.o.chat, p.messages, {
            k,
            temperature,
            topP,
            maxNewTokens: Math.min(maxNewTokens, room),
            signal: ctl.signal,
            seed: seed === undefined ? randomInt(2 ** 31) : seed + 1_000_003 * state.draws++,
          }),
        ctl.signal,
      );
      return { pair_id: a.hold(p.index, responses), index: p.index, responses };
    },
  );

  app.post<{ Body: { pair_id: string; choice: number | null; edited?: string } }>(
    '/annotate/save',
    {
      schema: {
        body: {
          type: 'object',
          required: ['pair_id', 'choice'],
          properties: {
            pair_id: { type: 'string', minLength: 1 },
            choice: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'null' }] },
            edited: { type: 'string', maxLength: 100_000 },
          },
        },
      },
    },
    async (req) => {
      const a = need();
      const { pairs } = await a.save(req.body.pair_id, { choice: req.body.choice, edited: req.body.edited });
      return { saved: pairs, ...view(a, null) };
    },
  );
}

/** Listens on host:port (port 0: any free one) and returns the base URL. */
export async function startServer(app: FastifyInstance, host = '127.0.0.1', port = 8000): Promise<string> {
  await app.listen({ host, port });
  const addr = app.server.address();
  const p = typeof addr === 'object' && addr ? addr.port : port;
  return `http://${host.includes(':') ? `[${host}]` : host}:${p}`;
}

/**
 * Graceful shutdown: new requests get 503, waiting ones 503, running generations may finish
 * for `graceMs`, after which they are ended (streams close with what they have).
 */
export async function stopServer(app: FastifyInstance, graceMs = 10_000): Promise<void> {
  const state = states.get(app);
  if (!state) throw new Error('stopServer: not a server made by buildServer');
  state.queue.close();
  const timer = setTimeout(() => {
    for (const c of state.running) c.abort(new Error('server shutting down'));
  }, graceMs);
  // close() waits for every connection to end; a keep-alive connection whose response has
  // finished would otherwise hold it until the client's idle timeout
  const idle = setInterval(() => app.server.closeIdleConnections(), 25);
  try {
    await app.close();
  } finally {
    clearTimeout(timer);
    clearInterval(idle);
  }
}
