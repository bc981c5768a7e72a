import path from 'node:path';
import { loadCamiJsonl } from '../eval/cami.js';
import { evaluateMcq } from '../eval/mcq.js';
import { LlamaEvalModel } from '../eval/model.js';
import { evaluateNer } from '../eval/ner.js';
import { readMcqFile, readNerFile } from '../eval/read.js';
import { bundledScalePath, compareScaleResults, evaluateScale, loadScale } from '../eval/scale.js';
import { generationScores, perplexity } from '../eval/suite.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { loadChatModel } from '../model/load.js';
import { isRewardModel } from '../model/reward.js';
import { commandList, dispatch, parse, UsageError, type Command } from '../io/argv.js';
import { applyThreads, MODEL_FLAGS, MODEL_USAGE } from './common.js';

const COMMON = { ...MODEL_FLAGS, data: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' }, out: { type: 'string' }, chat: { type: 'boolean' }, threads: { type: 'string' } } as const;
const COMMON_USAGE = `  --data FILE[,FILE]   evaluation items
  --limit N            evaluate the first N items
  --chat               prompt through the chat template (fine-tuned models)
  --out FILE           write the full result (predictions included) as JSON
  --json               print the summary as JSON
${MODEL_USAGE}`;

type Parsed = ReturnType<typeof parse>;

async function report(a: Parsed, summary: Record<string, unknown>, full: unknown, text: string): Promise<number> {
  if (a.str('out')) await writeJsonAtomic(a.str('out')!, full);
  process.stdout.write(a.flag('json') ? JSON.stringify(summary) + '\n' : text + '\n');
  return 0;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function evalCommand(argv: string[]): Promise<number> {
  return dispatch(argv, SUBCOMMANDS, `chimed eval mcq|gen|ner|scale|ppl --model DIR [options]   (SUBCOMMAND --help for its options)\n\n${commandList(SUBCOMMANDS)}`, 'evaluation');
}

const SUBCOMMANDS: Record<string, Command> = {
  mcq: {
    summary: 'multiple-choice accuracy and weighted F1 (CMMLU/C-Eval CSV, CMExam, normalised JSONL)',
    async run(argv) {
      const usage = `chimed eval mcq --model DIR --data TEST [--dev DEV] [--k 5] [--mode loglik|cloze|generate]

loglik: the option letter's likelihood after the k-shot prompt; cloze: each option's text as
the answer, length-normalised (for small / base models); generate: answer extraction cascade.
${COMMON_USAGE}`;
      const a = parse(argv, { ...COMMON, dev: { type: 'string' }, k: { type: 'string' }, mode: { type: 'string' } }, usage);
      if (a.help) { process.stdout.write(usage + '\n'); return 0; }
      applyThreads(a);
      const mode = a.str('mode') ?? 'loglik';
      if (mode !== 'loglik' && mode !== 'cloze' && mode !== 'generate') throw new UsageError(`--mode: expected loglik, cloze or generate, got "${mode}"`);
      const cm = await loadChatModel({ model: a.need('model'), adapter: a.str('adapter'), tokenizer: a.str('tokenizer'), template: a.str('template') });
      const items = (await Promise.all(a.list('data').map(readMcqFile))).flat().slice(0, a.str('limit') ? a.int('limit') : undefined);
      if (!items.length) throw new UsageError(`--data: no items\n\n${usage}`);
      const dev = a.str('dev') ? (await Promise.all(a.list('dev').map(readMcqFile))).flat() : [];
      const t0 = Date.now();
      const r = await evaluateMcq(new LlamaEvalModel(cm, { chat: a.flag('chat') }), items, dev, { k: dev.length ? a.num('k', 5) : 0, mode });
      const secs = (Date.now() - t0) / 1000;
      const lines = [`MCQ (${mode}, ${r.k}-shot): accuracy ${pct(r.accuracy)}, weighted F1 ${pct(r.weighted_f1)} on ${r.n} items (${(r.n / secs).toFixed(1)} items/s)` +
        (mode === 'generate' ? `, extraction failures ${pct(r.extraction_failure_rate)}` : ''),
        ...Object.entries(r.per_subject).map(([s, x]) => `  ${s}: ${pct(x.accuracy)} (${x.n})`)];
      return report(a, { accuracy: r.accuracy, weighted_f1: r.weighted_f1, n: r.n, items_per_s: r.n / secs }, r, lines.join('\n'));
    },
  },

  gen: {
    summary: 'BLEU-1..4 and ROUGE-1/2/L of replies to held-out conversations',
    async run(argv) {
      const usage = `chimed eval gen --model DIR --data CONVERSATIONS.jsonl [--max-new-tokens 128]\n\n${COMMON_USAGE}`;
      const a = parse(argv, { ...COMMON, 'max-new-tokens': { type: 'string' } }, usage);
      if (a.help) { process.stdout.write(usage + '\n'); return 0; }
      applyThreads(a);
      const cm = await loadChatModel({ model: a.need('model'), adapter: a.str('adapter'), tokenizer: a.str('tokenizer'), template: a.str('template') });
      const r = await generationScores(cm, a.need('data'), { limit: a.int('limit', 200), maxNewTokens: a.int('max-new-tokens', 128) });
      const text = `on ${r.n} conversations: BLEU-1 ${r.bleu1.toFixed(2)}  BLEU-2 ${r.bleu2.toFixed(2)}  BLEU-3 ${r.bleu3.toFixed(2)}  BLEU-4 ${r.bleu4.toFixed(2)}  ROUGE-1 ${r.rouge1.toFixed(2)}  ROUGE-2 ${r.rouge2.toFixed(2)}  ROUGE-L ${r.rougeL.toFixed(2)}`;
      return report(a, r, r, text);
    },
  },

  ner: {
    summary: 'few-shot NER: strict and type-agnostic span F1 (CCKS-2019, CMeEE)',
    async run(argv) {
      const usage = `chimed eval ner --model DIR --data TEST --shots TRAIN [--k 3] [--format ner|cmeee|ccks]\n\n${COMMON_USAGE}`;
      const a = parse(argv, { ...COMMON, shots: { type: 'string' }, k: { type: 'string' }, format: { type: 'string' } }, usage);
      if (a.help) { process.stdout.write(usage + '\n'); return 0; }
      applyThreads(a);
      const fmt = a.str('format') as 'ner' | 'cmeee' | 'ccks' | undefined;
      const cm = await loadChatModel({ model: a.need('model'), adapter: a.str('adapter'), tokenizer: a.str('tokenizer'), template: a.str('template') });
      const examples = (await readNerFile(a.need('data'), fmt)).slice(0, a.str('limit') ? a.int('limit') : undefined);
      const shots = await readNerFile(a.need('shots'), fmt);
      const r = await evaluateNer(new LlamaEvalModel(cm, { chat: a.flag('chat') }), examples, shots, { k: a.int('k', 3) });
      const text = `NER on ${r.n} texts (${r.k}-shot): strict span F1 ${pct(r.strict.micro.f1)}, type-agnostic F1 ${pct(r.untyped.f1)}, mention F1 ${pct(r.mention.micro.f1)} ` +
        `(ceiling of this output format: ${pct(r.span_ceiling_f1)})\n` + Object.entries(r.strict.per_type).map(([t, x]) => `  ${t}: F1 ${pct(x.f1)} (P ${pct(x.precision)}, R ${pct(x.recall)})`).join('\n');
      return report(a, { strict_f1: r.strict.micro.f1, untyped_f1: r.untyped.f1, mention_f1: r.mention.micro.f1, n: r.n }, r, text);
    },
  },

  scale: {
    summary: "attitude scales per subscale (CAMI adapted, the project's Chinese scale, your own)",
    async run(argv) {
      const usage = `chimed eval scale --model DIR[,DIR...] [--scale zh|cami|FILE] [--samples 5] [--temperature 0.7]

Each item is asked --samples times; the chosen option is parsed (number or option text),
reverse-coded items flipped, and subscale / total scores compared across the models.
  --scale zh     the project's Chinese scale (corpus/scales; not a validated instrument)
  --scale cami   the adapted CAMI items in ../shared/data/dev/cami_adapted_27_en.jsonl
${COMMON_USAGE}`;
      const a = parse(argv, { ...COMMON, scale: { type: 'string' }, samples: { type: 'string' }, temperature: { type: 'string' } }, usage);
      if (a.help) { process.stdout.write(usage + '\n'); return 0; }
      applyThreads(a);
      const which = a.str('scale') ?? 'zh';
      const scale = which === 'zh' ? loadScale(bundledScalePath('mental_illness_attitudes_zh.json'))
        : which === 'cami' ? loadCamiJsonl(path.resolve('../shared/data/dev/cami_adapted_27_en.jsonl'))
        : which.endsWith('.jsonl') ? loadCamiJsonl(which) : loadScale(which);
      const results = [];
      for (const dir of a.list('model')) {
        if (isRewardModel(dir)) throw new UsageError(`${dir}: a reward model cannot answer a scale`);
        const cm = await loadChatModel({ model: dir, tokenizer: a.str('tokenizer'), template: a.str('template') });
        const result = await evaluateScale(new LlamaEvalModel(cm, { chat: a.flag('chat') }), scale, { n: a.int('samples', 5), temperature: a.num('temperature', 0.7) });
        results.push({ model: path.basename(path.resolve(dir)) === 'final' ? path.resolve(dir).split(path.sep).slice(-2).join('/') : path.basename(dir), result });
      }
      const table = compareScaleResults(results);
      return report(a, { models: results.map((r) => ({ model: r.model, total: r.result.total.score, subscales: Object.fromEntries(r.result.subscales.map((s) => [s.name, s.score])) })) }, results, table.markdown);
    },
  },

  ppl: {
    summary: 'perplexity on held-out text',
    async run(argv) {
      const usage = `chimed eval ppl --model DIR --data FILE[,FILE] [--block-size 256] [--max-blocks 64]\n\n${COMMON_USAGE}`;
      const a = parse(argv, { ...COMMON, 'block-size': { type: 'string' }, 'max-blocks': { type: 'string' } }, usage);
      if (a.help) { process.stdout.write(usage + '\n'); return 0; }
      applyThreads(a);
      const cm = await loadChatModel({ model: a.need('model'), adapter: a.str('adapter'), tokenizer: a.str('tokenizer'), template: a.str('template') });
      const r = await perplexity(cm, a.list('data'), a.int('block-size', 256), a.int('max-blocks', 64));
      return report(a, r, r, `perplexity ${r.ppl.toFixed(3)} (loss ${r.loss.toFixed(4)}) over ${r.tokens} tokens`);
    },
  },
};

