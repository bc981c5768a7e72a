import path from 'node:path';
import { loadCamiJsonl } from '../eval/cami.js';
import { evaluateMcq } from '../eval/mcq.js';
import { LlamaEvalModel } from '../eval/model.js';
import { checkUniqueIds, mcqItems, nerItems, type EvalItem } from '../eval/items.js';
import { describeEstimates, summarizeItems } from '../eval/metrics.js';
import { evaluateNer, nerFormatFor } from '../eval/ner.js';
import { genPredictionItems, mcqPredictionItems, nerPredictions } from '../eval/predictions.js';
import { readMcqFile, readNerFile } from '../eval/read.js';
import { bundledScalePath, compareScaleResults, evaluateScale, loadScale } from '../eval/scale.js';
import { generationItems, perplexity, readConversations } from '../eval/suite.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { loadChatModel } from '../model/load.js';
import { isRewardModel } from '../model/reward.js';
import { commandList, dispatch, parse, UsageError, type Command } from '../io/argv.js';
import { applyThreads, baseDtypeFlag, MODEL_FLAGS, MODEL_USAGE } from './common.js';

const COMMON = {
  ...MODEL_FLAGS,
  data: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
  out: { type: 'string' },
  chat: { type: 'boolean' },
  threads: { type: 'string' },
  predictions: { type: 'string' },
  resamples: { type: 'string' },
  seed: { type: 'string' },
} as const;
const COMMON_USAGE = `  --data FILE[,FILE]   evaluation items
  --limit N            evaluate the first N items
  --chat               prompt through the chat template (fine-tuned models)
  --predictions FILE   score another system's outputs instead of a model: JSONL keyed by item id
                       (gen {id, output}; mcq {id, answer} or {id, output}; ner {id, output} or {id, entities})
  --resamples N        bootstrap resamples behind the 95% intervals (default 1000)
  --seed N             seed of the bootstrap (default 0)
  --out FILE           write the full result (predictions included) as JSON
  --json               print the summary as JSON
${MODEL_USAGE}`;

const SUMMARIES: Record<string, string> = {
  mcq: 'multiple-choice accuracy and weighted F1 (CMMLU/C-Eval CSV, CMExam, normalised JSONL)',
  gen: 'BLEU-1..4 and ROUGE-1/2/L of replies to held-out conversations',
  ner: 'few-shot NER: strict and type-agnostic span F1 (CCKS-2019, CMeEE)',
  scale: "attitude scales per subscale (CAMI adapted, the project's Chinese scale, your own)",
  ppl: 'perplexity on held-out text',
};

type Parsed = ReturnType<typeof parse>;

async function report(a: Parsed, summary: Record<string, unknown>, full: unknown, text: string): Promise<number> {
  if (a.str('out')) await writeJsonAtomic(a.str('out')!, full);
  process.stdout.write(a.flag('json') ? JSON.stringify(summary) + '\n' : text + '\n');
  return 0;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Every metric of the items with its interval, for the text and JSON summaries (n: the items scored, one kind per subcommand). */
function estimates(a: Parsed, items: EvalItem[], keys: string[]) {
  const s = summarizeItems(items, { resamples: a.int('resamples', 1000), seed: a.str('seed') ? a.num('seed') : 0 });
  return { text: describeEstimates(s, keys), json: { ...s.values, ci: s.ci, n: items.length } };
}

export function evalCommand(argv: string[]): Promise<number> {
  const commands: Record<string, Command> = Object.fromEntries(
    Object.entries(SUBCOMMANDS).map(([name, run]) => [name, { summary: SUMMARIES[name], run }]),
  );
  return dispatch(
    argv,
    commands,
    `chimed eval mcq|gen|ner|scale|ppl --model DIR [options]   (SUBCOMMAND --help for its options)\n\n${commandList(commands)}`,
    'evaluation',
  );
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  async mcq(argv) {
    const usage = `chimed eval mcq --model DIR --data TEST [--dev DEV] [--k 5] [--mode loglik|cloze|generate]
       chimed eval mcq --predictions FILE --data TEST

loglik: the option letter's likelihood after the k-shot prompt; cloze: each option's text as
the answer, length-normalised (for small / base models); generate: answer extraction cascade.
${COMMON_USAGE}`;
    const a = parse(argv, { ...COMMON, dev: { type: 'string' }, k: { type: 'string' }, mode: { type: 'string' } }, usage);
    if (a.help) {
      process.stdout.write(usage + '\n');
      return 0;
    }
    applyThreads(a);
    const mode = a.str('mode') ?? 'loglik';
    if (mode !== 'loglik' && mode !== 'cloze' && mode !== 'generate')
      throw new UsageError(`--mode: expected loglik, cloze or generate, got "${mode}"`);
    const all = (await Promise.all(a.list('data').map(readMcqFile))).flat();
    const items = all.slice(0, a.str('limit') ? a.int('limit') : undefined);
    if (!items.length) throw new UsageError(`--data: no items\n\n${usage}`);
    checkUniqueIds(all, a.need('data'));
    const predictions = a.str('predictions');
    if (predictions) {
      const scored = await mcqPredictionItems(predictions, items, all, a.need('data'));
      const e = estimates(a, scored, ['mcq_acc', 'mcq_f1']);
      return report(
        a,
        e.json,
        scored,
        `MCQ, ${predictions}: ${e.text} on ${scored.length} items; ${scored.filter((x) => x.pred === null).length} answers unreadable`,
      );
    }
    const cm = await loadChatModel({
      baseDtype: baseDtypeFlag(a),
      model: a.need('model'),
      adapter: a.str('adapter'),
      tokenizer: a.str('tokenizer'),
      template: a.str('template'),
    });
    const dev = a.str('dev') ? (await Promise.all(a.list('dev').map(readMcqFile))).flat() : [];
    const t0 = Date.now();
    const r = await evaluateMcq(new LlamaEvalModel(cm, { chat: a.flag('chat') }), items, dev, { k: dev.length ? a.num('k', 5) : 0, mode });
    const secs = (Date.now() - t0) / 1000;
    const e = estimates(a, mcqItems(items, r.predictions), ['mcq_acc', 'mcq_f1']);
    const lines = [
      `MCQ (${mode}, ${r.k}-shot): ${e.text} on ${r.n} items (${(r.n / secs).toFixed(1)} items/s)` +
        (mode === 'generate' ? `, extraction failures ${pct(r.extraction_failure_rate)}` : ''),
      ...Object.entries(r.per_subject).map(([s, x]) => `  ${s}: ${pct(x.accuracy)} (${x.n})`),
    ];
    return report(
      a,
      { accuracy: r.accuracy, weighted_f1: r.weighted_f1, n: r.n, items_per_s: r.n / secs, ci: e.json.ci },
      r,
      lines.join('\n'),
    );
  },

  async gen(argv) {
    const usage = `chimed eval gen --model DIR --data CONVERSATIONS.jsonl [--max-new-tokens 128]\n       chimed eval gen --predictions FILE --data CONVERSATIONS.jsonl\n\n${COMMON_USAGE}`;
    const a = parse(argv, { ...COMMON, 'max-new-tokens': { type: 'string' } }, usage);
    if (a.help) {
      process.stdout.write(usage + '\n');
      return 0;
    }
    applyThreads(a);
    const data = a.need('data');
    const all = await readConversations(data);
    const convs = all.slice(0, a.int('limit', 200));
    if (!convs.length) throw new UsageError(`--data: no conversations ending with an assistant turn\n\n${usage}`);
    const predictions = a.str('predictions');
    const items = predictions
      ? await genPredictionItems(predictions, convs, all, data)
      : generationItems(
          await loadChatModel({
            baseDtype: baseDtypeFlag(a),
            model: a.need('model'),
            adapter: a.str('adapter'),
            tokenizer: a.str('tokenizer'),
            template: a.str('template'),
          }),
          convs,
          { maxNewTokens: a.int('max-new-tokens', 128) },
        );
    const e = estimates(a, items, ['bleu1', 'bleu2', 'bleu3', 'bleu4', 'rouge1', 'rouge2', 'rougeL']);
    return report(a, e.json, items, `${predictions ?? 'model'} on ${items.length} conversations: ${e.text}`);
  },

  async ner(argv) {
    const usage = `chimed eval ner --model DIR --data TEST --shots TRAIN [--k 3] [--format ner|cmeee|ccks] [--max-new-tokens 512]\n       chimed eval ner --predictions FILE --data TEST\n\n${COMMON_USAGE}`;
    const a = parse(
      argv,
      { ...COMMON, shots: { type: 'string' }, k: { type: 'string' }, format: { type: 'string' }, 'max-new-tokens': { type: 'string' } },
      usage,
    );
    if (a.help) {
      process.stdout.write(usage + '\n');
      return 0;
    }
    applyThreads(a);
    const fmt = a.str('format') as 'ner' | 'cmeee' | 'ccks' | undefined;
    const data = a.need('data');
    const all = await readNerFile(data, fmt);
    checkUniqueIds(all, data);
    const examples = all.slice(0, a.str('limit') ? a.int('limit') : undefined);
    const predictions = a.str('predictions');
    const shots = a.str('shots') || !predictions ? (await readNerFile(a.need('shots'), fmt)).slice(0, a.int('k', 3)) : [];
    const f = nerFormatFor(examples, shots);
    const r = predictions
      ? await nerPredictions(predictions, examples, all, data, f)
      : await evaluateNer(
          new LlamaEvalModel(
            await loadChatModel({
              baseDtype: baseDtypeFlag(a),
              model: a.need('model'),
              adapter: a.str('adapter'),
              tokenizer: a.str('tokenizer'),
              template: a.str('template'),
            }),
            { chat: a.flag('chat') },
          ),
          examples,
          shots,
          { k: shots.length, maxNewTokens: a.int('max-new-tokens', 512) },
        );
    const e = estimates(a, nerItems(examples, r), ['ner_f1']);
    const text =
      `NER${predictions ? `, ${predictions},` : ''} on ${r.n} texts (${r.k}-shot): strict span ${e.text}, type-agnostic F1 ${pct(r.untyped.f1)}, mention F1 ${pct(r.mention.micro.f1)} ` +
      `(ceiling of this output format: ${pct(r.span_ceiling_f1)})\n` +
      Object.entries(r.strict.per_type)
        .map(([t, x]) => `  ${t}: F1 ${pct(x.f1)} (P ${pct(x.precision)}, R ${pct(x.recall)})`)
        .join('\n');
    return report(
      a,
      { strict_f1: r.strict.micro.f1, untyped_f1: r.untyped.f1, mention_f1: r.mention.micro.f1, n: r.n, ci: e.json.ci },
      r,
      text,
    );
  },

  async scale(argv) {
    const usage = `chimed eval scale --model DIR[,DIR...] [--scale zh|cami|FILE] [--samples 5] [--temperature 0.7]

Each item is asked --samples times; the chosen option is parsed (number or option text),
reverse-coded items flipped, and subscale / total scores compared across the models.
  --scale zh     the project's Chinese scale (corpus/scales; not a validated instrument)
  --scale cami   the adapted CAMI items in ../shared/data/dev/cami_adapted_27_en.jsonl
${COMMON_USAGE}`;
    const a = parse(argv, { ...COMMON, scale: { type: 'string' }, samples: { type: 'string' }, temperature: { type: 'string' } }, usage);
    if (a.help) {
      process.stdout.write(usage + '\n');
      return 0;
    }
    applyThreads(a);
    const which = a.str('scale') ?? 'zh';
    const scale =
      which === 'zh'
        ? loadScale(bundledScalePath('mental_illness_attitudes_zh.json'))
        : which === 'cami'
          ? loadCamiJsonl(path.resolve('../shared/data/dev/cami_adapted_27_en.jsonl'))
          : which.endsWith('.jsonl')
            ? loadCamiJsonl(which)
            : loadScale(which);
    const results = [];
    for (const dir of a.list('model')) {
      if (isRewardModel(dir)) throw new UsageError(`${dir}: a reward model cannot answer a scale`);
      const cm = await loadChatModel({
        baseDtype: baseDtypeFlag(a),
        model: dir,
        tokenizer: a.str('tokenizer'),
        template: a.str('template'),
      });
      const result = await evaluateScale(new LlamaEvalModel(cm, { chat: a.flag('chat') }), scale, {
        n: a.int('samples', 5),
        temperature: a.num('temperature', 0.7),
      });
      results.push({
        model: path.basename(path.resolve(dir)) === 'final' ? path.resolve(dir).split(path.sep).slice(-2).join('/') : path.basename(dir),
        result,
      });
    }
    const table = compareScaleResults(results);
    return report(
      a,
      {
        models: results.map((r) => ({
          model: r.model,
          total: r.result.total.score,
          subscales: Object.fromEntries(r.result.subscales.map((s) => [s.name, s.score])),
        })),
      },
      results,
      table.markdown,
    );
  },

  async ppl(argv) {
    const usage = `chimed eval ppl --model DIR --data FILE[,FILE] [--block-size 256] [--max-blocks 64]\n\n${COMMON_USAGE}`;
    const a = parse(argv, { ...COMMON, 'block-size': { type: 'string' }, 'max-blocks': { type: 'string' } }, usage);
    if (a.help) {
      process.stdout.write(usage + '\n');
      return 0;
    }
    applyThreads(a);
    const cm = await loadChatModel({
      baseDtype: baseDtypeFlag(a),
      model: a.need('model'),
      adapter: a.str('adapter'),
      tokenizer: a.str('tokenizer'),
      template: a.str('template'),
    });
    const r = await perplexity(cm, a.list('data'), a.int('block-size', 256), a.int('max-blocks', 64));
    return report(a, r, r, `perplexity ${r.ppl.toFixed(3)} (loss ${r.loss.toFixed(4)}) over ${r.tokens} tokens`);
  },
};
