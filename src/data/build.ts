// `chimed data build`: turns a build config into a run's stage datasets, streaming every
// source once. Evaluation sources are read first, written to data/eval_NAME.jsonl and indexed
// for decontamination. Each training record then goes to the stages that take its kind and
// through, per stage: exact and near-duplicate removal, decontamination, and (pre-training
// documents) the exact-substring pass, before it is written and counted.
//
//   data/pt.jsonl  sft.jsonl  pref.jsonl  eval_NAME.jsonl
//   data/stats.json  rejects.jsonl  dedup_report.json  decontam_report.json
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { RunDir } from '../io/run-dir.js';
import { DataError } from './errors.js';
import type { BuildConfig, Stage } from './build-config.js';
import { sourceName, TRAINING_STAGES } from './build-config.js';
import { expandDatasetInfo, type OpenSource } from './dataset-info.js';
import { Decontaminator, DecontamTracker, flagContamination, type DecontamReport } from './decontam.js';
import { StageDeduper, type DedupStageReport } from './dedup.js';
import { openImport, type ImportSummary } from './import.js';
import { JsonlWriter } from './jsonl-writer.js';
import { recordText, type Document, type RecordKind, type Tagged } from './records.js';
import { RejectSink } from './rejects.js';
import { StatsCollector, formatStatsTable, type CountTokens, type DatasetStats } from './stats.js';

export interface BuildOptions {
  /** Run directory; the datasets go to RUN/data. */
  runDir: string;
  /** Token counter for stats (the trained tokenizer's); default: characters. */
  countTokens?: CountTokens;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface BuildResult {
  dataDir: string;
  files: Record<string, string>;
  stats: DatasetStats;
  /** Per source: the import summary, the stages it fed, and records no stage could use. */
  imports: (ImportSummary & { stages: Stage[]; unusable: number })[];
  rejects: number;
  table: string;
}

const DEFAULT_STAGE: Record<RecordKind, Stage> = { document: 'pt', conversation: 'sft', preference: 'pref', mcq: 'eval', ner: 'eval' };

/** Which record kinds a training stage accepts. */
const ACCEPTS: Record<(typeof TRAINING_STAGES)[number], RecordKind[]> = {
  pt: ['document', 'conversation'],
  sft: ['conversation'],
  pref: ['preference'],
};

/** A record as a pre-training document: conversations become their turns, one per line. */
function asDocument(t: Tagged): Document {
  if (t.kind === 'document') return t.record;
  const { id, source, meta } = t.record;
  return { id, source, text: recordText(t), ...(meta ? { meta } : {}) };
}

export async function buildDatasets(cfg: BuildConfig, opts: BuildOptions): Promise<BuildResult> {
  const log = opts.log ?? (() => undefined);
  const run = new RunDir(opts.runDir);
  const dataDir = run.data;
  await mkdir(dataDir, { recursive: true });
  const files: Record<string, string> = {};
  const rejects = new RejectSink(path.join(dataDir, 'rejects.jsonl'));
  const stats = new StatsCollector(opts.countTokens);
  const writers = new Map<string, JsonlWriter>();
  const writerFor = (file: string) => {
    let w = writers.get(file);
    if (!w) {
      writers.set(file, (w = new JsonlWriter(path.join(dataDir, file))));
      files[file.replace(/\.jsonl$/, '')] = w.path;
    }
    return w;
  };
  for (const st of TRAINING_STAGES) {
    writerFor(`${st}.jsonl`);
    stats.touch(st);
  }
  const imports: BuildResult['imports'] = [];
  const decontam = cfg.decontam ? new DecontamTracker(new Decontaminator(cfg.decontam)) : undefined;
  const dedupers = new Map<Stage, StageDeduper>();
  for (const st of TRAINING_STAGES) {
    const on = cfg.dedup.stages.includes(st);
    dedupers.set(
      st,
      new StageDeduper({
        exact: on && cfg.dedup.exact,
        near: on ? cfg.dedup.near : false,
        substring: st === 'pt' ? cfg.dedup.substring : false,
      }),
    );
  }

  const open = (src: OpenSource, sink = rejects) =>
    openImport(src.path, {
      format: src.format,
      reader: src.reader,
      encoding: src.encoding,
      source: sourceName(src),
      textMaxChars: src.textMaxChars,
      kgOutput: src.kgOutput,
      rejects: sink,
      maxRejectRate: src.maxRejectRate ?? cfg.maxRejectRate,
    });
  // A source without `stages` is an eval source when its records default to eval (MCQ, NER);
  // its first record tells, read through a throwaway reject sink.
  const isEval = async (src: OpenSource): Promise<boolean> => {
    if (src.stages) return src.stages.includes('eval');
    const it = (await open(src, new RejectSink()))[Symbol.asyncIterator]();
    try {
      const first = await it.next();
      return !first.done && DEFAULT_STAGE[first.value.kind] === 'eval';
    } finally {
      await it.return?.(undefined);
    }
  };

  const writeTraining = async (stage: Stage, t: Tagged) => {
    await writerFor(`${stage}.jsonl`).write(t.record);
    stats.add(stage, t.record.source, recordText(t));
  };

  try {
    // Eval sources first: decontamination needs their items before any training record.
    const sources = await expandDatasetInfo(cfg.sources);
    const evalFlags: boolean[] = [];
    for (const src of sources) evalFlags.push(await isEval(src));
    const ordered = [...sources.filter((_, i) => evalFlags[i]), ...sources.filter((_, i) => !evalFlags[i])];
    for (const src of ordered) {
      const name = sourceName(src);
      const stream = await open(src);
      const used = new Set<Stage>();
      let unusable = 0; // valid records a stage cannot use, also listed in rejects.jsonl
      log(`reading ${src.path} (${stream.summary.format}, ${stream.summary.encoding})`);
      for await (const rec of stream) {
        const t = rec as Tagged;
        const targets = src.stages ?? [DEFAULT_STAGE[t.kind]];
        if (targets.includes('eval')) {
          if (!used.has('eval')) stats.touch('eval', name);
          used.add('eval');
          await writerFor(`eval_${name}.jsonl`).write(t.record);
          stats.add('eval', name, recordText(t));
          decontam?.decontam.addEvalItem(name, t);
          continue;
        }
        const stages = targets.filter((st) => ACCEPTS[st as keyof typeof ACCEPTS].includes(t.kind));
        if (!stages.length) {
          throw new DataError(
            `${src.path}: source "${name}" yields ${t.kind} records (format ${stream.summary.format}), which stage(s) ` +
              `${targets.join(', ')} cannot take (pt: document/conversation, sft: conversation, pref: preference, eval: any); fix its "stages"`,
          );
        }
        for (const st of stages) {
          if (!used.has(st)) stats.touch(st, name);
          used.add(st);
          let staged: Tagged = t;
          if (st === 'pt') staged = { kind: 'document', record: asDocument(t) };
          if (st === 'sft' && t.kind === 'conversation' && t.record.messages[t.record.messages.length - 1].role !== 'assistant') {
            await rejects.add({
              file: src.path,
              line: rec.line,
              reason: 'conversation ends on a user turn (no reference answer), so SFT cannot use it',
              raw: JSON.stringify(t.record),
            });
            unusable++;
            continue;
          }
          const text = recordText(staged);
          const dd = dedupers.get(st)!;
          if (!dd.admit(staged, text)) continue;
          if (decontam) {
            const { drop, hits } = decontam.check(st, staged, text);
            if (drop) continue;
            if (hits.length) staged = flagContamination(staged, hits);
          }
          if (st === 'pt' && dd.substringEnabled) {
            for (const doc of dd.pushDocument(staged.record as Document)) await writeTraining(st, { kind: 'document', record: doc });
          } else {
            await writeTraining(st, staged);
          }
        }
      }
      imports.push({ ...stream.summary, unusable, stages: [...used] });
      const s = stream.summary;
      log(`  ${s.records} records, ${s.rejects} rejected, ${unusable} unusable -> ${[...used].join(', ') || 'no stage'}`);
    }
    for (const doc of dedupers.get('pt')!.flush()) await writeTraining('pt', { kind: 'document', record: doc });
    for (const w of writers.values()) await w.close();
    await rejects.close();
  } catch (err) {
    for (const w of writers.values()) await w.abort();
    await rejects.close().catch(() => undefined);
    throw err;
  }
  files.rejects = rejects.path!;

  const dedupReport: { options: BuildConfig['dedup']; stages: Record<string, DedupStageReport> } = { options: cfg.dedup, stages: {} };
  for (const [st, dd] of dedupers) dedupReport.stages[st] = dd.report;
  const decontamReport: DecontamReport | { enabled: false } = decontam ? decontam.result() : { enabled: false };
  const result = stats.result();
  files.stats = run.stats;
  files.dedup_report = path.join(dataDir, 'dedup_report.json');
  files.decontam_report = path.join(dataDir, 'decontam_report.json');
  await writeJsonAtomic(files.stats, { config: cfg, stages: result, imports, rejects: rejects.total });
  await writeJsonAtomic(files.dedup_report, dedupReport);
  await writeJsonAtomic(files.decontam_report, decontamReport);
  return { dataDir, files, stats: result, imports, rejects: rejects.total, table: formatStatsTable(result) };
}
