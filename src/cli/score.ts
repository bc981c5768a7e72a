import fs from 'node:fs';
import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { Context } from '../engine/tensor.js';
import { loadModel } from '../model/checkpoint.js';
import { sequentialPositions } from '../model/llama.js';
import { Tokenizer } from '../tokenizer/index.js';
import { parse, UsageError } from './args.js';

const USAGE = `chimed score --model DIR (--ids 1,2,3 | --text T) [--json]

Per-token log-probabilities: for each token after the first, log p(token | the tokens before).`;

export async function scoreCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { model: { type: 'string' }, ids: { type: 'string' }, text: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  if (a.help) { process.stdout.write(USAGE + '\n'); return 0; }
  const dir = a.need('model');
  const model = await loadModel(dir, nativeKernels, false);
  let ids: number[];
  let tokenizer: Tokenizer | null = null;
  if (a.str('ids') !== undefined) {
    ids = a.list('ids').map((s) => {
      const x = Number(s);
      if (!Number.isInteger(x) || x < 0 || x >= model.config.vocab_size) throw new UsageError(`--ids: "${s}" is not a token id in [0, ${model.config.vocab_size})`);
      return x;
    });
  } else if (a.str('text') !== undefined) {
    if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) throw new UsageError(`${dir}: no tokenizer.json; use --ids`);
    tokenizer = await Tokenizer.fromDir(dir);
    ids = tokenizer.encode(a.str('text')!);
  } else throw new UsageError(`give --ids or --text\n\n${USAGE}`);
  if (ids.length < 2) throw new UsageError('need at least two tokens to score');
  if (ids.length > model.config.max_position_embeddings) throw new UsageError(`${ids.length} tokens exceed max_position_embeddings ${model.config.max_position_embeddings}`);
  const T = ids.length - 1;
  const targets = Int32Array.from(ids.slice(1));
  const ctx = new Context(nativeKernels, undefined, false);
  const logp = model.logprobs(ctx, { ids: Int32Array.from(ids.slice(0, T)), pos: sequentialPositions(1, T), B: 1, T }, targets);
  const logprobs = Array.from(logp.data);
  const total = logprobs.reduce((s, x) => s + x, 0);
  if (a.flag('json')) {
    process.stdout.write(JSON.stringify({ ids, tokens: tokenizer ? ids.map((i) => tokenizer!.decode([i])) : undefined, logprobs, total }) + '\n');
  } else {
    ids.slice(1).forEach((id, i) => process.stdout.write(`${id}\t${tokenizer ? JSON.stringify(tokenizer.decode([id])) : ''}\t${logprobs[i].toFixed(6)}\n`));
    process.stdout.write(`total\t${total.toFixed(6)}\tmean ${(total / T).toFixed(6)}\n`);
  }
  return 0;
}
