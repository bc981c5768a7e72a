import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '../src/io/argv.js';
import { GOMP_SPINCOUNT_DEFAULT } from '../src/engine/native.js';
import { randomBenchModel } from './mcq.js';
import { startServerProcess, streamOnce } from './serve.js';

const USAGE = `chimed bench contention [--seconds 10] [--dim 256 --layers 4] [--k 5] [--json]

How chimed processes share the cores. Each figure is MCQ log-likelihood scoring (bench mcq)
for --seconds in its own process, with every process on all cores (the default):
  solo         one run alone
  two at once  two runs started together: each one's items/s
  next to serve  one run while a \`chimed serve\` in its own process streams replies to two
               clients back to back (and the server's tokens/s alone and meanwhile)
and each as a share of the solo rate. The children inherit the environment: set
OMP_WAIT_POLICY or GOMP_SPINCOUNT to compare wait policies against chimed's default.`;

const bin = fileURLToPath(new URL('../../bin/chimed.js', import.meta.url));

/** `chimed bench mcq --json` in a child process; its result line. */
function mcqProcess(model: string, seconds: number, k: number): Promise<{ items_per_s: number; threads: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [bin, 'bench', 'mcq', '--model', model, '--seconds', String(seconds), '--k', String(k), '--limit', '40', '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '',
      err = '';
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.stderr.on('data', (b) => {
      err += b;
    });
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(`bench mcq exited ${code}: ${err.trim()}`)),
    );
  });
}

/** Two clients streaming chat replies back to back until stopped; completion tokens/s while it ran. */
function busyClients(url: string): { stop: () => Promise<number> } {
  let running = true;
  let tokens = 0;
  const t0 = performance.now();
  const body = { model: 'chimed', messages: [{ role: 'user', content: '高血压常用什么药？' }], max_tokens: 64, temperature: 0 };
  const headers = { 'content-type': 'application/json' };
  const loops = Array.from({ length: 2 }, async () => {
    while (running) {
      const s = await streamOnce(url, headers, body);
      if (!s.ok) throw new Error(`serve: ${s.error}`);
      tokens += s.tokens;
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return tokens / ((performance.now() - t0) / 1000);
    },
  };
}

const r2 = (x: number) => Math.round(x * 100) / 100;

export async function benchContention(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parse(
    argv,
    { seconds: { type: 'string' }, dim: { type: 'string' }, layers: { type: 'string' }, k: { type: 'string' }, json: { type: 'boolean' } },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  const seconds = a.num('seconds', 10, (x) => x > 0, 'a positive number'),
    k = a.int('k', 5);
  // read before the addon loads and fills in chimed's default
  const policy =
    ['OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'OMP_NUM_THREADS']
      .filter((v) => process.env[v] !== undefined)
      .map((v) => `${v}=${process.env[v]}`)
      .join(' ') || `chimed's default (GOMP_SPINCOUNT=${GOMP_SPINCOUNT_DEFAULT})`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimed-bench-contention-'));
  try {
    const model = await randomBenchModel(path.join(tmp, 'model'), a.int('dim', 256), a.int('layers', 4));
    const solo = (await mcqProcess(model, seconds, k)).items_per_s;
    const pair = (await Promise.all([mcqProcess(model, seconds, k), mcqProcess(model, seconds, k)])).map((r) => r.items_per_s);
    const { child, url } = await startServerProcess([
      '--model',
      model,
      '--port',
      '0',
      '--concurrency',
      '1',
      '--queue',
      '4',
      '--log',
      'error',
    ]);
    let serve: { alone: number; with_mcq: number; mcq: number };
    try {
      await streamOnce(url, { 'content-type': 'application/json' }, { messages: [{ role: 'user', content: '你好' }], max_tokens: 4 }); // warm-up
      const alone = busyClients(url);
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const serveAlone = await alone.stop();
      const busy = busyClients(url);
      const mcq = (await mcqProcess(model, seconds, k)).items_per_s;
      serve = { alone: serveAlone, with_mcq: await busy.stop(), mcq };
    } finally {
      child.kill('SIGTERM');
    }
    const result = {
      bench: 'contention',
      policy,
      seconds,
      cpus: os.availableParallelism(),
      load_average_1m: r2(os.loadavg()[0]),
      mcq_solo_items_per_s: solo,
      mcq_pair_items_per_s: pair,
      mcq_pair_share: pair.map((x) => r2(x / solo)),
      mcq_next_to_serve_items_per_s: serve.mcq,
      mcq_next_to_serve_share: r2(serve.mcq / solo),
      serve_tokens_per_s_alone: r2(serve.alone),
      serve_tokens_per_s_with_mcq: r2(serve.with_mcq),
      serve_share: r2(serve.with_mcq / serve.alone),
    };
    const pct = (x: number) => `${Math.round(100 * x)}%`;
    process.stdout.write(
      a.flag('json')
        ? JSON.stringify(result) + '\n'
        : [
            `wait policy: ${policy}; ${result.cpus} cpus, load average ${result.load_average_1m} at the end`,
            `mcq solo:            ${solo} items/s`,
            `mcq two at once:     ${pair.join(' and ')} items/s (${result.mcq_pair_share.map(pct).join(', ')} of solo)`,
            `mcq next to serve:   ${serve.mcq} items/s (${pct(result.mcq_next_to_serve_share)} of solo)`,
            `serve (2 clients):   ${result.serve_tokens_per_s_alone} tokens/s alone, ${result.serve_tokens_per_s_with_mcq} next to mcq (${pct(result.serve_share)})`,
          ].join('\n') + '\n',
    );
    return result;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
