import { readDocuments } from '../train/documents.js';
import { Tokenizer } from '../tokenizer/index.js';
import { parse, UsageError } from './args.js';

const USAGE = `chimed tokenizer train --data FILE[,FILE] --out DIR [--vocab-size N] [--min-frequency N]
chimed tokenizer encode --tokenizer DIR --text T [--json]

train: byte-level BPE for Chinese medical text (frequent characters become whole tokens
first), written as HF tokenizer.json + tokenizer_config.json (ChatML template).
Data: .jsonl with "text" (or prompt/response) and plain .txt files.
encode: with any model's tokenizer folder (tokenizer.json or SentencePiece tokenizer.model).`;

export async function tokenizerCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const a = parse(rest, {
    data: { type: 'string' }, out: { type: 'string' }, 'vocab-size': { type: 'string' }, 'min-frequency': { type: 'string' },
    tokenizer: { type: 'string' }, text: { type: 'string' }, json: { type: 'boolean' },
  }, USAGE);
  if (a.help || !sub) { process.stdout.write(USAGE + '\n'); return sub ? 0 : 1; }
  if (sub === 'train') {
    const files = a.list('data');
    if (!files.length) throw new UsageError(`--data is required\n\n${USAGE}`);
    const t0 = Date.now();
    const tok = await Tokenizer.train(readDocuments(files), { vocabSize: a.int('vocab-size', 8000), minFrequency: a.int('min-frequency', 2) });
    await tok.save(a.need('out'));
    process.stdout.write(`tokenizer: ${tok.vocabSize} tokens in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${a.need('out')}\n`);
    return 0;
  }
  if (sub === 'encode') {
    const tok = Tokenizer.fromDir(a.need('tokenizer'));
    const ids = tok.encode(a.need('text'));
    process.stdout.write(a.flag('json') ? JSON.stringify({ ids, tokens: ids.map((i) => tok.decode([i])) }) + '\n' : ids.join(' ') + '\n');
    return 0;
  }
  throw new UsageError(`unknown tokenizer command "${sub}"\n\n${USAGE}`);
}
