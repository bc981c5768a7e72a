import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parse, UsageError } from '../src/io/argv.js';

const USAGE = `chimed bench serve (--model DIR [--tokenizer DIR] [--adapter DIR] | --url URL [--api-key KEY]) [options] [--json]

N concurrent streaming chat clients on loopback, each sending requests back to back. With
--model a server is started in its own process on a free 127.0.0.1 port (so the clients do
not share its CPU time) and stopped afterwards; with --url an already running one is used.
Prints requests/s, completion tokens/s, time to first token and latency percentiles.

  --clients N       concurrent clients (default 4)
  --requests N      requests per client (default 4)
  --max-tokens N    completion tokens per request (default 64)
  --prompt TEXT     the user message (default 高血压常用什么药？)
  --temperature X   (default 0)
  --concurrency N   the started server's --concurrency (default 1)
  --threads N       the started server's --threads`;

interface Sample {
  ok: boolean;
  ttftMs: number;
  latencyMs: number;
  tokens: number;
  error?: string;
}

/** Nearest-rank percentile of ascending-sorted values. */
function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** One streamed chat request, timed from sending to the first content delta and to [DONE]. */
export async function streamOnce(url: string, headers: Record<string, string>, body: object): Promise<Sample> {
  const t0 = performance.now();
  let ttft = NaN,
    tokens = 0,
    done = false;
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    });
    if (!res.ok) return { ok: false, ttftMs: NaN, latencyMs: NaN, tokens: 0, error: `${res.status} ${await res.text()}` };
    let buf = '';
    for await (const piece of res.body!.pipeThrough(new TextDecoderStream())) {
      buf += piece;
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const data = buf.slice(0, cut).replace(/^data: /, '');
        buf = buf.slice(cut + 2);
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const ev = JSON.parse(data);
        if (ev.error) throw new Error(ev.error.message);
        if (Number.isNaN(ttft) && ev.choices?.[0]?.delta?.content) ttft = performance.now() - t0;
        if (ev.usage) tokens = ev.usage.completion_tokens;
      }
    }
    if (!done) throw new Error('stream ended without [DONE]');
    return { ok: true, ttftMs: ttft, latencyMs: performance.now() - t0, tokens };
  } catch (e) {
    return { ok: false, ttftMs: NaN, latencyMs: NaN, tokens, error: (e as Error).message };
  }
}

/** Starts `chimed serve` in a child process and resolves with its URL once it listens. */
export function startServerProcess(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const bin = fileURLToPath(new URL('../../bin/chimed.js', import.meta.url));
  const child = spawn(process.execPath, [bin, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '',
      err = '';
    child.stderr!.on('data', (b) => {
      err += b;
    });
    child.stdout!.on('data', (b) => {
      out += b;
      const m = /http:\/\/127\.0\.0\.1:\d+/.exec(out);
      if (m) resolve({ child, url: m[0] });
    });
    child.on('exit', (code) => reject(new Error(`the server exited (${code}) before listening: ${err.trim() || out.trim()}`)));
  });
}

/** One JSON line (with --json): {requests_per_s, tokens_per_s, ttft_ms, latency_ms, errors, ...}. */
export async function benchServe(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parse(
    argv,
    {
      model: { type: 'string' },
      tokenizer: { type: 'string' },
      adapter: { type: 'string' },
      template: { type: 'string' },
      url: { type: 'string' },
      'api-key': { type: 'string' },
      clients: { type: 'string' },
      requests: { type: 'string' },
      'max-tokens': { type: 'string' },
      prompt: { type: 'string' },
      temperature: { type: 'string' },
      concurrency: { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  if (!a.str('model') === !a.str('url')) throw new UsageError(`give --model DIR or --url URL\n\n${USAGE}`);
  const clients = a.int('clients', 4),
    perClient = a.int('requests', 4),
    maxTokens = a.int('max-tokens', 64);
  const concurrency = a.int('concurrency', 1);
  let server: ChildProcess | undefined;
  let url = a.str('url')?.replace(/\/+$/, '');
  if (!url) {
    const args = [
      '--model',
      a.need('model'),
      '--port',
      '0',
      '--concurrency',
      String(concurrency),
      '--queue',
      String(clients),
      '--log',
      'error',
    ];
    for (const f of ['tokenizer', 'adapter', 'template', 'threads']) if (a.str(f)) args.push(`--${f}`, a.str(f)!);
    ({ child: server, url } = await startServerProcess(args));
  }
  try {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (a.str('api-key')) headers.authorization = `Bearer ${a.str('api-key')}`;
    const models = await fetch(`${url}/v1/models`, { headers }).catch((e) => {
      throw new Error(`cannot reach ${url}: ${(e as Error).cause ?? e}`);
    });
    if (!models.ok) throw new Error(`${url}/v1/models: ${models.status} ${await models.text()}`);
    const model = ((await models.json()) as { data: { id: string }[] }).data[0].id;
    const body = {
      model,
      messages: [{ role: 'user', content: a.str('prompt') ?? '高血压常用什么药？' }],
      max_tokens: maxTokens,
      temperature: a.num('temperature', 0),
    };
    await streamOnce(url, headers, body); // warm-up: first-touch allocations, JIT
    const samples: Sample[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let i = 0; i < perClient; i++) samples.push(await streamOnce(url!, headers, body));
      }),
    );
    const wallS = (performance.now() - t0) / 1000;
    const ok = samples.filter((s) => s.ok);
    const ttft = ok
      .map((s) => s.ttftMs)
      .filter((x) => !Number.isNaN(x))
      .sort((x, y) => x - y);
    const lat = ok.map((s) => s.latencyMs).sort((x, y) => x - y);
    const tokens = ok.reduce((s, x) => s + x.tokens, 0);
    const errors = samples.filter((s) => !s.ok);
    const result = {
      bench: 'serve',
      clients,
      requests: samples.length,
      errors: errors.length,
      ...(errors.length ? { first_error: errors[0].error } : {}),
      requests_per_s: round(ok.length / wallS, 2),
      completion_tokens_per_s: round(tokens / wallS),
      completion_tokens: tokens,
      ttft_ms: { p50: round(percentile(ttft, 50)), p95: round(percentile(ttft, 95)) },
      latency_ms: { p50: round(percentile(lat, 50)), p95: round(percentile(lat, 95)) },
      wall_s: round(wallS, 2),
      max_tokens: maxTokens,
      server_concurrency: a.str('url') ? null : concurrency,
    };
    process.stdout.write(
      a.flag('json')
        ? JSON.stringify(result) + '\n'
        : `${result.requests_per_s} requests/s, ${result.completion_tokens_per_s} tokens/s, TTFT p50 ${result.ttft_ms.p50} ms / p95 ${result.ttft_ms.p95} ms, ` +
            `latency p50 ${result.latency_ms.p50} ms / p95 ${result.latency_ms.p95} ms, ${result.errors} errors (${clients} clients x ${perClient} requests)\n`,
    );
    return result;
  } finally {
    server?.kill('SIGTERM');
  }
}
