import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { trainCommand } from '../cli/train.js';
import { writeCorpus } from '../corpus/generate.js';
import { buildDatasets } from '../data/build.js';
import { BuildConfigSchema } from '../data/build-config.js';
import { setThreads } from '../engine/native.js';
import { nativeKernels } from '../engine/native.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { saveModel } from '../model/checkpoint.js';
import { parseModelConfig } from '../model/config.js';
import { Llama } from '../model/llama.js';
import { loadChatModel } from '../model/load.js';
import { ChatTemplate } from '../tokenizer/chat-template.js';
import { hasTokenizerFiles, Tokenizer } from '../tokenizer/index.js';
import { readJsonl } from '../train/conversations.js';
import { readDocuments } from '../train/documents.js';
import { MetricsLog } from '../train/metrics.js';
import { formatSeconds } from '../train/progress.js';
import { writeReport } from '../report/report.js';
import { formatTable, type Row } from '../report/table.js';
import { RunConfigError, templateOf, type RunConfig, type StageConfig } from './config.js';
import { evaluateStage, type EvalFiles } from './evaluate.js';
import { stageArgs } from './stage-args.js';

const log = (s: string) => process.stderr.write(`${s}\n`);

/**
 * The whole regime from one config, in a run directory: data build, tokenizer, base model,
 * each stage (skipped when done, resumed from its last checkpoint when interrupted), and the
 * evaluations after every stage, so each stage's effect shows in the summary table.
 */
export async function runPipeline(cfg: RunConfig, runDir: string): Promise<Row[]> {
  const t0 = Date.now();
  if (cfg.threads > 0) setThreads(cfg.threads);
  fs.mkdirSync(runDir, { recursive: true });
  await recordConfig(cfg, runDir);
  const evalFiles = await prepareData(cfg, runDir);
  const tokDir = await prepareTokenizer(cfg, runDir);
  await countStageTokens(runDir, tokDir);
  let policy = await prepareBase(cfg, runDir, tokDir);
  let rmDir: string | null = null;
  const rows: Row[] = [];
  const metrics = new MetricsLog(path.join(runDir, 'metrics.jsonl'));
  const evaluate = async (stage: string, chat: boolean) => {
    const done = path.join(runDir, 'eval', `${stage}.json`);
    if (fs.existsSync(done)) { rows.push(JSON.parse(fs.readFileSync(done, 'utf8'))); return; }
    // the rm stage leaves the policy as it was: its row repeats the last one, plus RM accuracy and reward
    const reuse = stage === 'rm' ? rows.at(-1) : undefined;
    const row: Row = { ...reuse, stage, ...(await evaluateStage(cfg, runDir, policy, rmDir, evalFiles, chat, stage, !!reuse)) };
    fs.mkdirSync(path.dirname(done), { recursive: true });
    await writeJsonAtomic(done, row);
    metrics.append({ ...row, stage: `eval/${stage}`, step: 0 });
    rows.push(row);
  };
  await evaluate('base', false);
  for (const st of cfg.stages) {
    const res = await runStageOnce(cfg, runDir, st, policy, rmDir, tokDir);
    if (st.type === 'rm') rmDir = res; else policy = res;
    await evaluate(st.type, st.type !== 'pt');
  }
  const table = formatTable(rows);
  await writeJsonAtomic(path.join(runDir, 'summary.json'), { rows, policy, reward_model: rmDir, seconds: (Date.now() - t0) / 1000 });
  await writeFileAtomic(path.join(runDir, 'summary.md'), table + '\n');
  const reportDir = await writeReport(runDir);
  process.stdout.write(`\n${table}\n\nrun: ${runDir} (${formatSeconds((Date.now() - t0) / 1000)})\nfinal model: ${policy}\nreport: ${path.join(reportDir, 'report.html')}\n`);
  return rows;
}

async function recordConfig(cfg: RunConfig, runDir: string): Promise<void> {
  const file = path.join(runDir, 'config.yaml');
  const text = YAML.stringify(cfg);
  if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') !== text) {
    throw new RunConfigError(`${file}: this run directory was made with a different config; use a new directory (or delete ${runDir}) to start over`);
  }
  await writeFileAtomic(file, text);
}

async function prepareData(cfg: RunConfig, runDir: string): Promise<EvalFiles> {
  const sources: Record<string, unknown>[] = cfg.data.sources.map((s) => ({ ...s }));
  const u = cfg.eval.files;
  let files: EvalFiles = { ppl: u.ppl, mcqTest: u.mcq ?? null, mcqDev: u.mcq_dev ?? null, gen: u.gen ?? null, pref: u.pref ?? null };
  if (cfg.builtin_corpus) {
    const dir = path.join(runDir, 'corpus');
    if (!fs.existsSync(path.join(dir, 'manifest.json'))) {
      log('data: generating the built-in medical corpus');
      await writeCorpus(dir, { seed: cfg.builtin_corpus.seed, heldoutFraction: cfg.builtin_corpus.heldout_fraction });
    }
    const c = (f: string) => path.join(dir, f);
    sources.push(
      { path: c('pt_train.jsonl'), stages: ['pt'] }, { path: c('sft_train.jsonl'), stages: ['sft', 'pt'] },
      { path: c('pref_train.jsonl'), stages: ['pref'] }, { path: c('mcq_test.jsonl'), stages: ['eval'] },
    );
    files = { ppl: [c('pt_heldout.jsonl')], mcqTest: c('mcq_test.jsonl'), mcqDev: c('mcq_dev.jsonl'), gen: c('sft_heldout.jsonl'), pref: c('pref_heldout.jsonl') };
  }
  if (!fs.existsSync(path.join(runDir, 'data', 'stats.json'))) {
    const build = BuildConfigSchema.parse({ ...cfg.data, sources });
    const r = await buildDatasets(build, { runDir, log });
    process.stderr.write(r.table + '\n');
  }
  return files;
}

async function prepareTokenizer(cfg: RunConfig, runDir: string): Promise<string> {
  const dir = path.join(runDir, 'tokenizer');
  if (hasTokenizerFiles(dir)) return dir;
  const t = cfg.tokenizer;
  let tok: Tokenizer;
  if ('path' in t) tok = Tokenizer.fromDir(t.path);
  else if ('bytes' in t) tok = Tokenizer.bytes();
  else {
    log(`tokenizer: training a ${t.train.vocab_size}-token byte-level BPE on the pre-training and SFT data`);
    const data = path.join(runDir, 'data');
    tok = await Tokenizer.train(readDocuments([path.join(data, 'pt.jsonl'), path.join(data, 'sft.jsonl')].filter((f) => fs.existsSync(f))), { vocabSize: t.train.vocab_size, minFrequency: t.train.min_frequency });
  }
  const template = templateOf(cfg);
  await tok.save(dir, { template: template ? ChatTemplate.builtin(template) : undefined });
  return dir;
}

/**
 * Token counts of the stage datasets under the run's tokenizer. The data build counts
 * characters because the tokenizer is trained from its output; this adds the real figures.
 */
async function countStageTokens(runDir: string, tokDir: string): Promise<void> {
  const out = path.join(runDir, 'data', 'tokens.json');
  if (fs.existsSync(out)) return;
  const tok = Tokenizer.fromDir(tokDir);
  const rows: { stage: string; records: number; characters: number; tokens: number }[] = [];
  for (const stage of ['pt', 'sft', 'pref']) {
    const file = path.join(runDir, 'data', `${stage}.jsonl`);
    if (!fs.existsSync(file)) continue;
    const r = { stage, records: 0, characters: 0, tokens: 0 };
    for (const { rec } of await readJsonl(file)) {
      const text = typeof rec.text === 'string' ? rec.text
        : [...(Array.isArray(rec.messages) ? rec.messages : Array.isArray(rec.prompt) ? rec.prompt : []).map((m) => String((m as { content?: unknown }).content ?? '')),
          ...[rec.chosen, rec.rejected].filter((x): x is string => typeof x === 'string')].join('\n');
      r.records++;
      r.characters += [...text].length;
      r.tokens += tok.encode(text).length;
    }
    rows.push(r);
  }
  await writeJsonAtomic(out, { tokenizer: tokDir, vocab_size: tok.vocabSize, stages: rows });
  log(['stage  records  characters  tokens  chars/token', ...rows.map((r) => `${r.stage.padEnd(5)}  ${String(r.records).padStart(7)}  ${String(r.characters).padStart(10)}  ${String(r.tokens).padStart(6)}  ${(r.characters / Math.max(1, r.tokens)).toFixed(2)}`)].join('\n'));
}

/** The starting model: an HF folder, or a fresh one from the config (vocab sized to the tokenizer). */
async function prepareBase(cfg: RunConfig, runDir: string, tokDir: string): Promise<string> {
  if ('path' in cfg.model) return cfg.model.path;
  const dir = path.join(runDir, 'stages', 'base');
  if (fs.existsSync(path.join(dir, 'model.safetensors'))) return dir;
  const tok = Tokenizer.fromDir(tokDir);
  const config = parseModelConfig({ vocab_size: tok.vocabSize, eos_token_id: tok.eosId, pad_token_id: tok.padId, ...cfg.model.config }, `${runDir}/config.yaml: model.config`, { strict: true });
  if (config.vocab_size < tok.vocabSize) throw new RunConfigError(`model.config.vocab_size ${config.vocab_size} is smaller than the tokenizer's ${tok.vocabSize} tokens`);
  const model = Llama.random(nativeKernels, config, cfg.seed, false);
  await saveModel(dir, model);
  await tok.save(dir);
  log(`model: ${model.params.size.toLocaleString('en-US')} parameters, initialised in ${dir}`);
  return dir;
}

const sha1 = (files: string[]) => {
  const h = createHash('sha1');
  for (const f of files) if (fs.existsSync(f) && fs.statSync(f).isFile()) h.update(fs.readFileSync(f));
  return h.digest('hex');
};

/** Runs one stage unless its done.json exists; returns its output model folder. */
async function runStageOnce(cfg: RunConfig, runDir: string, st: StageConfig, policy: string, rmDir: string | null, tokDir: string): Promise<string> {
  const stageDir = path.join(runDir, 'stages', st.type);
  const doneFile = path.join(stageDir, 'done.json');
  if (fs.existsSync(doneFile)) {
    const done = JSON.parse(fs.readFileSync(doneFile, 'utf8'));
    log(`${st.type}: already done, skipping (${done.output})`);
    return done.output;
  }
  const { argv, output, inputs, merge } = stageArgs(cfg, runDir, st, policy, rmDir, tokDir);
  log(`\n== stage ${st.type} ==`);
  const code = await trainCommand([st.type, ...argv]);
  if (code !== 0) throw new Error(`stage ${st.type} failed (exit ${code})`);
  if (merge) {
    // the adapter was trained under the stage's RoPE scaling: the merged model keeps it
    const cm = await loadChatModel({ model: merge.base, adapter: merge.adapter, template: templateOf(cfg), ropeScaling: 'rope_scaling' in st ? st.rope_scaling : null });
    await saveModel(output, cm.model);
    await cm.tokenizer.save(output, { template: cm.template });
  }
  // lineage: what went in, so a changed input is visible when comparing runs
  await writeJsonAtomic(doneFile, { stage: st.type, output, inputs: Object.fromEntries(inputs.map((f) => [f, sha1([f, path.join(f, 'model.safetensors')])])), args: argv });
  return output;
}
