import { nativeKernels } from '../engine/native.js';
import { Context } from '../engine/tensor.js';
import { loadModel } from '../model/checkpoint.js';
import { sequentialPositions } from '../model/llama.js';
import { hasTokenizerFiles, Tokenizer } from '../tokenizer/index.js';
import { parse, UsageError } from '../io/argv.js';
import { writeFileAtomic } from '../io/atomic.js';
import { RewardModel } from '../model/reward.js';
import { ChatTemplate } from '../tokenizer/chat-template.js';
import { messagesOf, preferenceOf, readJsonl } from '../data/stage-files.js';
import { scoreAnswers } from '../train/rejection.js';

const USAGE = `chimed score --model DIR (--ids 1,2,3 | --text T) [--json]
chimed score --reward --model RM_DIR --data FILE.jsonl [--out FILE.jsonl]

Per-token log-probabilities: for each token after the first, log p(token | the tokens before).
With --reward: the reward model's score of each (prompt, response) line — {prompt | messages,
response} — or of both answers of each preference line {prompt, chosen, rejected}, with the
pairwise accuracy when pairs are given.`;

export async function scoreCommand(argv: string[]): Promise<number> {
  const a = parse(
    argv,
    {
      model: { type: 'string' },
      ids: { type: 'string' },
      text: { type: 'string' },
      json: { type: 'boolean' },
      reward: { type: 'boolean' },
      data: { type: 'string' },
      out: { type: 'string' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const dir = a.need('model');
  if (a.flag('reward')) return scoreRewards(dir, a.need('data'), a.str('out'));
  const model = await loadModel(dir, nativeKernels, false);
  let ids: number[];
  let tokenizer: Tokenizer | null = null;
  if (a.str('ids') !== undefined) {
    ids = a.list('ids').map((s) => {
      const x = Number(s);
      if (!Number.isInteger(x) || x < 0 || x >= model.config.vocab_size)
        throw new UsageError(`--ids: "${s}" is not a token id in [0, ${model.config.vocab_size})`);
      return x;
    });
  } else if (a.str('text') !== undefined) {
    if (!hasTokenizerFiles(dir)) throw new UsageError(`${dir}: no tokenizer.json or tokenizer.model; use --ids`);
    tokenizer = Tokenizer.fromDir(dir);
    ids = tokenizer.encode(a.str('text')!);
  } else throw new UsageError(`give --ids or --text\n\n${USAGE}`);
  if (ids.length < 2) throw new UsageError('need at least two tokens to score');
  if (ids.length > model.config.max_position_embeddings)
    throw new UsageError(`${ids.length} tokens exceed max_position_embeddings ${model.config.max_position_embeddings}`);
  const T = ids.length - 1;
  const targets = Int32Array.from(ids.slice(1));
  const ctx = new Context(nativeKernels, undefined, false);
  const logp = model.logprobs(ctx, { ids: Int32Array.from(ids.slice(0, T)), pos: sequentialPositions(1, T), B: 1, T }, targets);
  const logprobs = Array.from(logp.data);
  const total = logprobs.reduce((s, x) => s + x, 0);
  if (a.flag('json')) {
    process.stdout.write(
      JSON.stringify({ ids, tokens: tokenizer ? ids.map((i) => tokenizer!.decode([i])) : undefined, logprobs, total }) + '\n',
    );
  } else {
    ids
      .slice(1)
      .forEach((id, i) =>
        process.stdout.write(`${id}\t${tokenizer ? JSON.stringify(tokenizer.decode([id])) : ''}\t${logprobs[i].toFixed(6)}\n`),
      );
    process.stdout.write(`total\t${total.toFixed(6)}\tmean ${(total / T).toFixed(6)}\n`);
  }
  return 0;
}

/** Reward-model scores for a JSONL of answers or preference pairs. */
async function scoreRewards(dir: string, file: string, out: string | undefined): Promise<number> {
  const rm = await RewardModel.load(dir, nativeKernels, false);
  const tok = Tokenizer.fromDir(dir);
  const template = ChatTemplate.forModel(tok, dir);
  const rows = await readJsonl(file);
  const items = rows.flatMap(({ rec, where }) => {
    if (typeof rec.chosen === 'string') {
      const p = preferenceOf(rec, where);
      return [
        { prompt: p.prompt, answer: p.chosen },
        { prompt: p.prompt, answer: p.rejected },
      ];
    }
    const msgs = messagesOf(rec, where);
    if (msgs.at(-1)?.role !== 'assistant') throw new UsageError(`${where}: expected a response (or chosen/rejected) to score`);
    return [{ prompt: msgs.slice(0, -1), answer: msgs.at(-1)!.content }];
  });
  const r = scoreAnswers(rm, tok, template, items, { maxSource: 256, maxTarget: 256, batchSize: 8 });
  const pairs = typeof rows[0]?.rec.chosen === 'string';
  const lines = rows.map(
    ({ rec }, i) =>
      JSON.stringify(pairs ? { id: rec.id, reward_chosen: r[2 * i], reward_rejected: r[2 * i + 1] } : { id: rec.id, reward: r[i] }) + '\n',
  );
  if (out) await writeFileAtomic(out, lines.join(''));
  else process.stdout.write(lines.join(''));
  if (pairs) {
    const acc = rows.filter((_, i) => r[2 * i] > r[2 * i + 1]).length / rows.length;
    process.stderr.write(`pairwise accuracy ${(100 * acc).toFixed(1)}% on ${rows.length} pairs\n`);
  }
  return 0;
}
