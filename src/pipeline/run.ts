import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { CORPUS_FILES, writeCorpus } from '../corpus/generate.js';
import { buildDatasets } from '../data/build.js';
import { BuildConfigSchema } from '../data/build-config.js';
import { recordText, type Tagged } from '../data/records.js';
import { readDocuments, readJsonl } from '../data/stage-files.js';
import { formatTable } from '../data/table.js';
import { dist, rootFirst, say } from '../engine/dist.js';
import { nativeKernels, setThreads } from '../engine/native.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { lineageOf, settingsChanges, type Lineage } from '../io/lineage.js';
import { RunDir } from '../io/run-dir.js';
import { saveModel } from '../model/checkpoint.js';
import { ConfigError, parseModelConfig } from '../model/config.js';
import { Llama } from '../model/llama.js';
import { ChatTemplate } from '../tokenizer/chat-template.js';
import { Tokenizer, TOKENIZER_FILES } from '../tokenizer/index.js';
import { reconcile, recordLineage, type Step } from '../train/lineage.js';
import { formatSeconds } from '../train/progress.js';
import { STAGES } from '../train/stages/index.js';
import { runStageTracked } from '../train/stages/tracked.js';
import { expandDatasetInfo, isDatasetInfo } from '../data/dataset-info.js';
import { writeReport } from '../report/report.js';
import type { Row } from '../report/table.js';
import { checkConfigFiles, parseRunConfig, templateOf, type RunConfig, type StageConfig } from './config.js';
import { evalFiles, evaluateAfterStage, writeSummary, type EvalFiles } from './evaluate.js';

// progress lines: from rank 0 only under MPI

/**
 * The whole regime from one config, in a run directory: data build, tokenizer, base model,
 * each stage and the evaluations after every stage, so each stage's effect shows in the
 * summary table. Each step records its lineage: a re-run skips the unchanged ones (an
 * interrupted stage resumes from its last checkpoint) and re-makes what changed and what follows.
 */
export async function runPipeline(cfg: RunConfig, runDir: string): Promise<Row[]> {
  const t0 = Date.now();
  if (cfg.threads > 0) setThreads(cfg.threads);
  checkConfigFiles(cfg, `run config ${cfg.name}`);
  // a fresh model's config is checked before the data build too (vocab_size comes from the tokenizer later)
  if ('config' in cfg.model) parseModelConfig({ vocab_size: 1 << 20, ...cfg.model.config }, 'model.config', { strict: true });
  fs.mkdirSync(runDir, { recursive: true });
  const run = new RunDir(runDir);
  // under MPI rank 0 builds the data, tokenizer and base model; the other ranks then find them
  const { evalFiles, tokDir, base } = await rootFirst(async () => {
    await recordConfig(cfg, run);
    const evalFiles = await prepareData(cfg, run);
    const tokDir = await prepareTokenizer(cfg, run);
    await countStageTokens(run, tokDir);
    return { evalFiles, tokDir, base: await prepareBase(cfg, run, tokDir) };
  });
  let policy = base;
  let rmDir: string | null = null;
  const rows: Row[] = [];
  const evaluate = async (stage: string, chat: boolean) => {
    const s = { stage, model: policy, rm: rmDir, chat, previous: rows.at(-1) };
    // rank 0 moves a stale evaluation aside before any rank looks for it
    if (dist().isRoot) await reconcileEvaluation(cfg, run, evalFiles, s);
    dist().barrier();
    rows.push(await evaluateAfterStage(cfg, runDir, evalFiles, s));
  };
  await evaluate('base', false);
  for (const [i, st] of cfg.stages.entries()) {
    const follows = cfg.stages.slice(i + 1).map((x) => x.type);
    const res = await runStage(cfg, run, st, { policy, rmDir, tokDir, follows });
    if (st.type === 'rm') rmDir = res;
    else policy = res;
    await evaluate(st.type, st.type !== 'pt');
  }
  if (!dist().isRoot) return rows;
  const table = await writeSummary(cfg, runDir, evalFiles, rows, { policy, reward_model: rmDir, seconds: (Date.now() - t0) / 1000 });
  const reportDir = await writeReport(runDir);
  process.stdout.write(
    `\n${table}\n\nrun: ${runDir} (${formatSeconds((Date.now() - t0) / 1000)})\nfinal model: ${policy}\nreport: ${path.join(reportDir, 'report.html')}\n`,
  );
  return rows;
}

/**
 * Writes RUN/config.yaml, the config of the latest run. A config changed since the one recorded
 * (read with today's schema, so settings added since take their defaults) is not refused: the
 * changes are listed, the old config is kept in RUN/stale-TIME/, and each step compares its own
 * lineage to re-run exactly what the change touches.
 */
export async function recordConfig(cfg: RunConfig, run: RunDir): Promise<void> {
  const text = YAML.stringify(cfg);
  if (fs.existsSync(run.config)) {
    const before = fs.readFileSync(run.config, 'utf8');
    if (before === text) return;
    let changes: string[];
    try {
      changes = settingsChanges(
        JSON.parse(JSON.stringify(parseRunConfig(YAML.parse(before), run.config))),
        JSON.parse(JSON.stringify(cfg)),
      );
    } catch (e) {
      changes = [`the recorded config no longer reads (${(e as Error).message})`];
    }
    if (changes.length) {
      const aside = run.moveAside(run.config);
      say(
        `config: changed since the last run in ${run.root}: ${changes.join(', ')}; what it touches re-runs (previous config kept in ${aside})`,
      );
    }
  }
  await writeFileAtomic(run.config, text);
}

/** Skips a step whose outputs were made from `now`, else runs `make` and records `now` after it. */
async function once(run: RunDir, step: Step, now: Lineage, make: () => Promise<void>): Promise<void> {
  if (await reconcile(run, step, now)) return;
  await make();
  await recordLineage(step, now);
}

/** The files a tokenizer folder is read from. */
const tokenizerFiles = (dir: string) => TOKENIZER_FILES.map((f) => path.join(dir, f)).filter((f) => fs.existsSync(f));

/**
 * The built-in corpus (when enabled) and the data build: each re-made when its lineage (the
 * data settings, every source file's content) changed, and then everything after it.
 */
async function prepareData(cfg: RunConfig, run: RunDir): Promise<EvalFiles> {
  const sources: Record<string, unknown>[] = cfg.data.sources.map((s) => ({ ...s }));
  const dir = run.corpus;
  const files = evalFiles(cfg.eval, cfg.builtin_corpus ? dir : null);
  const follows = ['tokenizer', 'base', ...cfg.stages.map((s) => s.type)];
  if (cfg.builtin_corpus) {
    const corpus = cfg.builtin_corpus;
    const step = { name: 'corpus', record: run.lineage(dir), outputs: [dir], follows: ['data', ...follows] };
    await once(run, step, lineageOf(run.root, { builtin_corpus: corpus, files: CORPUS_FILES }, []), async () => {
      say('data: generating the built-in medical corpus');
      await writeCorpus(dir, { seed: corpus.seed, heldoutFraction: corpus.heldout_fraction });
    });
    const c = (f: string) => path.join(dir, f);
    sources.push(
      { path: c('pt_train.jsonl'), stages: ['pt'] },
      { path: c('sft_train.jsonl'), stages: ['sft', 'pt'] },
      { path: c('pref_train.jsonl'), stages: ['pref'] },
      { path: c('mcq_test.jsonl'), stages: ['eval'] },
    );
  }
  const build = BuildConfigSchema.parse({ ...cfg.data, sources });
  // a dataset_info.json stands for its datasets' files: each is an input
  const read = [
    ...build.sources.filter((s) => isDatasetInfo(s.path)).map((s) => s.path),
    ...(await expandDatasetInfo(build.sources)).map((s) => s.path),
  ];
  const step = { name: 'data', record: run.lineage(run.data), outputs: [run.data], follows };
  await once(run, step, lineageOf(run.root, { data: build }, read), async () => {
    const r = await buildDatasets(build, { runDir: run.root, log: say });
    process.stderr.write(r.table + '\n');
  });
  return files;
}

/** RUN/tokenizer: a given one, bytes, or one trained on the stage data (re-made when those change). */
async function prepareTokenizer(cfg: RunConfig, run: RunDir): Promise<string> {
  const dir = run.tokenizer;
  const t = cfg.tokenizer;
  const template = templateOf(cfg);
  const trainOn = [run.dataset('pt'), run.dataset('sft')].filter((f) => fs.existsSync(f));
  const read = 'path' in t ? tokenizerFiles(t.path) : 'bytes' in t ? [] : trainOn;
  const step = { name: 'tokenizer', record: run.lineage(dir), outputs: [dir], follows: ['base', ...cfg.stages.map((s) => s.type)] };
  await once(run, step, lineageOf(run.root, { tokenizer: t, template }, read), async () => {
    let tok: Tokenizer;
    if ('path' in t) tok = Tokenizer.fromDir(t.path);
    else if ('bytes' in t) tok = Tokenizer.bytes();
    else {
      say(`tokenizer: training a ${t.train.vocab_size}-token byte-level BPE on the pre-training and SFT data`);
      tok = await Tokenizer.train(readDocuments(trainOn), { vocabSize: t.train.vocab_size, minFrequency: t.train.min_frequency });
    }
    await tok.save(dir, { template: template ? ChatTemplate.builtin(template) : undefined });
  });
  return dir;
}

/**
 * Token counts of the stage datasets under the run's tokenizer. The data build counts
 * characters because the tokenizer is trained from its output; this adds the real figures.
 */
async function countStageTokens(run: RunDir, tokDir: string): Promise<void> {
  const out = run.tokens;
  const read = [...(['pt', 'sft', 'pref'] as const).map((d) => run.dataset(d)), ...tokenizerFiles(tokDir)];
  const step = { name: 'token counts', record: path.join(run.data, 'tokens.lineage.json'), outputs: [out] };
  await once(run, step, lineageOf(run.root, {}, read), () => writeTokenCounts(run, tokDir));
}

async function writeTokenCounts(run: RunDir, tokDir: string): Promise<void> {
  const out = run.tokens;
  const tok = Tokenizer.fromDir(tokDir);
  const rows: { stage: string; records: number; characters: number; tokens: number }[] = [];
  for (const [stage, kind] of [
    ['pt', 'document'],
    ['sft', 'conversation'],
    ['pref', 'preference'],
  ] as const) {
    const file = run.dataset(stage);
    if (!fs.existsSync(file)) continue;
    const r = { stage, records: 0, characters: 0, tokens: 0 };
    for (const { rec } of await readJsonl(file)) {
      const text = recordText({ kind, record: rec } as unknown as Tagged);
      r.records++;
      r.characters += [...text].length;
      r.tokens += tok.encode(text).length;
    }
    rows.push(r);
  }
  await writeJsonAtomic(out, { tokenizer: tokDir, vocab_size: tok.vocabSize, stages: rows });
  say(
    formatTable(
      ['stage', 'records', 'characters', 'tokens', 'chars/token'],
      rows.map((r) => [r.stage, r.records, r.characters, r.tokens, (r.characters / Math.max(1, r.tokens)).toFixed(2)]),
    ),
  );
}

/** The starting model: an HF folder, or a fresh one from the config (vocab sized to the tokenizer). */
async function prepareBase(cfg: RunConfig, run: RunDir, tokDir: string): Promise<string> {
  if ('path' in cfg.model) return cfg.model.path;
  const dir = run.base;
  const modelConfig = cfg.model.config;
  const step = { name: 'base', record: run.lineage(dir), outputs: [dir], follows: cfg.stages.map((s) => s.type) };
  await once(run, step, lineageOf(run.root, { config: modelConfig, seed: cfg.seed }, tokenizerFiles(tokDir)), async () => {
    const tok = Tokenizer.fromDir(tokDir);
    const config = parseModelConfig(
      { vocab_size: tok.vocabSize, eos_token_id: tok.eosId, pad_token_id: tok.padId, ...modelConfig },
      `${run.config}: model.config`,
      { strict: true },
    );
    if (config.vocab_size < tok.vocabSize)
      throw new ConfigError(`model.config.vocab_size ${config.vocab_size} is smaller than the tokenizer's ${tok.vocabSize} tokens`);
    const model = Llama.random(nativeKernels, config, cfg.seed, false);
    await saveModel(dir, model);
    await tok.save(dir);
    say(`model: ${model.params.size.toLocaleString('en-US')} parameters, initialised in ${dir}`);
  });
  return dir;
}

/** A stage entry's settings: the entry without its `type`. */
const settingsOf = <T extends { type: string }>({ type, ...settings }: T) => settings;

/**
 * Runs one configured stage on the run's data, starting from `policy`, unless it finished with
 * the same lineage (train/stages/tracked.ts); returns its output model folder.
 */
async function runStage(
  cfg: RunConfig,
  run: RunDir,
  st: StageConfig,
  o: { policy: string; rmDir: string | null; tokDir: string; follows: string[] },
): Promise<string> {
  const ctx = { runDir: run.root, seed: cfg.seed };
  // every chat stage renders with the template the config chose, if it chose one
  const chat = { ...ctx, model: o.policy, template: templateOf(cfg) };
  const go = async () => {
    switch (st.type) {
      case 'pt':
        return runStageTracked(
          STAGES.pt,
          settingsOf(st),
          { ...ctx, data: [run.dataset('pt')], model: o.policy, tokenizer: o.tokDir },
          o.follows,
        );
      case 'sft':
        return runStageTracked(STAGES.sft, settingsOf(st), { ...chat, data: [run.dataset('sft')], merge: true }, o.follows);
      case 'rm':
        return runStageTracked(STAGES.rm, settingsOf(st), { ...chat, data: [run.dataset('pref')] }, o.follows);
      case 'rs':
        if (!o.rmDir) throw new ConfigError('rs needs a reward model stage before it');
        return runStageTracked(
          STAGES.rs,
          settingsOf(st),
          // the built-in corpus's validation split judges the rounds (its test split scores them)
          {
            ...chat,
            prompts: run.dataset('sft'),
            reward: o.rmDir,
            ...(cfg.builtin_corpus ? { eval_data: path.join(run.corpus, 'sft_dev.jsonl') } : {}),
          },
          o.follows,
        );
      case 'dpo':
        return runStageTracked(STAGES.dpo, settingsOf(st), { ...chat, data: [run.dataset('pref')], merge: true }, o.follows);
    }
  };
  say(`\n== stage ${st.type} ==`);
  return (await go()).output;
}

/**
 * An evaluation's lineage: the model (and reward model) it scores, the eval settings and files,
 * and the stage before's items it is compared with. A stage that re-ran is evaluated again.
 */
async function reconcileEvaluation(
  cfg: RunConfig,
  run: RunDir,
  f: EvalFiles,
  s: { stage: string; model: string; rm: string | null; chat: boolean; previous?: Row },
) {
  const read = [
    ...f.ppl,
    ...[f.mcqTest, f.mcqDev, f.gen, f.pref, f.ner, f.nerShots, cfg.eval.scale ? cfg.eval.scale.file : undefined].filter(
      (x): x is string => !!x,
    ),
    s.model,
    ...(s.rm ? [s.rm] : []),
    ...(s.previous ? [run.evaluationItems(s.previous.stage)] : []),
  ];
  const now = lineageOf(run.root, { eval: cfg.eval, template: templateOf(cfg), chat: s.chat }, read);
  const stage = `eval/${s.stage}`;
  const step = {
    name: `eval ${s.stage}`,
    record: run.evaluationLineage(s.stage),
    outputs: [run.evaluation(s.stage), run.evaluationItems(s.stage)],
    metrics: (m: string) => m === stage,
  };
  if (!(await reconcile(run, step, now))) await recordLineage(step, now);
}
