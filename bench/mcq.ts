import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeKernels, getThreads, setThreads } from '../src/engine/native.js';
import { evaluateMcq } from '../src/eval/mcq.js';
import { LlamaEvalModel } from '../src/eval/model.js';
import { readMcqFile } from '../src/eval/read.js';
import { saveModel } from '../src/model/checkpoint.js';
import { parseModelConfig } from '../src/model/config.js';
import { Llama } from '../src/model/llama.js';
import { loadChatModel } from '../src/model/load.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { writeCorpus } from '../src/corpus/generate.js';
import { isPositiveInt, parse } from '../src/io/argv.js';

const USAGE = `chimed bench mcq [--model DIR] [--dim 256 --layers 4] [--k 5] [--limit 200] [--seconds S] [--threads N] [--json]

Items/s of MCQ log-likelihood scoring (k-shot prompts from the dev split, one forward pass
per item scores every option letter). Without --model: a random model of the given size with a
byte tokenizer, on the built-in corpus's MCQ items. --seconds: score for that long (cycling
through the items) instead of once through them, so concurrent runs overlap for the whole
measurement (bench contention).`;

/** A random LLaMA of `dim` x `layers` with a byte tokenizer in DIR (the MCQ benches' model). */
export async function randomBenchModel(dir: string, dim: number, layers: number): Promise<string> {
  const tok = Tokenizer.bytes();
  const cfg = parseModelConfig(
    {
      vocab_size: tok.vocabSize,
      hidden_size: dim,
      intermediate_size: Math.round((dim * 8) / 3 / 32) * 32,
      num_hidden_layers: layers,
      num_attention_heads: Math.max(1, dim / 64),
      max_position_embeddings: 8192,
    },
    'bench',
  );
  await saveModel(dir, Llama.random(nativeKernels, cfg, 1, false));
  await tok.save(dir);
  return dir;
}

export async function benchMcq(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parse(
    argv,
    {
      model: { type: 'string' },
      dim: { type: 'string' },
      layers: { type: 'string' },
      k: { type: 'string' },
      limit: { type: 'string' },
      seconds: { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  const threads = a.optNum('threads', isPositiveInt, 'a positive integer');
  if (threads) setThreads(threads);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimed-bench-mcq-'));
  try {
    const modelDir = a.str('model') ?? (await randomBenchModel(path.join(tmp, 'model'), a.int('dim', 256), a.int('layers', 4)));
    await writeCorpus(path.join(tmp, 'corpus'), { seed: 7, heldoutFraction: 0.1 });
    const items = (await readMcqFile(path.join(tmp, 'corpus', 'mcq_test.jsonl'))).slice(0, a.int('limit', 200));
    const dev = await readMcqFile(path.join(tmp, 'corpus', 'mcq_dev.jsonl'));
    const cm = await loadChatModel({ model: modelDir });
    const model = new LlamaEvalModel(cm, { chat: false });
    const k = a.int('k', 5),
      budget = a.str('seconds') ? a.num('seconds', undefined, (x) => x > 0, 'a positive number') : 0;
    const t0 = process.hrtime.bigint();
    const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9;
    let n = 0,
      shots = 0;
    // with a time budget, a few items at a time so the run ends close to it
    const chunk = budget ? 4 : items.length;
    do {
      const r = await evaluateMcq(model, items.slice(n % items.length, (n % items.length) + chunk), dev, { k, mode: 'loglik' });
      n += r.n;
      shots = r.k;
    } while (elapsed() < budget);
    const s = elapsed();
    const result = {
      bench: 'mcq',
      items_per_s: Math.round((n / s) * 100) / 100,
      items: n,
      k: shots,
      seconds: Math.round(s * 100) / 100,
      params: cm.model.params.size,
      threads: getThreads(),
    };
    process.stdout.write(
      a.flag('json')
        ? JSON.stringify(result) + '\n'
        : `${result.items_per_s} items/s (${n} items, ${shots}-shot, ${result.params.toLocaleString('en-US')} params)\n`,
    );
    return result;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
