import readline from 'node:readline/promises';
import { generateReplies } from '../model/chat.js';
import type { ChatMessage } from '../tokenizer/chat-template.js';
import { promptOf, readJsonl, recordId } from '../data/stage-files.js';
import { writeFileAtomic } from '../io/atomic.js';
import { generate } from '../model/generate.js';
import { parse, UsageError } from '../io/argv.js';
import { applyThreads, MODEL_FLAGS, MODEL_USAGE, loadPolicy } from './common.js';

const SAMPLING_FLAGS = {
  'max-new-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  threads: { type: 'string' },
} as const;

const SAMPLING_USAGE = `  --max-new-tokens N (default 256)  --temperature X (default 0: greedy)  --top-k N  --top-p X
  --repetition-penalty X  --seed N  --threads N`;

function samplingFrom(a: ReturnType<typeof parse>) {
  return {
    maxNewTokens: a.int('max-new-tokens', 256),
    temperature: a.num('temperature', 0),
    topK: a.str('top-k') ? a.int('top-k') : undefined,
    topP: a.str('top-p') ? a.num('top-p') : undefined,
    repetitionPenalty: a.num('repetition-penalty', 1),
    seed: a.num('seed', 0),
  };
}

const GEN_USAGE = `chimed generate --model DIR (--prompt TEXT | --input FILE.jsonl) [--output FILE.jsonl] [options]

Answers prompts with the model's chat template (or continues raw text with --raw). Input
lines: {id?, messages} or {id?, prompt, history?}; output lines: {id, prompt, outputs: [..]}.

  --n N                samples per prompt (default 1)
  --raw                no chat template: continue the text as given
  --batch-size N       prompts generated together (default 8)
${SAMPLING_USAGE}
${MODEL_USAGE}`;

export async function generateCommand(argv: string[]): Promise<number> {
  const a = parse(
    argv,
    {
      ...MODEL_FLAGS,
      ...SAMPLING_FLAGS,
      prompt: { type: 'string' },
      input: { type: 'string' },
      output: { type: 'string' },
      n: { type: 'string' },
      raw: { type: 'boolean' },
      'batch-size': { type: 'string' },
    },
    GEN_USAGE,
  );
  if (a.help) {
    process.stdout.write(GEN_USAGE + '\n');
    return 0;
  }
  applyThreads(a);
  const { model, tokenizer, template } = await loadPolicy(a, false);
  const items: { id: string; messages: ChatMessage[] }[] = [];
  if (a.str('prompt') !== undefined) items.push({ id: '0', messages: [{ role: 'user', content: a.str('prompt')! }] });
  else if (a.str('input')) {
    for (const [i, { rec, where }] of (await readJsonl(a.str('input')!)).entries()) {
      items.push({ id: recordId(rec, i), messages: promptOf(rec, where, true) });
    }
  } else throw new UsageError(`give --prompt or --input\n\n${GEN_USAGE}`);
  const s = { ...samplingFrom(a), n: a.int('n', 1), batchSize: a.int('batch-size', 8) };
  const outs = a.flag('raw')
    ? generate(
        model,
        items.map((it) => tokenizer.encode(it.messages.map((m) => m.content).join('\n'))),
        { ...s, eosIds: [tokenizer.eosId], decode: (ids) => tokenizer.decode(ids) },
      )
    : generateReplies(
        model,
        tokenizer,
        template,
        items.map((it) => it.messages),
        s,
      );
  const lines = items.map(
    (it, i) =>
      JSON.stringify({
        id: it.id,
        prompt: it.messages.at(-1)!.content,
        outputs: outs[i].map((g) => g.text),
        finish_reasons: outs[i].map((g) => g.finishReason),
      }) + '\n',
  );
  if (a.str('output')) await writeFileAtomic(a.str('output')!, lines.join(''));
  else process.stdout.write(items.length === 1 && s.n === 1 && !a.str('input') ? `${outs[0][0].text}\n` : lines.join(''));
  return 0;
}

const CHAT_USAGE = `chimed chat --model DIR [options]

A multi-turn chat in the terminal, replies streamed as they are generated.
Commands: /reset (new conversation), /system TEXT (set a system prompt), /exit.

${SAMPLING_USAGE}
${MODEL_USAGE}`;

export async function chatCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { ...MODEL_FLAGS, ...SAMPLING_FLAGS }, CHAT_USAGE);
  if (a.help) {
    process.stdout.write(CHAT_USAGE + '\n');
    return 0;
  }
  applyThreads(a);
  const { model, tokenizer, template } = await loadPolicy(a, false);
  const s = samplingFrom(a);
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  let history: ChatMessage[] = [];
  process.stdout.write('chimed chat: /reset, /system TEXT, /exit\n');
  for (;;) {
    let line: string;
    try {
      line = (await rl.question('你> ')).trim();
    } catch {
      break;
    }
    if (line === '/exit') break;
    if (line === '/reset') {
      history = history.filter((m) => m.role === 'system');
      continue;
    }
    if (line.startsWith('/system ')) {
      history = [{ role: 'system', content: line.slice(8) }, ...history.filter((m) => m.role !== 'system')];
      continue;
    }
    if (!line) continue;
    history.push({ role: 'user', content: line });
    process.stdout.write('助手> ');
    const ids: number[] = [];
    let printed = '';
    const [[g]] = generateReplies(model, tokenizer, template, [history], {
      ...s,
      onToken: (_row, id) => {
        ids.push(id);
        const text = tokenizer.decode(ids, { skipSpecialTokens: true });
        // print only completed characters: a partial UTF-8 sequence decodes to U+FFFD
        if (!text.endsWith('\uFFFD')) {
          process.stdout.write(text.slice(printed.length));
          printed = text;
        }
      },
    });
    const reply = g.text ?? '';
    if (reply.length > printed.length && reply.startsWith(printed)) process.stdout.write(reply.slice(printed.length));
    process.stdout.write('\n');
    history.push({ role: 'assistant', content: reply });
  }
  rl.close();
  return 0;
}
