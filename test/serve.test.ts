import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { loadChatModel, type ChatModel } from '../src/model/load.js';
import { Annotator, preferencePairs, preferencePrompt, readAnnotationPrompts } from '../src/serve/annotate.js';
import { QueueClosedError, QueueFullError, RequestQueue } from '../src/serve/queue.js';
import { buildServer, startServer, stopServer, type ServeOptions } from '../src/serve/server.js';
import { TextDelta } from '../src/serve/stream.js';
import { preferenceOf } from '../src/data/stage-files.js';
import { cleanUpTokenization } from '../src/tokenizer/index.js';
import { qaSet, untrainedChatModel, writeJsonl } from './fixtures.js';
import { repoRoot, runCli, tmpDir, trainingSeed } from './helpers.js';

const dir = tmpDir('chimed-serve-');
const { sft } = qaSet();
const modelDir = path.join(dir, 'sft/stages/sft/final');
const ask = (i: number) => [{ role: 'user', content: sft[i].prompt }];
let chat: ChatModel;
const servers: FastifyInstance[] = [];
let base = '';

/** A server on a free loopback port, closed after the suite. */
async function serve(o: Partial<ServeOptions> = {}): Promise<{ app: FastifyInstance; url: string }> {
  const app = await buildServer({ chat, ...o });
  servers.push(app);
  return { app, url: await startServer(app, '127.0.0.1', 0) };
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type') ?? '', text, json: text.startsWith('{') ? JSON.parse(text) : null };
}

/** The `data:` payloads of an SSE body, checking the framing as it goes. */
function sseEvents(text: string): unknown[] {
  assert.ok(text.endsWith('data: [DONE]\n\n'), `stream must end with [DONE]: ${JSON.stringify(text.slice(-80))}`);
  const blocks = text.split('\n\n').filter(Boolean);
  for (const b of blocks) assert.match(b, /^data: /, `every event is one data line: ${JSON.stringify(b)}`);
  return blocks.slice(0, -1).map((b) => JSON.parse(b.slice(6)));
}

type Chunk = {
  id: string;
  object: string;
  model: string;
  choices: { index: number; delta?: { role?: string; content?: string }; text?: string; finish_reason: string | null }[];
  usage?: unknown;
};

/** Per choice index: the joined content and the finish reason. */
function joinChunks(events: Chunk[]): { text: string; finish: string | null }[] {
  const out: { text: string; finish: string | null }[] = [];
  for (const e of events)
    for (const c of e.choices) {
      out[c.index] ??= { text: '', finish: null };
      out[c.index].text += c.delta?.content ?? c.text ?? '';
      if (c.finish_reason) out[c.index].finish = c.finish_reason;
    }
  return out;
}

async function health(url: string) {
  return (await fetch(`${url}/health`)).json() as Promise<{ queue: { running: number; waiting: number }; totals: Record<string, number> }>;
}

/** Polls every 10 ms until cond holds; the minute's bound only stops a hung test (a loaded machine takes seconds). */
async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

before(async () => {
  const ok = (r: ReturnType<typeof runCli>) => assert.equal(r.code, 0, r.stderr + r.stdout);
  const seed = String(trainingSeed(42));
  await untrainedChatModel(dir, {
    config: { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 1024 },
    seed,
    name: 'base',
  });
  // the first six dialogues (all the tests ask about) are learnt by heart in a few seconds: final
  // loss 0.010-0.013 over seeds 1, 2, 3, 42, every exact-reply check passing under each
  ok(
    runCli([
      'train',
      'sft',
      '--data',
      writeJsonl(path.join(dir, 'sft.jsonl'), sft.slice(0, 6)),
      '--model',
      path.join(dir, 'base'),
      '--out',
      path.join(dir, 'sft'),
      '--eval-fraction',
      '0',
      '--lr',
      '5e-3',
      '--max-steps',
      '80',
      '--batch-size',
      '6',
      '--threads',
      '2',
      '--warmup-ratio',
      '0.05',
      '--save-every',
      '1000',
      '--seed',
      seed,
    ]),
  );
  const last = fs
    .readFileSync(path.join(dir, 'sft/metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((m) => m.loss !== undefined)
    .at(-1);
  console.log(`# seed ${seed}: final SFT loss ${last.loss}`);
  chat = await loadChatModel({ model: modelDir });
  base = (await serve()).url;
});

after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

test('GET /health, /v1/models and /v1/models/:id', async () => {
  const h = await health(base);
  assert.equal((h as unknown as { status: string }).status, 'ok');
  assert.equal(h.queue.running, 0);
  const models = await (await fetch(`${base}/v1/models`)).json();
  assert.equal(models.object, 'list');
  assert.deepEqual(
    models.data.map((m: { id: string; object: string }) => [m.id, m.object]),
    [['chimed', 'model']],
  );
  const one = await fetch(`${base}/v1/models/chimed`);
  assert.equal(one.status, 200);
  assert.equal((await one.json()).id, 'chimed');
  assert.equal((await fetch(`${base}/v1/models/gpt-4`)).status, 404);
});

test('chat completion: the fine-tuned answer, OpenAI shape, token usage', async () => {
  const r = await post(`${base}/v1/chat/completions`, { model: 'chimed', messages: ask(0), temperature: 0 });
  assert.equal(r.status, 200, r.text);
  const j = r.json;
  assert.match(j.id, /^chatcmpl-/);
  assert.equal(j.object, 'chat.completion');
  assert.equal(j.model, 'chimed');
  assert.ok(Number.isInteger(j.created));
  assert.equal(j.choices.length, 1);
  assert.deepEqual(j.choices[0].message, { role: 'assistant', content: sft[0].response });
  assert.equal(j.choices[0].finish_reason, 'stop');
  const promptIds = chat.template.encodePrompt(chat.tokenizer, ask(0) as never);
  assert.equal(j.usage.prompt_tokens, promptIds.length);
  // the reply's tokens (the end-of-turn token is not counted)
  assert.equal(j.usage.completion_tokens, chat.tokenizer.encode(sft[0].response).length);
  assert.equal(j.usage.total_tokens, j.usage.prompt_tokens + j.usage.completion_tokens);
  // text parts and a system message are accepted
  const parts = await post(`${base}/v1/chat/completions`, {
    model: 'chimed',
    temperature: 0,
    messages: [{ role: 'user', content: [{ type: 'text', text: sft[2].prompt }] }],
  });
  assert.equal(parts.json.choices[0].message.content, sft[2].response);
});

test('chat streaming: SSE chunks whose deltas join to the non-streamed reply, then finish, usage and [DONE]', async () => {
  const r = await post(`${base}/v1/chat/completions`, {
    model: 'chimed',
    messages: ask(2),
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/event-stream/);
  const ev = sseEvents(r.text) as Chunk[];
  assert.ok(ev.every((e) => e.object === 'chat.completion.chunk' && e.id === ev[0].id && e.model === 'chimed'));
  assert.deepEqual(ev[0].choices[0].delta, { role: 'assistant', content: '' });
  const content = ev.filter((e) => e.choices[0]?.delta?.content);
  assert.ok(content.length >= 3, `streamed in pieces: ${content.length} content chunks`);
  const [joined] = joinChunks(ev);
  assert.equal(joined.text, sft[2].response);
  assert.equal(joined.finish, 'stop');
  const fin = ev.at(-2)!;
  assert.deepEqual(fin.choices[0].delta, {});
  const usageEv = ev.at(-1)!;
  assert.deepEqual(usageEv.choices, []);
  const whole = await post(`${base}/v1/chat/completions`, { model: 'chimed', messages: ask(2), temperature: 0 });
  assert.deepEqual(usageEv.usage, whole.json.usage);
  // without include_usage there is no usage chunk and no usage key
  const plain = sseEvents(
    (await post(`${base}/v1/chat/completions`, { model: 'chimed', messages: ask(2), temperature: 0, stream: true })).text,
  ) as Chunk[];
  assert.ok(plain.every((e) => !('usage' in e) && e.choices.length === 1));
});

test('n > 1 and seed: n choices, reproducible per seed, streamed equal to non-streamed', async () => {
  const req = { model: 'chimed', messages: ask(4), temperature: 1.5, n: 3, seed: 1234, max_tokens: 30 };
  const a = await post(`${base}/v1/chat/completions`, req);
  assert.equal(a.status, 200, a.text);
  assert.deepEqual(
    a.json.choices.map((c: { index: number }) => c.index),
    [0, 1, 2],
  );
  const texts = a.json.choices.map((c: { message: { content: string } }) => c.message.content);
  const b = await post(`${base}/v1/chat/completions`, req);
  assert.deepEqual(
    b.json.choices.map((c: { message: { content: string } }) => c.message.content),
    texts,
    'same seed, same samples',
  );
  const s = joinChunks(sseEvents((await post(`${base}/v1/chat/completions`, { ...req, stream: true })).text) as Chunk[]);
  assert.deepEqual(
    s.map((c) => c.text),
    texts,
    'the stream carries the same samples',
  );
  assert.deepEqual(
    s.map((c) => c.finish),
    a.json.choices.map((c: { finish_reason: string }) => c.finish_reason),
  );
  // raw continuation at a high temperature: other seeds give other text
  const comp = (seed: number) =>
    post(`${base}/v1/completions`, { model: 'chimed', prompt: '高血压', temperature: 1.5, seed, max_tokens: 40, ignore_eos: true });
  const [x, y, z] = await Promise.all([comp(1), comp(1), comp(2)]);
  assert.equal(x.json.choices[0].text, y.json.choices[0].text);
  assert.notEqual(x.json.choices[0].text, z.json.choices[0].text);
});

test('stop strings end the reply before them, streamed or not, and never leak into the stream', async () => {
  for (const stop of ['，', ['氯地', '不存在']]) {
    const r = await post(`${base}/v1/chat/completions`, { model: 'chimed', messages: ask(0), temperature: 0, stop });
    const want = typeof stop === 'string' ? '高血压常用氨氯地平' : '高血压常用氨';
    assert.deepEqual([r.json.choices[0].message.content, r.json.choices[0].finish_reason], [want, 'stop']);
    const ev = sseEvents(
      (await post(`${base}/v1/chat/completions`, { model: 'chimed', messages: ask(0), temperature: 0, stop, stream: true })).text,
    ) as Chunk[];
    assert.deepEqual(joinChunks(ev)[0], { text: want, finish: 'stop' });
  }
  const long = await post(`${base}/v1/chat/completions`, { model: 'chimed', messages: ask(0), temperature: 0, max_tokens: 3 });
  assert.equal(long.json.choices[0].finish_reason, 'length');
  assert.equal(long.json.usage.completion_tokens, 3);
});

test('/v1/completions: raw continuation, echo, several prompts x n, streaming, 16-token default', async () => {
  const r = await post(`${base}/v1/completions`, {
    model: 'chimed',
    prompt: ['高血压', '糖尿病'],
    n: 2,
    temperature: 0,
    max_tokens: 8,
    echo: true,
    ignore_eos: true,
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.object, 'text_completion');
  assert.match(r.json.id, /^cmpl-/);
  const t = r.json.choices.map((c: { text: string }) => c.text);
  assert.equal(t.length, 4);
  assert.ok(t[0].startsWith('高血压') && t[2].startsWith('糖尿病'), JSON.stringify(t));
  assert.equal(t[0], t[1], 'greedy samples of one prompt agree');
  assert.equal(r.json.usage.completion_tokens, 4 * 8);
  assert.equal(
    r.json.usage.prompt_tokens,
    chat.tokenizer.encode('高血压').length + chat.tokenizer.encode('糖尿病').length,
    'each prompt counted once, not per sample',
  );
  const s = await post(`${base}/v1/completions`, {
    model: 'chimed',
    prompt: '高血压',
    temperature: 0,
    max_tokens: 8,
    ignore_eos: true,
    stream: true,
  });
  const ev = sseEvents(s.text) as Chunk[];
  assert.ok(ev.every((e) => e.object === 'text_completion'));
  assert.equal(joinChunks(ev)[0].text, t[0].slice('高血压'.length));
  assert.equal(joinChunks(ev)[0].finish, 'length');
  const d = await post(`${base}/v1/completions`, { model: 'chimed', prompt: '高血压', temperature: 0, ignore_eos: true });
  assert.equal(d.json.usage.completion_tokens, 16);
});

test('bad requests get 4xx errors in the OpenAI shape and the server keeps serving', async () => {
  const url = `${base}/v1/chat/completions`;
  const good = { model: 'chimed', messages: ask(0), temperature: 0, max_tokens: 4 };
  const cases: [string, string | object, number, string | null, string | null][] = [
    ['malformed JSON', '{"model": "chimed", "messages": [', 400, null, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['empty body', '', 400, null, 'FST_ERR_CTP_EMPTY_JSON_BODY'],
    ['array body', '[1, 2]', 400, null, null],
    ['temperature as a string', { ...good, temperature: 'hot' }, 400, 'temperature', null],
    ['max_tokens "5"', { ...good, max_tokens: '5' }, 400, 'max_tokens', null],
    ['temperature above 2', { ...good, temperature: 3 }, 400, 'temperature', null],
    ['n = 0', { ...good, n: 0 }, 400, 'n', null],
    ['unknown role', { ...good, messages: [{ role: 'robot', content: 'x' }] }, 400, 'messages[0].role', null],
    ['content a number', { ...good, messages: [{ role: 'user', content: 5 }] }, 400, 'messages[0].content', null],
    ['no messages', { model: 'chimed' }, 400, 'messages', null],
    ['empty messages', { ...good, messages: [] }, 400, 'messages', null],
    ['ends with the assistant', { ...good, messages: [...ask(0), { role: 'assistant', content: 'x' }] }, 400, 'messages', null],
    ['unknown model', { ...good, model: 'gpt-4o' }, 404, 'model', 'model_not_found'],
    ['max_tokens over the server limit', { ...good, max_tokens: 5000 }, 400, 'max_tokens', 'max_tokens_exceeded'],
    ['max_tokens past the context', { ...good, max_tokens: 1020 }, 400, 'max_tokens', 'context_length_exceeded'],
    [
      'prompt past the context',
      { ...good, messages: [{ role: 'user', content: 'x'.repeat(3000) }] },
      400,
      'messages',
      'context_length_exceeded',
    ],
    ['logprobs', { ...good, logprobs: true }, 400, 'logprobs', null],
    ['JSON mode', { ...good, response_format: { type: 'json_object' } }, 400, 'response_format', null],
    ['logit_bias', { ...good, logit_bias: { 5: 100 } }, 400, 'logit_bias', null],
    ['functions', { ...good, functions: [{ name: 'lookup', parameters: {} }] }, 400, 'functions', null],
    ['five stop strings', { ...good, stop: ['a', 'b', 'c', 'd', 'e'] }, 400, 'stop', null],
    [
      'oversize body',
      { ...good, messages: [{ role: 'user', content: 'x'.repeat(1.2 * 2 ** 20) }] },
      413,
      null,
      'FST_ERR_CTP_BODY_TOO_LARGE',
    ],
  ];
  for (const [what, body, status, param, code] of cases) {
    const r = await post(url, body);
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.match(r.type, /application\/json/, what);
    const e = r.json?.error;
    assert.ok(e && typeof e.message === 'string' && e.message.length > 0 && typeof e.type === 'string', `${what}: ${r.text}`);
    assert.equal(e.param, param, `${what}: param`);
    if (code) assert.equal(e.code, code, `${what}: code`);
  }
  const comp = await post(`${base}/v1/completions`, { model: 'chimed', prompt: '', max_tokens: 2 });
  assert.deepEqual([comp.status, comp.json.error.param], [400, 'prompt']);
  const rows = await post(`${base}/v1/completions`, { model: 'chimed', prompt: ['a', 'b', 'c'], n: 8 });
  assert.deepEqual([rows.status, rows.json.error.param], [400, 'n']);
  const nf = await fetch(`${base}/v1/embeddings`, { method: 'POST' });
  assert.equal(nf.status, 404);
  assert.equal((await nf.json()).error.type, 'not_found_error');
  const still = await post(url, good);
  assert.equal(still.status, 200, 'the server survived all of it');
});

test('a full queue answers 429; waiting requests run in order once the slot frees', async () => {
  const { url } = await serve({ concurrency: 1, queueSize: 1 });
  const long = new AbortController();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    signal: long.signal,
    body: JSON.stringify({ model: 'chimed', prompt: '高血压', max_tokens: 1000, ignore_eos: true, stream: true }),
  });
  const reader = res.body!.getReader();
  await reader.read(); // the first chunk: it holds the only slot now
  const queued = post(`${url}/v1/chat/completions`, { model: 'chimed', messages: ask(0), temperature: 0 });
  await until('the second request to wait', async () => (await health(url)).queue.waiting === 1);
  const busy = await post(`${url}/v1/chat/completions`, { model: 'chimed', messages: ask(0), temperature: 0 });
  assert.equal(busy.status, 429, busy.text);
  assert.equal(busy.json.error.type, 'rate_limit_error');
  long.abort();
  const second = await queued;
  assert.equal(second.status, 200);
  assert.equal(second.json.choices[0].message.content, sft[0].response);
  assert.equal((await health(url)).totals.rejected_busy, 1);
});

test('concurrency 2: two generations interleave and each answers as it does alone', async () => {
  const { url } = await serve({ concurrency: 2 });
  const req = (seed: number) => ({
    model: 'chimed',
    prompt: '高血压',
    temperature: 1,
    seed,
    max_tokens: 300,
    ignore_eos: true,
    stream: true,
  });
  const streams = await Promise.all(
    [1, 2].map((seed) =>
      fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req(seed)) }),
    ),
  );
  const readers = streams.map((r) => r.body!.getReader());
  const texts = await Promise.all(readers.map(async (rd) => new TextDecoder().decode((await rd.read()).value)));
  assert.equal((await health(url)).queue.running, 2, 'both run at once');
  await Promise.all(
    readers.map(async (rd, i) => {
      for (let k = 0; k < 10_000; k++) {
        const { value, done } = await rd.read();
        if (done) return;
        texts[i] += new TextDecoder().decode(value);
      }
    }),
  );
  for (const [i, seed] of [1, 2].entries()) {
    const alone = await post(`${base}/v1/completions`, { ...req(seed), stream: false });
    assert.equal(joinChunks(sseEvents(texts[i]) as Chunk[])[0].text, alone.json.choices[0].text, `seed ${seed}`);
  }
});

test('a client that disconnects stops its generation (streamed and not)', async () => {
  const { url } = await serve();
  const body = JSON.stringify({ model: 'chimed', prompt: '高血压', max_tokens: 1000, ignore_eos: true });
  const h0 = await health(url);
  // streamed: leave after the first chunk
  const s = new AbortController();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body.replace('}', ',"stream":true}'),
    signal: s.signal,
  });
  await res.body!.getReader().read();
  s.abort();
  await until('the streamed generation to stop', async () => (await health(url)).queue.running === 0);
  // not streamed: leave while it runs
  const w = new AbortController();
  const pending = fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: w.signal,
  }).catch((e) => e);
  await until('the generation to start', async () => (await health(url)).queue.running === 1);
  w.abort();
  assert.equal((await pending).name, 'AbortError');
  await until('the generation to stop', async () => (await health(url)).queue.running === 0);
  const h1 = await health(url);
  assert.equal(h1.totals.client_disconnects - h0.totals.client_disconnects, 2);
  const generated = h1.totals.completion_tokens - h0.totals.completion_tokens;
  assert.ok(generated < 1000, `generation stopped early: ${generated} of the 2 x 1000 tokens asked for`);
});

test('--api-key: /v1 and /annotate need the bearer key; the UI files and /health do not', async () => {
  const { url } = await serve({ apiKey: 's3cret' });
  const req = { model: 'chimed', messages: ask(0), temperature: 0, max_tokens: 4 };
  const none = await post(`${url}/v1/chat/completions`, req);
  assert.equal(none.status, 401);
  assert.equal(none.json.error.code, 'invalid_api_key');
  assert.equal((await post(`${url}/v1/chat/completions`, req, { authorization: 'Bearer wrong!' })).status, 401);
  assert.equal((await post(`${url}/v1/chat/completions`, req, { authorization: 'Bearer s3cret' })).status, 200);
  assert.equal((await fetch(`${url}/v1/models`)).status, 401);
  assert.equal((await fetch(`${url}/annotate/next`)).status, 401);
  assert.equal((await fetch(`${url}/health`)).status, 200);
  const page = await fetch(`${url}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<script type="module" src="\/app.js">/);
  assert.deepEqual(await (await fetch(`${url}/ui/config`)).json(), {
    model: 'chimed',
    auth: true,
    annotate: false,
    k: 2,
    max_tokens_limit: 1024,
  });
});

test('graceful shutdown: a running stream ends cleanly within the grace period, then the port is closed', async () => {
  const app = await buildServer({ chat });
  const url = await startServer(app, '127.0.0.1', 0);
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chimed', prompt: '高血压', max_tokens: 1000, ignore_eos: true, stream: true }),
  });
  const reader = res.body!.getReader();
  let text = new TextDecoder().decode((await reader.read()).value);
  const t0 = Date.now();
  const stopping = stopServer(app, 20);
  for (let i = 0; i < 10_000; i++) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await stopping;
  assert.ok(Date.now() - t0 < 2000, `shutdown took ${Date.now() - t0} ms`);
  const ev = sseEvents(text) as Chunk[];
  assert.equal(joinChunks(ev)[0].finish, 'length');
  await assert.rejects(fetch(`${url}/health`), 'nothing listens after shutdown');
});

test('annotation API: next prompt, k sampled replies, verdicts appended as preference JSONL the trainers read', async () => {
  const prompts = writeJsonl(path.join(dir, 'annot-prompts.jsonl'), [
    { id: 'p1', prompt: sft[0].prompt },
    { id: 'p2', prompt: sft[2].prompt, history: [[sft[1].prompt, sft[1].response]], system: '你是医生。' },
    { id: 'p3', messages: [{ role: 'user', content: sft[4].prompt }] },
  ]);
  const out = path.join(dir, 'annot/prefs.jsonl');
  const annotator = await Annotator.open({ promptsFile: prompts, outFile: out });
  const { url } = await serve({ annotator, annotate: { k: 2, temperature: 1.5, maxNewTokens: 24 } });
  const next = await (await fetch(`${url}/annotate/next`)).json();
  assert.deepEqual([next.prompt.id, next.progress], ['p1', { done: 0, total: 3 }]);
  const pair = await post(`${url}/annotate/sample`, { index: 0 });
  assert.equal(pair.status, 200, pair.text);
  assert.ok(pair.json.responses.length >= 1 && pair.json.responses.length <= 2);
  assert.equal(new Set(pair.json.responses).size, pair.json.responses.length, 'replies are distinct');
  // pick the last reply, edited: chosen is the edit, every sampled reply is rejected against it
  const saved = await post(`${url}/annotate/save`, {
    pair_id: pair.json.pair_id,
    choice: pair.json.responses.length - 1,
    edited: sft[0].response + '（已核对）',
  });
  assert.equal(saved.status, 200, saved.text);
  assert.equal(saved.json.saved, pair.json.responses.length);
  assert.deepEqual(saved.json.progress, { done: 1, total: 3 });
  assert.equal((await post(`${url}/annotate/save`, { pair_id: pair.json.pair_id, choice: 0 })).status, 400, 'a pair is saved once');
  // the next prompt has history and a system prompt: they travel in the normalised shape
  const n2 = await (await fetch(`${url}/annotate/next?after=0`)).json();
  assert.equal(n2.prompt.id, 'p2');
  const p2 = await post(`${url}/annotate/sample`, { index: n2.prompt.index });
  const v2 = await post(`${url}/annotate/save`, { pair_id: p2.json.pair_id, choice: null, edited: '糖尿病常用二甲双胍。' });
  assert.equal(v2.status, 200, v2.text);
  // all bad without a better reply: no pair, recorded beside the preference file
  const p3 = await post(`${url}/annotate/sample`, { index: 2 });
  assert.equal((await post(`${url}/annotate/save`, { pair_id: p3.json.pair_id, choice: null })).json.saved, 0);
  assert.equal((await (await fetch(`${url}/annotate/next`)).json()).prompt, null, 'all done');
  assert.equal((await post(`${url}/annotate/save`, { pair_id: 'nope', choice: 0 })).status, 400);
  assert.equal((await post(`${url}/annotate/sample`, { index: 99 })).status, 400);

  const lines = fs
    .readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, pair.json.responses.length + p2.json.responses.length);
  for (const [i, l] of lines.entries()) {
    const pref = preferenceOf(l, `line ${i + 1}`); // what `chimed train rm` / `dpo` do with each line
    assert.equal(pref.prompt.at(-1)!.content, l.prompt);
  }
  assert.deepEqual(
    lines.filter((l) => l.prompt_id === 'p1').map((l) => [l.prompt, l.chosen, l.edited]),
    pair.json.responses.map(() => [sft[0].prompt, sft[0].response + '（已核对）', true]),
  );
  assert.deepEqual(
    lines
      .filter((l) => l.prompt_id === 'p1')
      .map((l) => l.rejected)
      .sort(),
    [...pair.json.responses].sort(),
  );
  const l2 = lines.find((l) => l.prompt_id === 'p2');
  assert.deepEqual([l2.history, l2.system, l2.chosen], [[[sft[1].prompt, sft[1].response]], '你是医生。', '糖尿病常用二甲双胍。']);
  assert.deepEqual(
    preferenceOf(l2, 'p2').prompt.map((m) => m.role),
    ['system', 'user', 'assistant', 'user'],
  );
  const bad = fs
    .readFileSync(Annotator.badFile(out), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    bad.map((b) => [b.prompt_id, b.responses]),
    [['p3', p3.json.responses]],
  );
  // the trainers take the file as it is
  const rm = runCli([
    'train',
    'rm',
    '--data',
    out,
    '--model',
    modelDir,
    '--out',
    path.join(dir, 'rm'),
    '--eval-fraction',
    '0',
    '--max-steps',
    '2',
    '--batch-size',
    '2',
    '--threads',
    '2',
    '--save-every',
    '1000',
  ]);
  assert.equal(rm.code, 0, rm.stderr + rm.stdout);
  // a new session over the same files resumes: everything is done
  const again = await Annotator.open({ promptsFile: prompts, outFile: out });
  assert.deepEqual(again.progress(), { done: 3, total: 3 });
  await again.close();
});

test('annotation helpers: prompt files (errors name file:line), pair building, prompt shapes', async () => {
  const txt = path.join(dir, 'prompts.txt');
  fs.writeFileSync(txt, '高血压常用什么药？\n\n  糖尿病有什么症状？ \n');
  assert.deepEqual(
    (await readAnnotationPrompts(txt)).map((p) => [p.id, p.messages[0].content]),
    [
      ['0', '高血压常用什么药？'],
      ['1', '糖尿病有什么症状？'],
    ],
  );
  const bad = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(bad, '{"prompt": "a"}\n{"prompt": 5}\n');
  await assert.rejects(readAnnotationPrompts(bad), /bad\.jsonl:2/);
  fs.writeFileSync(bad, '{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n');
  await assert.rejects(readAnnotationPrompts(bad), /bad\.jsonl:2: duplicate id "x" \(first on line 1\)/);
  fs.writeFileSync(bad, '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n');
  await assert.rejects(readAnnotationPrompts(bad), /bad\.jsonl:1: the conversation must end with a user turn/);
  await assert.rejects(readAnnotationPrompts(path.join(dir, 'missing.jsonl')), /no such prompts file/);

  const p = { index: 0, id: 'q', messages: [{ role: 'user' as const, content: '问' }] };
  const t = new Date(0);
  assert.deepEqual(preferencePairs(p, ['好', '坏'], { choice: 0 }, t), [
    { id: 'q', prompt_id: 'q', prompt: '问', chosen: '好', rejected: '坏', edited: false, annotated_at: t.toISOString() },
  ]);
  assert.deepEqual(
    preferencePairs(p, ['a', 'b', 'c'], { choice: 1 }, t).map((r) => [r.id, r.chosen, r.rejected]),
    [
      ['q-1', 'b', 'a'],
      ['q-2', 'b', 'c'],
    ],
  );
  assert.deepEqual(
    preferencePairs(p, ['a', 'b'], { choice: 0, edited: 'a' }, t).map((r) => r.edited),
    [false],
    'an unchanged edit is no edit',
  );
  assert.deepEqual(preferencePairs(p, ['a', 'b'], { choice: null }, t), []);
  assert.throws(() => preferencePairs(p, ['a', 'a'], { choice: 0 }), /identical/);
  assert.throws(() => preferencePairs(p, ['a', 'b'], { choice: 2 }), /choice/);
  assert.deepEqual(
    preferencePrompt([
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
    ]),
    {
      messages: [
        { role: 'user', content: 'a' },
        { role: 'user', content: 'b' },
      ],
    },
  );
});

test('RequestQueue: concurrency limit, bounded FIFO line, cancellation, close', async () => {
  const q = new RequestQueue(1, 2);
  const r1 = await q.acquire();
  const order: number[] = [];
  const w2 = q.acquire().then((rel) => {
    order.push(2);
    return rel;
  });
  const gone = new AbortController();
  const w3 = q.acquire(gone.signal);
  await assert.rejects(q.acquire(), QueueFullError);
  gone.abort(new Error('left'));
  await assert.rejects(w3, /left/);
  assert.deepEqual(q.stats, { running: 1, waiting: 1, concurrency: 1, max_waiting: 2 });
  const w4 = q.acquire().then((rel) => {
    order.push(4);
    return rel;
  });
  r1();
  r1(); // releasing twice frees one slot only
  (await w2)();
  (await w4)();
  assert.deepEqual(order, [2, 4]);
  assert.equal(q.stats.running, 0);
  const r5 = await q.acquire();
  const w6 = q.acquire();
  q.close();
  await assert.rejects(w6, QueueClosedError);
  await assert.rejects(q.acquire(), QueueClosedError);
  r5();
  assert.throws(() => new RequestQueue(0, 1), RangeError);
});

test('TextDelta holds back partial UTF-8 and possible stop-string starts, and never sends past a stop', () => {
  const bytes = (s: string) => [...Buffer.from(s, 'utf8')];
  const decode = (ids: number[]) => Buffer.from(ids).toString('utf8');
  const d = new TextDelta(decode, []);
  const got = bytes('高血压').map((b) => d.push(b));
  assert.deepEqual(got, ['', '', '高', '', '', '血', '', '', '压']);
  assert.equal(d.finish('高血压'), '');

  const s = new TextDelta(decode, ['。请']);
  const seq = bytes('药。请遵')
    .map((b) => s.push(b))
    .join('|');
  assert.equal(seq.replaceAll('|', ''), '药', `sent: ${seq}`);
  assert.equal(s.finish('药'), '');
  const t = new TextDelta(decode, ['。请']);
  assert.equal(
    bytes('药。好')
      .map((b) => t.push(b))
      .join(''),
    '药。好',
    'a held-back start is released once it cannot become the stop',
  );
  const e = new TextDelta(decode, [], 'echo:');
  assert.equal(e.push(0x61) + e.finish('ab'), 'echo:ab');
  // a space that the tokenizer's clean-up later removes is never sent
  const c = new TextDelta((ids) => cleanUpTokenization(decode(ids)), []);
  const parts = bytes('ok . yes').map((b) => c.push(b));
  assert.equal(parts.join('') + c.finish('ok. yes'), 'ok. yes');
});

test('chimed serve: starts from the CLI flags, answers, and exits 0 on SIGTERM; bad flags exit 2', async () => {
  const cli = [path.join(repoRoot, 'bin/chimed.js'), 'serve'];
  const child = spawn(
    process.execPath,
    [...cli, '--model', modelDir, '--port', '0', '--threads', '1', '--model-name', 'med', '--log', 'silent'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '',
    err = '';
  child.stderr.on('data', (b) => {
    err += b;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // the URL line, or the exit, whichever comes first: no clock involved
  const listening = new Promise<string | null>((resolve) => {
    child.stdout.on('data', (b) => {
      out += b;
      const m = /http:\/\/127\.0\.0\.1:\d+/.exec(out);
      if (m) resolve(m[0]);
    });
    void exited.then(() => resolve(null));
  });
  try {
    const url = await listening;
    assert.ok(url, out + err);
    const r = await post(`${url}/v1/chat/completions`, { model: 'med', messages: ask(0), temperature: 0 });
    assert.equal(r.json.choices[0].message.content, sft[0].response);
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, err);
  const usage = spawn(process.execPath, [...cli, '--model', modelDir, '--annotate-prompts', 'x.jsonl'], { stdio: 'pipe' });
  let uerr = '';
  usage.stderr.on('data', (b) => {
    uerr += b;
  });
  const code = await new Promise((resolve) => usage.on('exit', resolve));
  assert.equal(code, 2, 'a usage error');
  assert.match(uerr, /--annotate-prompts and --annotate-out go together/);
});
