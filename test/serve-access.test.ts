// Who gets in: the API key cannot be bypassed by spelling the path differently (percent
// encoding, absolute-form targets, dot segments, duplicate slashes), every route but /health,
// the UI files and /ui/config needs it, and a server without a key answers only to this
// machine's host names (DNS rebinding). Requests go through node:http so the path and the
// Host header reach the server exactly as written (fetch would normalise both).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { loadChatModel, type ChatModel } from '../src/model/load.js';
import { hostName, normaliseTarget, routerUrl } from '../src/serve/access.js';
import { Annotator } from '../src/serve/annotate.js';
import { buildServer, startServer, type ServeOptions } from '../src/serve/server.js';
import { qaSet, untrainedChatModel, writeJsonl } from './fixtures.js';
import { tmpDir } from './helpers.js';

const dir = tmpDir('chimed-serve-access-');
const KEY = 's3cret';
let chat: ChatModel;
const apps: FastifyInstance[] = [];

async function serve(o: Partial<ServeOptions> = {}): Promise<number> {
  const app = await buildServer({ chat, ...o });
  apps.push(app);
  const url = await startServer(app, '127.0.0.1', 0);
  return Number(new URL(url).port);
}

interface Raw {
  status: number;
  json: { error?: { code?: string; message?: string }; [k: string]: unknown } | null;
}

/** One request with the target and headers exactly as given. */
function raw(port: number, method: string, target: string, o: { host?: string; key?: string; body?: unknown } = {}): Promise<Raw> {
  const body = o.body === undefined ? undefined : JSON.stringify(o.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: target,
        setHost: false,
        headers: {
          host: o.host ?? `127.0.0.1:${port}`,
          ...(o.key ? { authorization: `Bearer ${o.key}` } : {}),
          ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode!, json: text.startsWith('{') ? JSON.parse(text) : null }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  chat = await loadChatModel({ model: await untrainedChatModel(dir) });
});

after(async () => {
  for (const a of apps) await a.close();
});

test('normaliseTarget: decodes, resolves dot segments and absolute form; the router URL decodes back to the same path', () => {
  const cases: [string, string, string?][] = [
    ['/v1/models', '/v1/models'],
    ['/%76%31/models', '/v1/models'],
    ['/v1//models', '/v1/models'],
    ['/ui/../v1/./models', '/v1/models'],
    ['/%2e%2e/v1/models', '/v1/models'],
    ['/v1%2Fmodels', '/v1/models'],
    ['/annotate/next?after=3', '/annotate/next'],
    ['http://x/v1/models?a=1', '/v1/models', 'x'],
    ['HTTP://evil.example:81/%76%31/chat/completions', '/v1/chat/completions', 'evil.example:81'],
  ];
  for (const [rawTarget, want, authority] of cases) {
    const t = normaliseTarget(rawTarget);
    assert.equal(t.error, undefined, rawTarget);
    assert.equal(t.path, want, rawTarget);
    assert.equal(t.authority, authority, rawTarget);
    assert.equal(decodeURIComponent(routerUrl(t).split('?')[0]), want, `${rawTarget}: the router decodes to the checked path`);
  }
  assert.equal(normaliseTarget('/annotate/next?after=3').query, '?after=3');
  for (const bad of ['/%zz', '/%2576%2531/models', '/v1/%00models', '*', 'ftp://x/v1/models', '/v1/models#x']) {
    assert.ok(normaliseTarget(bad).error, `${bad} is refused`);
  }
  assert.equal(hostName('[::1]:8000'), '::1');
  assert.equal(hostName('LocalHost.:80'), 'localhost');
  assert.equal(hostName('evil.example@localhost'), null);
});

test('--api-key: encoded paths, absolute-form targets and other spellings of a route need the key too', async () => {
  const prompts = writeJsonl(path.join(dir, 'prompts.jsonl'), [{ id: 'p1', prompt: qaSet().sft[0].prompt }]);
  const out = path.join(dir, 'keyed/prefs.jsonl');
  const annotator = await Annotator.open({ promptsFile: prompts, outFile: out });
  const port = await serve({ apiKey: KEY, annotator, annotate: { k: 2, temperature: 1.5, maxNewTokens: 8 } });
  const chatReq = { model: 'chimed', messages: [{ role: 'user', content: '头痛' }], max_tokens: 2 };
  const locked: [string, string, unknown?][] = [
    ['GET', '/%76%31/models'],
    ['GET', '/v1/%6dodels'],
    ['POST', '/%76%31/chat/completions', chatReq],
    ['POST', '/v1/chat/%63ompletions', chatReq],
    ['GET', 'http://x/v1/models'],
    ['GET', 'http://x/%76%31/models'],
    ['GET', '/v1//models'],
    ['GET', '/ui/../v1/models'],
    ['GET', '/%2e%2e/v1/models'],
    ['HEAD', '/v1/models'],
    ['GET', '/%61nnotate/next'],
    ['POST', '/%61nnotate/sample', { index: 0 }],
    ['POST', '/%61nnotate/save', { pair_id: 'x', choice: 0 }],
    ['GET', '/no/such/route'],
    ['GET', '/V1/models'],
  ];
  for (const [method, target, body] of locked) {
    const r = await raw(port, method, target, { body });
    assert.equal(r.status, 401, `${method} ${target} without the key`);
    if (method !== 'HEAD') assert.equal(r.json?.error?.code, 'invalid_api_key', `${method} ${target}`);
  }
  assert.ok(!fs.existsSync(out) || fs.readFileSync(out, 'utf8') === '', 'nothing was annotated without the key');
  // the same spellings with the key reach the route they name
  assert.equal((await raw(port, 'GET', '/%76%31/models', { key: KEY })).json?.object, 'list');
  assert.equal((await raw(port, 'GET', 'http://x/v1/models', { key: KEY })).json?.object, 'list');
  assert.equal((await raw(port, 'POST', '/%76%31/chat/completions', { key: KEY, body: chatReq })).json?.object, 'chat.completion');
  assert.equal((await raw(port, 'GET', '/no/such/route', { key: KEY })).status, 404);
  // public: the UI, /health and /ui/config (which tells the page a key is needed)
  for (const target of ['/', '/app.js', '/style.css', '/health', '/%68ealth', 'http://x/health']) {
    assert.equal((await raw(port, 'GET', target)).status, 200, target);
  }
  assert.equal((await raw(port, 'GET', '/ui/config')).json?.auth, true);
  // targets that cannot be read are refused before any route
  for (const target of ['/%zz', '/%2576%2531/models', '/v1/%00models']) {
    const r = await raw(port, 'GET', target, { key: KEY });
    assert.equal(r.status, 400, target);
    assert.equal(r.json?.error?.code, 'bad_request_target', target);
  }
});

test('without a key the server answers only to its own host names (DNS rebinding); --allowed-hosts extends them', async () => {
  const port = await serve();
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`]) {
    assert.equal((await raw(port, 'GET', '/v1/models', { host })).status, 200, host);
  }
  for (const [host, target] of [
    ['evil.example', '/v1/models'],
    [`evil.example:${port}`, '/'],
    ['evil.example', '/health'],
    ['localhost.evil.example', '/v1/models'],
    ['evil.example@localhost', '/v1/models'],
    ['localhost', 'http://evil.example/v1/models'],
  ]) {
    const r = await raw(port, 'GET', target, { host });
    assert.equal(r.status, 403, `Host ${host} ${target}`);
    assert.equal(r.json?.error?.code, 'host_not_allowed');
    assert.match(r.json?.error?.message ?? '', /--allowed-hosts/);
  }
  const extended = await serve({ allowedHosts: ['chimed.lan', '10.0.0.7'] });
  assert.equal((await raw(extended, 'GET', '/v1/models', { host: 'chimed.lan:8000' })).status, 200);
  assert.equal((await raw(extended, 'GET', '/v1/models', { host: '10.0.0.7' })).status, 200);
  assert.equal((await raw(extended, 'GET', '/v1/models', { host: 'evil.example' })).status, 403);
  // with a key the Host is not checked: the key is the defence
  const keyed = await serve({ apiKey: KEY });
  assert.equal((await raw(keyed, 'GET', '/v1/models', { host: 'chimed.example.org', key: KEY })).status, 200);
});
