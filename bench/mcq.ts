import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeKernels, getThreads } from '../src/engine/native.js';
import { evaluateMcq } from '../src/eval/mcq.js';
import { LlamaEvalModel } from '../src/eval/model.js';
import { readMcqFile } from '../src/eval/read.js';
import { saveModel } from '../src/model/checkpoint.js';
import { parseModelConfig } from '../src/model/config.js';
import { Llama } from '../src/model/llama.js';
import { loadChatModel } from '../src/model/load.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { writeCorpus } from '../src/corpus/generate.js';
import { parse } from '../src/cli/args.js';
import { applyThreads } from '../src/cli/common.js';

const USAGE = `chimed bench mcq [--model DIR] [--dim 256 --layers 4] [--k 5] [--limit 200] [--threads N] [--json]

Items/s of MCQ log-likelihood scoring (k-shot prompts from the dev split, one forward pass
per item scores every option letter). Without --model: a random model of the given size with a
byte tokenizer, on the built-in corpus's MCQ items.`;

export async function benchMcq(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parse(argv, { model: { type: 'string' }, dim: { type: 'string' }, layers: { type: 'string' }, k: { type: 'string' }, limit: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  if (a.help) { process.stdout.write(USAGE + '\n'); return null; }
  applyThreads(a.str('threads') ? a.int('threads') : undefined);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimed-bench-mcq-'));
  try {
    let modelDir = a.str('model');
    if (!modelDir) {
      modelDir = path.join(tmp, 'model');
      const tok = Tokenizer.bytes();
      const dim = a.int('dim', 256);
      const cfg = parseModelConfig({ vocab_size: tok.vocabSize, hidden_size: dim, intermediate_size: Math.round((dim * 8) / 3 / 32) * 32, num_hidden_layers: a.int('layers', 4), num_attention_heads: Math.max(1, dim / 64), max_position_embeddings: 8192 }, 'bench');
      await saveModel(modelDir, Llama.random(nativeKernels, cfg, 1, false));
      await tok.save(modelDir);
    }
    await writeCorpus(path.join(tmp, 'corpus'), { seed: 7, heldoutFraction: 0.1 });
    const items = (await readMcqFile(path.join(tmp, 'corpus', 'mcq_test.jsonl'))).slice(0, a.int('limit', 200));
    const dev = await readMcqFile(path.join(tmp, 'corpus', 'mcq_dev.jsonl'));
    const cm = await loadChatModel({ model: modelDir });
    const t0 = process.hrtime.bigint();
    const r = await evaluateMcq(new LlamaEvalModel(cm, { chat: false }), items, dev, { k: a.int('k', 5), mode: 'loglik' });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const result = { bench: 'mcq', items_per_s: Math.round((r.n / s) * 100) / 100, items: r.n, k: r.k, seconds: Math.round(s * 100) / 100, params: cm.model.params.size, threads: getThreads() };
    process.stdout.write(a.flag('json') ? JSON.stringify(result) + '\n' : `${result.items_per_s} items/s (${r.n} items, ${r.k}-shot, ${result.params.toLocaleString('en-US')} params)\n`);
    return result;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
