import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { writeCorpus } from '../corpus/generate.js';
import { buildDatasets } from '../data/build.js';
import { BuildConfigSchema } from '../data/build-config.js';
import { recordText, type Tagged } from '../data/records.js';
import { readDocuments, readJsonl } from '../data/stage-files.js';
import { formatTable } from '../data/table.js';
import { dist, rootFirst } from '../engine/dist.js';
import { nativeKernels, setThreads } from '../engine/native.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { inputHashes, RunDir } from '../io/run-dir.js';
import { saveModel } from '../model/checkpoint.js';
import { ConfigError, parseModelConfig } from '../model/config.js';
import { Llama } from '../model/llama.js';
import { ChatTemplate } from '../tokenizer/chat-template.js';
import { hasTokenizerFiles, Tokenizer } from '../tokenizer/index.js';
import { formatSeconds } from '../train/progress.js';
import type { StageResult } from '../train/stages/common.js';
import { runDpo } from '../train/stages/dpo.js';
import { runPt } from '../train/stages/pt.js';
import { runRm } from '../train/stages/rm.js';
import { runRs } from '../train/stages/rs.js';
import { runSft } from '../train/stages/sft.js';
import { writeReport } from '../report/report.js';
import type { Row } from '../report/table.js';
import { parseRunConfig, templateOf, type RunConfig, type StageConfig } from './config.js';
import { evalFiles, evaluateAfterStage, writeSummary, type EvalFiles } from './evaluate.js';

// progress lines: from rank 0 only under MPI
const log = (s: string) => dist().isRoot && process.stderr.write(`${s}\n`);

/**
 * The whole regime from one config, in a run directory: data build, tokenizer, base model,
 * each stage (skipped when done, resumed from its last checkpoint when interrupted), and the
 * evaluations after every stage, so each stage's effect shows in the summary table.
 */
export async function runPipeline(cfg: RunConfig, runDir: string): Promise<Row[]> {
  const t0 = Date.now();
  if (cfg.threads > 0) setThreads(cfg.threads);
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
    rows.push(await evaluateAfterStage(cfg, runDir, evalFiles, { stage, model: policy, rm: rmDir, chat, previous: rows.at(-1) }));
  };
  await evaluate('base', false);
  for (const st of cfg.stages) {
    const res = await runStageOnce(cfg, run, st, policy, rmDir, tokDir);
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
 * Writes RUN/config.yaml. A run directory keeps the config it was made with: an existing one
 * is read with today's schema (so settings added since take their defaults) and must resolve
 * to the same config.
 */
export async function recordConfig(cfg: RunConfig, run: RunDir): Promise<void> {
  const text = YAML.stringify(cfg);
  if (fs.existsSync(run.config)) {
    const before = fs.readFileSync(run.config, 'utf8');
    if (before !== text && YAML.stringify(parseRunConfig(YAML.parse(before), run.config)) !== text) {
      throw new ConfigError(
        `${run.config}: this run directory was made with a different config; use a new directory (or delete ${run.root}) to start over`,
      );
    }
  }
  await writeFileAtomic(run.config, text);
}

async function prepareData(cfg: RunConfig, run: RunDir): Promise<EvalFiles> {
  const sources: Record<string, unknown>[] = cfg.data.sources.map((s) => ({ ...s }));
  const dir = run.corpus;
  const files = evalFiles(cfg.eval, cfg.builtin_corpus ? dir : null);
  if (cfg.builtin_corpus) {
    if (!fs.existsSync(path.join(dir, 'manifest.json'))) {
      log('data: generating the built-in medical corpus');
      await writeCorpus(dir, { seed: cfg.builtin_corpus.seed, heldoutFraction: cfg.builtin_corpus.heldout_fraction });
    }
    const c = (f: string) => path.join(dir, f);
    sources.push(
      { path: c('pt_train.jsonl'), stages: ['pt'] },
      { path: c('sft_train.jsonl'), stages: ['sft', 'pt'] },
      { path: c('pref_train.jsonl'), stages: ['pref'] },
      { path: c('mcq_test.jsonl'), stages: ['eval'] },
    );
  }
  if (!fs.existsSync(run.stats)) {
    const build = BuildConfigSchema.parse({ ...cfg.data, sources });
    const r = await buildDatasets(build, { runDir: run.root, log });
    process.stderr.write(r.table + '\n');
  }
  return files;
}

async function prepareTokenizer(cfg: RunConfig, run: RunDir): Promise<string> {
  const dir = run.tokenizer;
  if (hasTokenizerFiles(dir)) return dir;
  const t = cfg.tokenizer;
  let tok: Tokenizer;
  if ('path' in t) tok = Tokenizer.fromDir(t.path);
  else if ('bytes' in t) tok = Tokenizer.bytes();
  else {
    log(`tokenizer: training a ${t.train.vocab_size}-token byte-level BPE on the pre-training and SFT data`);
    tok = await Tokenizer.train(readDocuments([run.dataset('pt'), run.dataset('sft')].filter((f) => fs.existsSync(f))), {
      vocabSize: t.train.vocab_size,
      minFrequency: t.train.min_frequency,
    });
  }
  const template = templateOf(cfg);
  await tok.save(dir, { template: template ? ChatTemplate.builtin(template) : undefined });
  return dir;
}

/**
 * Token counts of the stage datasets under the run's tokenizer. The data build counts
 * characters because the tokenizer is trained from its output; this adds the real figures.
 */
async function countStageTokens(run: RunDir, tokDir: string): Promise<void> {
  const out = run.tokens;
  if (fs.existsSync(out)) return;
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
  log(
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
  if (fs.existsSync(path.join(dir, 'model.safetensors'))) return dir;
  const tok = Tokenizer.fromDir(tokDir);
  const config = parseModelConfig(
    { vocab_size: tok.vocabSize, eos_token_id: tok.eosId, pad_token_id: tok.padId, ...cfg.model.config },
    `${run.config}: model.config`,
    { strict: true },
  );
  if (config.vocab_size < tok.vocabSize)
    throw new ConfigError(`model.config.vocab_size ${config.vocab_size} is smaller than the tokenizer's ${tok.vocabSize} tokens`);
  const model = Llama.random(nativeKernels, config, cfg.seed, false);
  await saveModel(dir, model);
  await tok.save(dir);
  log(`model: ${model.params.size.toLocaleString('en-US')} parameters, initialised in ${dir}`);
  return dir;
}

/** A stage entry's settings: the entry without its `type`. */
const settingsOf = <T extends { type: string }>({ type, ...settings }: T) => settings;

/** Runs one configured stage on the run's data, starting from `policy`. */
function runStage(
  cfg: RunConfig,
  run: RunDir,
  st: StageConfig,
  policy: string,
  rmDir: string | null,
  tokDir: string,
): Promise<StageResult> {
  const ctx = { runDir: run.root, seed: cfg.seed };
  // every chat stage renders with the template the config chose, if it chose one
  const chat = { ...ctx, model: policy, template: templateOf(cfg) };
  switch (st.type) {
    case 'pt':
      return runPt(settingsOf(st), { ...ctx, data: [run.dataset('pt')], model: policy, tokenizer: tokDir });
    case 'sft':
      return runSft(settingsOf(st), { ...chat, data: [run.dataset('sft')], merge: true });
    case 'rm':
      return runRm(settingsOf(st), { ...chat, data: [run.dataset('pref')] });
    case 'rs':
      if (!rmDir) throw new ConfigError('rs needs a reward model stage before it');
      return runRs(settingsOf(st), { ...chat, prompts: run.dataset('sft'), reward: rmDir });
    case 'dpo':
      return runDpo(settingsOf(st), { ...chat, data: [run.dataset('pref')], merge: true });
  }
}

/** Runs one stage unless its done.json exists; returns its output model folder. */
async function runStageOnce(
  cfg: RunConfig,
  run: RunDir,
  st: StageConfig,
  policy: string,
  rmDir: string | null,
  tokDir: string,
): Promise<string> {
  const dir = run.stage(st.type);
  const done = dir.readDone();
  if (done) {
    log(`${st.type}: already done, skipping (${done.output})`);
    return done.output;
  }
  log(`\n== stage ${st.type} ==`);
  const res = await runStage(cfg, run, st, policy, rmDir, tokDir);
  // lineage: what went in and the resolved settings, so a changed input is visible when comparing runs
  if (dist().isRoot) await dir.writeDone({ stage: st.type, output: res.output, inputs: inputHashes(res.inputs), config: st });
  return res.output;
}
