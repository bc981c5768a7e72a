import fs from 'node:fs';
import path from 'node:path';
import type { NerExample } from '../data/records.js';
import { dist, say } from '../engine/dist.js';
import { nativeKernels } from '../engine/native.js';
import type { BenchmarkName } from '../eval/benchmarks.js';
import { pickCases, type CaseStudy } from '../eval/cases.js';
import { fileBenchmark, filePath, type EvalConfig } from '../eval/config.js';
import { itemsOf, nerItems, readItems, writeItems, type EvalItem, type EvalKind } from '../eval/items.js';
import { compareItems, summarizeItems } from '../eval/metrics.js';
import { nerFormatFor } from '../eval/ner.js';
import { genPredictionItems, mcqPredictionItems, nerPredictions } from '../eval/predictions.js';
import { readMcqFile, readNerFile } from '../eval/read.js';
import { bundledScalePath } from '../eval/scale.js';
import {
  attitudeScale,
  generationItems,
  mcqEvalItems,
  nerEvalItems,
  perplexity,
  preferenceItems,
  readConversations,
  rewardItems,
  rewardModelItems,
} from '../eval/suite.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { loadChatModel, type ChatModel } from '../model/load.js';
import { RewardModel } from '../model/reward.js';
import { summaryTable, tableLegend, type Row } from '../report/table.js';
import { MetricsLog } from '../train/metrics.js';
import { templateOf, type RunConfig } from './config.js';
import { RunDir } from '../io/run-dir.js';

/** Files the evaluations read; from the config, or the built-in corpus's held-out files. */
export interface EvalFiles {
  ppl: string[];
  mcqTest: string | null;
  mcqDev: string | null;
  gen: string | null;
  pref: string | null;
  ner: string | null;
  nerShots: string | null;
  /** The published benchmark each file holds, when tagged. */
  benchmarks: Partial<Record<'mcq' | 'gen' | 'ner', BenchmarkName>>;
}

/** The files of `eval.files`; with the built-in corpus, its held-out files where the config names none. */
export function evalFiles(e: EvalConfig, corpusDir: string | null): EvalFiles {
  const u = e.files;
  const benchmarks = Object.fromEntries(
    (['mcq', 'gen', 'ner'] as const).flatMap((k) => {
      const b = fileBenchmark(u[k]);
      return b ? [[k, b]] : [];
    }),
  );
  const c = (f: string) => (corpusDir ? path.join(corpusDir, f) : null);
  // a test file given without its dev / shots file gets no demonstrations from the corpus
  return {
    ppl: u.ppl.length ? u.ppl : corpusDir ? [c('pt_heldout.jsonl')!] : [],
    mcqTest: filePath(u.mcq) ?? c('mcq_test.jsonl'),
    mcqDev: u.mcq_dev ?? (u.mcq ? null : c('mcq_dev.jsonl')),
    gen: filePath(u.gen) ?? c('sft_heldout.jsonl'),
    pref: u.pref ?? c('pref_heldout.jsonl'),
    ner: filePath(u.ner) ?? c('ner_test.jsonl'),
    nerShots: u.ner_shots ?? (u.ner ? null : c('ner_train.jsonl')),
    benchmarks,
  };
}

// progress lines: from rank 0 only under MPI

/** The scored NER examples and their demonstrations: from files.ner_shots, else the first k of files.ner (then not scored). */
async function nerSplit(
  f: EvalFiles,
  e: Exclude<EvalConfig['ner'], false>,
): Promise<{ all: NerExample[]; examples: NerExample[]; shots: NerExample[] }> {
  const all = await readNerFile(f.ner!);
  const shots = f.nerShots ? await readNerFile(f.nerShots) : all.slice(0, e.k_shot);
  const scored = f.nerShots ? all : all.slice(e.k_shot);
  return { all, examples: scored.slice(0, e.limit), shots: shots.slice(0, e.k_shot) };
}

const POLICY_KINDS: ReadonlySet<EvalKind> = new Set(['ppl', 'mcq', 'gen', 'ner', 'pref', 'scale']);

export interface StageEval {
  stage: string;
  model: string;
  rm: string | null;
  /** Prompt through the chat template (every stage after pre-training). */
  chat: boolean;
  /** The row of the stage before, for paired comparisons. */
  previous?: Row;
}

/**
 * The evaluations configured in `cfg.eval` on one stage's model: per-item results in
 * eval/STAGE.items.jsonl (written after each evaluation, so an interrupted one resumes with
 * the next), every metric with its bootstrap interval and its paired change from the stage
 * before in eval/STAGE.json, which a re-run reads back. The rm stage leaves the policy as it
 * was: its row carries the previous stage's policy results, plus the reward model's.
 */
export async function evaluateAfterStage(cfg: RunConfig, runDir: string, f: EvalFiles, s: StageEval): Promise<Row> {
  const done = new RunDir(runDir).evaluation(s.stage);
  if (fs.existsSync(done)) return JSON.parse(fs.readFileSync(done, 'utf8'));
  fs.mkdirSync(new RunDir(runDir).evaluations, { recursive: true });
  const t0 = Date.now();
  const e = cfg.eval;
  const file = new RunDir(runDir).evaluationItems(s.stage);
  // every rank scores its share of the items (eval/suite.ts); rank 0 alone writes
  const root = dist().isRoot;
  const items: EvalItem[] = readItems(file);
  const previous = s.previous ? readItems(new RunDir(runDir).evaluationItems(s.previous.stage)) : [];
  const unchanged = s.stage === 'rm' && s.previous !== undefined;
  if (unchanged && !items.length) items.push(...previous.filter((it) => POLICY_KINDS.has(it.eval)));
  const have = new Set(items.map((it) => it.eval));
  let cm: ChatModel | undefined;
  const model = async () => (cm ??= await loadChatModel({ model: s.model, template: templateOf(cfg) }));
  const run = async (kind: EvalKind, name: string, when: unknown, fn: () => Promise<EvalItem[]>) => {
    if (!when || have.has(kind)) return;
    const t = Date.now();
    items.push(...(await fn()));
    have.add(kind);
    if (root) await writeItems(file, items);
    say(`eval ${s.stage}: ${name} ${((Date.now() - t) / 1000).toFixed(1)} s`);
  };
  // a randomly initialised base model has nothing to say yet: no generation from it
  const speaks = s.stage !== 'base' || 'path' in cfg.model;
  await run('ppl', 'perplexity', e.ppl && f.ppl.length, async () => (await perplexity(await model(), f.ppl)).items);
  await run('mcq', 'mcq', e.mcq && f.mcqTest, async () => {
    const m = e.mcq as Exclude<EvalConfig['mcq'], false>;
    return mcqEvalItems(await model(), f.mcqTest!, f.mcqDev, { k: m.k_shot, mode: m.mode, chat: s.chat, limit: m.limit });
  });
  await run('gen', 'bleu/rouge', e.gen && f.gen && speaks, async () => {
    const g = e.gen as Exclude<EvalConfig['gen'], false>;
    return generationItems(await model(), await readConversations(f.gen!, g.limit), { maxNewTokens: g.max_new_tokens });
  });
  await run('ner', 'ner', e.ner && f.ner && speaks, async () => {
    const n = e.ner as Exclude<EvalConfig['ner'], false>;
    const { examples, shots } = await nerSplit(f, n);
    return nerEvalItems(await model(), examples, shots, { k: n.k_shot, chat: s.chat, maxNewTokens: n.max_new_tokens });
  });
  await run('pref', 'preference', e.pref && f.pref, async () => preferenceItems(await model(), f.pref!));
  let rm: RewardModel<Float32Array> | undefined;
  const reward = async () => (rm ??= await RewardModel.load(s.rm!, nativeKernels, false));
  await run('rm', 'reward-model accuracy', e.pref && s.stage === 'rm' && s.rm && f.pref, async () =>
    rewardModelItems(await reward(), await model(), f.pref!),
  );
  const gens = itemsOf(items, 'gen');
  await run('reward', 'reward', e.pref && s.rm && s.chat && gens.length, async () => rewardItems(await reward(), await model(), gens));
  await run('scale', 'attitude scale', e.scale && (s.chat || e.scale.mode === 'loglik'), async () => {
    const sc = e.scale as Exclude<EvalConfig['scale'], false>;
    return (
      await attitudeScale(await model(), sc.file ?? bundledScalePath('mental_illness_attitudes_zh.json'), {
        samples: sc.samples,
        chat: s.chat,
        mode: sc.mode,
      })
    ).items;
  });

  const summary = summarizeItems(items, e.bootstrap);
  const row: Row = {
    stage: s.stage,
    ...(unchanged ? { same_policy_as: s.previous!.stage } : {}),
    ...summary.values,
    ci: summary.ci,
    n: summary.n,
  };
  if (s.stage === 'rm' && row.rm_acc === undefined) {
    // no held-out pairs to score: the reward model's own validation accuracy, without an interval
    const last = new MetricsLog(new RunDir(runDir).metrics)
      .read('rm')
      .filter((x) => x.eval_accuracy !== undefined)
      .at(-1);
    if (last) row.rm_acc = last.eval_accuracy as number;
  }
  if (s.previous) {
    const fresh = unchanged ? new Set([...have].filter((k) => !POLICY_KINDS.has(k))) : undefined;
    const metrics = compareItems(items, previous, e.bootstrap, fresh);
    if (Object.keys(metrics).length) row.change = { from: s.previous.stage, metrics };
  }
  if (!root) return row;
  await writeJsonAtomic(done, row);
  new MetricsLog(new RunDir(runDir).metrics).append({
    ...summary.values,
    ...(row.rm_acc !== undefined ? { rm_acc: row.rm_acc } : {}),
    stage: `eval/${s.stage}`,
    step: 0,
  });
  say(`eval ${s.stage}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return row;
}

/**
 * Other systems' predictions (`eval.baselines`) scored on the items the stages were scored
 * on, each compared (paired) with the final stage. Nothing is generated, so they are scored
 * afresh on every run.
 */
export async function evaluateBaselines(cfg: RunConfig, runDir: string, f: EvalFiles, finalStage: string): Promise<Row[]> {
  const e = cfg.eval;
  const final = readItems(new RunDir(runDir).evaluationItems(finalStage));
  const rows: Row[] = [];
  for (const [i, b] of e.baselines.entries()) {
    const need = (what: string | null, kind: string) => {
      if (!what) throw new Error(`eval.baselines[${i}].predictions.${kind}: there is no eval.files.${kind} to score it on`);
      return what;
    };
    const items: EvalItem[] = [];
    const p = b.predictions;
    if (p.gen) {
      const all = await readConversations(need(f.gen, 'gen'));
      items.push(...(await genPredictionItems(p.gen, all.slice(0, e.gen ? e.gen.limit : undefined), all, f.gen!)));
    }
    if (p.mcq) {
      const all = await readMcqFile(need(f.mcqTest, 'mcq'));
      items.push(...(await mcqPredictionItems(p.mcq, all.slice(0, e.mcq ? e.mcq.limit : undefined), all, f.mcqTest!)));
    }
    if (p.ner) {
      const { all, examples, shots } = await nerSplit({ ...f, ner: need(f.ner, 'ner') }, e.ner || { k_shot: 3, max_new_tokens: 256 });
      items.push(...nerItems(examples, await nerPredictions(p.ner, examples, all, f.ner!, nerFormatFor(examples, shots))));
    }
    await writeItems(new RunDir(runDir).evaluationItems(`baseline-${b.name}`), items);
    const summary = summarizeItems(items, e.bootstrap);
    const metrics = compareItems(items, final, e.bootstrap);
    const row: Row = {
      stage: b.name,
      kind: 'baseline',
      ...summary.values,
      ci: summary.ci,
      n: summary.n,
      ...(Object.keys(metrics).length ? { change: { from: finalStage, metrics } } : {}),
    };
    await writeJsonAtomic(new RunDir(runDir).evaluation(`baseline-${b.name}`), row);
    rows.push(row);
  }
  return rows;
}

/** Case studies across the stages that changed the policy and the baselines. */
export function caseStudies(cfg: RunConfig, runDir: string, rows: Row[], baselines: Row[]): CaseStudy[] {
  const systems = [
    ...rows.filter((r) => !r.same_policy_as).map((r) => ({ name: r.stage, items: readItems(new RunDir(runDir).evaluationItems(r.stage)) })),
    ...baselines.map((r) => ({
      name: `${r.stage} (external)`,
      items: readItems(new RunDir(runDir).evaluationItems(`baseline-${r.stage}`)),
    })),
  ];
  return pickCases(systems, cfg.eval.cases, cfg.seed);
}

/**
 * After the last stage: baselines, case studies, RUN/summary.json (everything the report
 * shows) and RUN/summary.md (the table); returns the table with its legend.
 */
export async function writeSummary(
  cfg: RunConfig,
  runDir: string,
  f: EvalFiles,
  rows: Row[],
  extra: Record<string, unknown>,
): Promise<string> {
  const baselines = rows.length ? await evaluateBaselines(cfg, runDir, f, rows.at(-1)!.stage) : [];
  const cases = caseStudies(cfg, runDir, rows, baselines);
  const table = `${summaryTable([...rows, ...baselines], cfg.eval.table)}\n\n${tableLegend(cfg.eval.bootstrap.level)}`;
  await writeJsonAtomic(new RunDir(runDir).summaryJson, {
    rows,
    baselines,
    table: cfg.eval.table,
    bootstrap: cfg.eval.bootstrap,
    benchmarks: f.benchmarks,
    cases,
    ...extra,
  });
  await writeFileAtomic(new RunDir(runDir).summaryMd, table + '\n');
  return table;
}
