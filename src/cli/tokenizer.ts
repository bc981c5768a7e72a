import { readDocuments } from '../data/stage-files.js';
import { Tokenizer } from '../tokenizer/index.js';
import { commandList, dispatch, parse, UsageError, type Command } from '../io/argv.js';
import { givenValues, helpLines, optionFields, parseGiven, parseOptions } from '../io/schema-options.js';
import { TokenizerTrainSchema } from '../pipeline/config.js';

const TRAIN_FIELDS = optionFields(TokenizerTrainSchema);

const TRAIN_USAGE = `chimed tokenizer train --data FILE[,FILE] --out DIR [options]

Byte-level BPE for Chinese medical text (frequent characters become whole tokens first),
written as HF tokenizer.json + tokenizer_config.json (ChatML template).
Data: .jsonl with "text" (or prompt/response) and plain .txt files.

${helpLines(TRAIN_FIELDS).join('\n')}`;

const ENCODE_USAGE = `chimed tokenizer encode --tokenizer DIR --text T [--json]

With any model's tokenizer folder (tokenizer.json or SentencePiece tokenizer.model).`;

const COMMANDS: Record<string, Command> = {
  train: {
    summary: 'train a byte-level BPE tokenizer',
    async run(argv) {
      const a = parse(argv, { data: { type: 'string' }, out: { type: 'string' }, ...parseOptions(TRAIN_FIELDS) }, TRAIN_USAGE);
      if (a.help) {
        process.stdout.write(TRAIN_USAGE + '\n');
        return 0;
      }
      const files = a.list('data');
      if (!files.length) throw new UsageError(`--data is required\n\n${TRAIN_USAGE}`);
      const t0 = Date.now();
      const o = parseGiven(TokenizerTrainSchema, TRAIN_FIELDS, givenValues(TRAIN_FIELDS, a), TRAIN_USAGE);
      const tok = await Tokenizer.train(readDocuments(files), { vocabSize: o.vocab_size, minFrequency: o.min_frequency });
      await tok.save(a.need('out'));
      process.stdout.write(`tokenizer: ${tok.vocabSize} tokens in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${a.need('out')}\n`);
      return 0;
    },
  },
  encode: {
    summary: 'token ids (and tokens with --json) of a text',
    async run(argv) {
      const a = parse(argv, { tokenizer: { type: 'string' }, text: { type: 'string' }, json: { type: 'boolean' } }, ENCODE_USAGE);
      if (a.help) {
        process.stdout.write(ENCODE_USAGE + '\n');
        return 0;
      }
      const tok = Tokenizer.fromDir(a.need('tokenizer'));
      const ids = tok.encode(a.need('text'));
      process.stdout.write(a.flag('json') ? JSON.stringify({ ids, tokens: ids.map((i) => tok.decode([i])) }) + '\n' : ids.join(' ') + '\n');
      return 0;
    },
  },
};

export function tokenizerCommand(argv: string[]): Promise<number> {
  return dispatch(
    argv,
    COMMANDS,
    `chimed tokenizer train|encode ...\n\n${commandList(COMMANDS)}\n\n${TRAIN_USAGE}\n\n${ENCODE_USAGE}`,
    'tokenizer command',
  );
}
