import { allowedHostSet, LOCAL_HOSTS } from '../serve/access.js';
import { Annotator } from '../serve/annotate.js';
import { buildServer, startServer, stopServer } from '../serve/server.js';
import { parse, UsageError } from '../io/argv.js';
import { applyThreads, MODEL_FLAGS, MODEL_USAGE, loadPolicy } from './common.js';

const USAGE = `chimed serve --model DIR [options]

An OpenAI-compatible HTTP API (POST /v1/chat/completions, POST /v1/completions,
GET /v1/models, GET /health) and a web UI at / for chat and preference annotation.

  --host H                 address to bind (default 127.0.0.1: this machine only)
  --port N                 port (default 8000; 0 picks a free one)
  --api-key KEY            require "Authorization: Bearer KEY" on every route but /health,
                           the web UI files and /ui/config (or set CHIMED_API_KEY, which
                           keeps the key out of the process list)
  --allowed-hosts H,H      without --api-key the server answers only requests whose Host is
                           localhost, 127.0.0.1, ::1 or the --host address (a defence against
                           DNS rebinding); add the names clients use, e.g. with --host 0.0.0.0
  --model-name NAME        the model id clients send (default chimed)
  --concurrency N          generations running at once (default 1)
  --queue N                requests waiting for a slot before 429 (default 16)
  --max-tokens-limit N     most completion tokens per request (default 1024)
  --annotate-prompts FILE  prompts to annotate (JSONL {id?, prompt, history?} / {messages}, or one per line)
  --annotate-out FILE      preference JSONL to append verdicts to ({id, prompt, chosen, rejected, history?})
  --annotate-k N           replies sampled per prompt, 2 to 8 (default 2)
  --annotate-temperature X their sampling temperature (default 1; higher gives more varied pairs)
  --threads N              compute threads (default: all cores)
  --log LEVEL              request log: silent, error, warn (default), info

${MODEL_USAGE}`;

export async function serveCommand(argv: string[]): Promise<number> {
  const a = parse(
    argv,
    {
      ...MODEL_FLAGS,
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string' },
      'allowed-hosts': { type: 'string' },
      'model-name': { type: 'string' },
      concurrency: { type: 'string' },
      queue: { type: 'string' },
      'max-tokens-limit': { type: 'string' },
      'annotate-prompts': { type: 'string' },
      'annotate-out': { type: 'string' },
      'annotate-k': { type: 'string' },
      'annotate-temperature': { type: 'string' },
      threads: { type: 'string' },
      log: { type: 'string' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const host = a.str('host') ?? '127.0.0.1';
  const port = a.num('port', 8000, (x) => Number.isInteger(x) && x >= 0 && x < 65536, 'a port number (0-65535)');
  const queueSize = a.num('queue', 16, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer');
  const log = a.str('log') ?? 'warn';
  if (!['silent', 'error', 'warn', 'info'].includes(log)) throw new UsageError(`--log: expected silent, error, warn or info, got "${log}"`);
  const prompts = a.str('annotate-prompts'),
    out = a.str('annotate-out');
  if (Boolean(prompts) !== Boolean(out)) throw new UsageError(`--annotate-prompts and --annotate-out go together\n\n${USAGE}`);
  const apiKey = a.str('api-key') ?? process.env.CHIMED_API_KEY;
  const allowedHosts = (a.str('allowed-hosts') ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  // the address it was told to bind is a name clients use, unless it is the wildcard
  const wildcard = host === '0.0.0.0' || host === '::';
  if (!wildcard) allowedHosts.push(host);
  try {
    allowedHostSet(allowedHosts);
  } catch (e) {
    throw new UsageError(`--allowed-hosts: ${(e as Error).message}`);
  }
  applyThreads(a);

  const chat = await loadPolicy(a, false);
  const annotator = prompts && out ? await Annotator.open({ promptsFile: prompts, outFile: out }) : undefined;
  const app = await buildServer({
    chat,
    apiKey,
    allowedHosts,
    annotator,
    queueSize,
    modelName: a.str('model-name') ?? 'chimed',
    concurrency: a.int('concurrency', 1),
    maxTokensLimit: a.int('max-tokens-limit', 1024),
    annotate: {
      k: a.num('annotate-k', 2, (x) => Number.isInteger(x) && x >= 2 && x <= 8, 'an integer from 2 to 8'),
      temperature: a.num('annotate-temperature', 1, (x) => x >= 0 && x <= 2, 'a number in [0, 2]'),
    },
    logLevel: log as 'warn',
  });
  const url = await startServer(app, host, port);
  process.stdout.write(`chimed serve: ${url}  (web UI ${url}/, API ${url}/v1, model "${a.str('model-name') ?? 'chimed'}")\n`);
  if (annotator)
    process.stdout.write(`annotation: ${annotator.progress().total} prompts, ${annotator.progress().done} done; pairs -> ${out}\n`);
  if (!apiKey && !LOCAL_HOSTS.includes(host)) {
    process.stderr.write(
      `warning: listening on ${host} without --api-key: anyone who can reach it may use the model` +
        `${wildcard ? '; requests naming another host than localhost get 403 unless it is in --allowed-hosts' : ''}\n`,
    );
  }

  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.stdout.write('chimed serve: shutting down (running requests may finish; Ctrl-C again to quit now)\n');
      process.once('SIGINT', () => process.exit(130));
      stopServer(app).then(resolve, (e) => {
        process.stderr.write(`chimed serve: ${(e as Error).message}\n`);
        resolve();
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return 0;
}
