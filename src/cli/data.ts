// `chimed data import|build|dedup|decontam|stats`: command handlers for the data layer.
import { readFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { dispatch, isPositiveInt as isInt, parse, UsageError, type Command, type Options, type Parsed } from '../io/argv.js';
import { loadBuildConfig } from '../data/build-config.js';
import { buildDatasets } from '../data/build.js';
import { Decontaminator, DecontamTracker, DECONTAM_DEFAULTS, flagContamination } from '../data/decontam.js';
import { NEAR_DUP_DEFAULTS, StageDeduper, SUBSTRING_DEFAULTS } from '../data/dedup.js';
import { parseEncoding } from '../data/encoding.js';
import { DataError } from '../data/errors.js';
import { FORMATS } from '../data/formats.js';
import { IMPORT_DEFAULTS, openImport, type ImportOptions, type ImportSummary } from '../data/import.js';
import { JsonlWriter } from '../data/jsonl-writer.js';
import { FORMAT_NAMES, type FormatName } from '../data/readers/format.js';
import { recordText, type RecordKind, type Tagged } from '../data/records.js';
import { RejectSink } from '../data/rejects.js';
import { formatStatsTable, StatsCollector, type DatasetStats } from '../data/stats.js';
import { formatTable } from '../data/table.js';

const HELP = `chimed data <command> ...

Commands:
  import FILE... --out DIR      read raw or normalised files into the record schema:
                                DIR/{document,conversation,preference,mcq,ner}.jsonl + rejects.jsonl
  build CONFIG [--out RUN_DIR]  build a run's PT / SFT / preference / eval datasets from a
                                YAML or JSON build config (RUN_DIR/data/...)
  dedup FILE --out OUT          remove exact, near-duplicate and repeated-substring content
  decontam FILE --eval EVAL... --out OUT
                                drop or flag training records overlapping evaluation items
  stats PATH...                 statistics table of a run directory, a stats.json or record files

Run "chimed data <command> --help" for the options of a command.`;

const IMPORT_OPTIONS = {
  format: { type: 'string' },
  encoding: { type: 'string' },
  source: { type: 'string' },
  'max-reject-rate': { type: 'string' },
  'text-max-chars': { type: 'string' },
  'kg-output': { type: 'string' },
} as const satisfies Options;

const IMPORT_HELP = `  --format F            auto (default: by extension and the first records' keys) or one of
                        ${FORMAT_NAMES.join(', ')}
  --encoding E          utf-8|utf-8-bom|gb18030|gbk|auto (default auto: BOM, UTF-8, else GB18030;
                        lines with bytes that do not decode are rejected; binary data is refused)
  --source NAME         source name for the records (default: the record's own, else the file name)
  --max-reject-rate R   stop when more than this share of rows is rejected (default ${IMPORT_DEFAULTS.maxRejectRate})
  --text-max-chars N    plain text: characters per document (default ${IMPORT_DEFAULTS.textMaxChars})
  --kg-output O         knowledge-graph triples: text|qa|both (default ${IMPORT_DEFAULTS.kgOutput})`;

const FORMAT_LIST = FORMATS.map((f) => `  ${f.name.padEnd(11)} ${f.description}`).join('\n');

const COMMAND_HELP: Record<string, string> = {
  import: `chimed data import FILE... --out DIR [options]

Reads each FILE and writes the records by kind to DIR/<kind>.jsonl; bad rows go to
DIR/rejects.jsonl with file, line and reason.

${IMPORT_HELP}
  --json                print the summaries as JSON

Formats (auto-detected in this order unless --format is given; .json may be an array or JSONL):
${FORMAT_LIST}`,
  build: `chimed data build CONFIG [--out RUN_DIR] [--json]

Builds RUN_DIR/data/{pt,sft,pref}.jsonl, eval_NAME.jsonl, stats.json, rejects.jsonl,
dedup_report.json and decontam_report.json from the build config (YAML or JSON) and prints
the statistics table. RUN_DIR defaults to the config's "out".

Config keys: sources: [{path, name?, format?, encoding?, stages?: [pt|sft|pref|eval],
textMaxChars?, kgOutput?, maxRejectRate?, datasets?}], dedup: {exact, near: {threshold, ngram,
numPerm, seed} | false, substring: {minLength, keep: none|first, shardChars, minDocChars} |
false, stages}, decontam: {ngram, threshold, minChars, action: drop|flag} | false, maxRejectRate.

A source whose path is a LLaMA-Factory dataset_info.json stands for the datasets it describes
(alpaca, sharegpt, ranking pairs, pre-training text, read with its columns and tags), each a
source named after its dataset; "datasets" picks some of them.`,
  dedup: `chimed data dedup FILE --out OUT [options]

Removes exact duplicates (normalised text hash), near duplicates (MinHash + LSH over
character n-grams) and, for documents, repeated substrings (suffix array, Lee et al. 2022).
The first record of a duplicate set is kept.

  --no-exact            skip exact deduplication
  --no-near             skip near-duplicate removal
  --threshold T         near-duplicate Jaccard threshold (default ${NEAR_DUP_DEFAULTS.threshold})
  --ngram N             near-duplicate character n-gram (default ${NEAR_DUP_DEFAULTS.ngram})
  --num-perm P          MinHash permutations (default ${NEAR_DUP_DEFAULTS.numPerm})
  --substring N         strike repeated substrings of >= N characters (documents only; off by default)
  --keep none|first     substring pass: strike every copy (default, as Lee et al.) or keep the first
  --report FILE         write the dedup report as JSON
${IMPORT_HELP}`,
  decontam: `chimed data decontam FILE --eval EVAL [--eval EVAL2 ...] --out OUT [options]

Finds training records that contain evaluation items (character n-gram overlap over the
question and options, or the user turns) and drops or flags them.

  --ngram N             character n-gram size (default ${DECONTAM_DEFAULTS.ngram})
  --threshold T         share of an item's n-grams that counts as overlap (default ${DECONTAM_DEFAULTS.threshold})
  --min-chars N         probe segments shorter than this are skipped (default ${DECONTAM_DEFAULTS.minChars})
  --action drop|flag    drop overlapping records (default) or keep them with meta.contamination
  --report FILE         write the decontamination report as JSON
${IMPORT_HELP}`,
  stats: `chimed data stats PATH... [--json]

PATH is a run directory (its data/stats.json), a stats.json, or record files (any importable
format), counted per file and source. Tokens are characters unless the stats were written by
a build with a tokenizer.`,
};

const isFraction = (x: number) => x >= 0 && x <= 1;

function importOptions(a: Parsed): ImportOptions {
  const format = a.str('format');
  if (format !== undefined && format !== 'auto' && !FORMAT_NAMES.includes(format as FormatName)) {
    throw new UsageError(`--format: unknown format "${format}"; expected one of ${FORMAT_NAMES.join(', ')}, auto`);
  }
  const kg = a.str('kg-output');
  if (kg !== undefined && !['text', 'qa', 'both'].includes(kg)) throw new UsageError(`--kg-output: expected text|qa|both, got "${kg}"`);
  const enc = a.str('encoding');
  return {
    format: format as FormatName | 'auto' | undefined,
    encoding: enc === undefined || enc === 'auto' ? 'auto' : parseEncoding(enc),
    source: a.str('source'),
    maxRejectRate: a.optNum('max-reject-rate', isFraction, 'a number from 0 to 1'),
    textMaxChars: a.optNum('text-max-chars', isInt, 'a positive integer'),
    kgOutput: kg as ImportOptions['kgOutput'],
  };
}

function summaryTable(summaries: ImportSummary[]): string {
  return formatTable(
    ['file', 'format', 'encoding', 'records', 'kinds', 'rejects'],
    summaries.map((s) => [
      path.basename(s.file),
      s.format,
      s.encoding,
      s.records,
      Object.entries(s.byKind)
        .map(([k, n]) => `${k} ${n}`)
        .join(', '),
      s.rejects,
    ]),
  );
}

async function importCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { ...IMPORT_OPTIONS, out: { type: 'string' }, json: { type: 'boolean' } }, COMMAND_HELP.import);
  if (a.help) return help('import');
  if (!a.positionals.length) throw usage('import', 'give at least one FILE');
  const dir = a.str('out');
  if (!dir) throw usage('import', '--out DIR is required');
  const opts = importOptions(a);
  await mkdir(dir, { recursive: true });
  const rejects = new RejectSink(path.join(dir, 'rejects.jsonl'));
  const writers = new Map<RecordKind, JsonlWriter>();
  const summaries: ImportSummary[] = [];
  try {
    for (const file of a.positionals) {
      const stream = await openImport(file, { ...opts, rejects });
      for await (const rec of stream) {
        let w = writers.get(rec.kind);
        if (!w) writers.set(rec.kind, (w = new JsonlWriter(path.join(dir, `${rec.kind}.jsonl`))));
        await w.write(rec.record);
      }
      summaries.push(stream.summary);
    }
    for (const w of writers.values()) await w.close();
  } catch (err) {
    for (const w of writers.values()) await w.abort();
    throw err;
  } finally {
    await rejects.close();
  }
  if (a.flag('json')) console.log(JSON.stringify(summaries, null, 2));
  else {
    console.log(summaryTable(summaries));
    console.log(
      `\nwrote ${[...writers.keys()].map((k) => `${k}.jsonl`).join(', ') || 'no records'} and rejects.jsonl (${rejects.total}) to ${dir}`,
    );
  }
  return 0;
}

async function buildCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { out: { type: 'string' }, json: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' } }, COMMAND_HELP.build);
  if (a.help) return help('build');
  if (a.positionals.length !== 1) throw usage('build', 'give exactly one CONFIG file');
  const cfg = await loadBuildConfig(a.positionals[0]);
  const runDir = a.str('out') ?? cfg.out;
  if (!runDir) throw usage('build', `no run directory: set "out" in ${a.positionals[0]} or pass --out RUN_DIR`);
  const res = await buildDatasets(cfg, { runDir, log: a.flag('quiet') ? undefined : (l) => console.error(l) });
  if (a.flag('json')) console.log(JSON.stringify({ files: res.files, stats: res.stats, rejects: res.rejects }, null, 2));
  else {
    console.log(res.table);
    console.log(`\n${res.rejects} rejected rows (${res.files.rejects}); datasets in ${res.dataDir}`);
  }
  return 0;
}

/** Imports one file whose records must all be of one kind (dedup and decontam rewrite them). */
async function* singleKind(file: string, opts: ImportOptions, rejects: RejectSink): AsyncGenerator<Tagged> {
  let kind: RecordKind | undefined;
  for await (const rec of await openImport(file, { ...opts, rejects })) {
    kind ??= rec.kind;
    if (rec.kind !== kind)
      throw new DataError(
        `${file}: holds both ${kind} and ${rec.kind} records; split it first (for KG triples use --kg-output text or qa)`,
      );
    yield rec;
  }
}

async function dedupCommand(argv: string[]): Promise<number> {
  const a = parse(
    argv,
    {
      ...IMPORT_OPTIONS,
      out: { type: 'string' },
      report: { type: 'string' },
      'no-exact': { type: 'boolean' },
      'no-near': { type: 'boolean' },
      threshold: { type: 'string' },
      ngram: { type: 'string' },
      'num-perm': { type: 'string' },
      substring: { type: 'string' },
      keep: { type: 'string' },
    },
    COMMAND_HELP.dedup,
  );
  if (a.help) return help('dedup');
  if (a.positionals.length !== 1) throw usage('dedup', 'give exactly one FILE');
  const outFile = a.str('out');
  if (!outFile) throw usage('dedup', '--out OUT is required');
  const keep = a.str('keep') ?? SUBSTRING_DEFAULTS.keep;
  if (keep !== 'none' && keep !== 'first') throw new UsageError(`--keep: expected none|first, got "${keep}"`);
  const minLength = a.optNum('substring', isInt, 'a positive integer');
  const dd = new StageDeduper({
    exact: !a.flag('no-exact'),
    near: a.flag('no-near')
      ? false
      : {
          ...NEAR_DUP_DEFAULTS,
          threshold: a.optNum('threshold', (x) => x > 0 && x <= 1, 'a number in (0, 1]') ?? NEAR_DUP_DEFAULTS.threshold,
          ngram: a.optNum('ngram', isInt, 'a positive integer') ?? NEAR_DUP_DEFAULTS.ngram,
          numPerm: a.optNum('num-perm', isInt, 'a positive integer') ?? NEAR_DUP_DEFAULTS.numPerm,
        },
    substring: minLength === undefined ? false : { ...SUBSTRING_DEFAULTS, minLength, keep },
  });
  const file = a.positionals[0];
  const rejects = new RejectSink(outFile + '.rejects.jsonl');
  const out = new JsonlWriter(outFile);
  let input = 0;
  try {
    for await (const t of singleKind(file, importOptions(a), rejects)) {
      input++;
      if (!dd.admit(t)) continue;
      if (!dd.substringEnabled) await out.write(t.record);
      else if (t.kind !== 'document') throw new DataError(`--substring works on documents; ${file} holds ${t.kind} records`);
      else for (const doc of dd.pushDocument(t.record)) await out.write(doc);
    }
    for (const doc of dd.flush()) await out.write(doc);
    await out.close();
  } catch (err) {
    await out.abort();
    throw err;
  } finally {
    await rejects.close();
  }
  const rows = Object.entries(dd.report.sources).map(([src, c]) => [
    src,
    c.input,
    c.exact,
    c.near,
    c.substringRecords,
    c.substringChars,
    c.substringDropped,
  ]);
  console.log(formatTable(['source', 'input', 'exact', 'near', 'substr records', 'substr chars', 'substr dropped'], rows));
  console.log(`\n${input} records in, ${out.count} written to ${outFile}; ${rejects.total} rejected rows`);
  const report = a.str('report');
  if (report) await writeJsonAtomic(report, { options: dd.opts, ...dd.report });
  return 0;
}

async function decontamCommand(argv: string[]): Promise<number> {
  const a = parse(
    argv,
    {
      ...IMPORT_OPTIONS,
      out: { type: 'string' },
      report: { type: 'string' },
      eval: { type: 'string', multiple: true },
      ngram: { type: 'string' },
      threshold: { type: 'string' },
      'min-chars': { type: 'string' },
      action: { type: 'string' },
    },
    COMMAND_HELP.decontam,
  );
  if (a.help) return help('decontam');
  if (a.positionals.length !== 1) throw usage('decontam', 'give exactly one training FILE');
  const evals = a.many('eval');
  if (!evals.length) throw usage('decontam', 'give at least one --eval FILE');
  const outFile = a.str('out');
  if (!outFile) throw usage('decontam', '--out OUT is required');
  const action = a.str('action') ?? DECONTAM_DEFAULTS.action;
  if (action !== 'drop' && action !== 'flag') throw new UsageError(`--action: expected drop|flag, got "${action}"`);
  const dc = new Decontaminator({
    action,
    ngram: a.optNum('ngram', isInt, 'a positive integer') ?? DECONTAM_DEFAULTS.ngram,
    threshold: a.optNum('threshold', (x) => x > 0 && x <= 1, 'a number in (0, 1]') ?? DECONTAM_DEFAULTS.threshold,
    minChars: a.optNum('min-chars', isInt, 'a positive integer') ?? DECONTAM_DEFAULTS.minChars,
  });
  const rejects = new RejectSink(outFile + '.rejects.jsonl');
  const evalOpts = { encoding: 'auto' as const, rejects };
  for (const file of evals) {
    const setName = path.basename(file, path.extname(file));
    for await (const rec of await openImport(file, evalOpts)) dc.addEvalItem(setName, rec);
  }
  const tracker = new DecontamTracker(dc);
  const file = a.positionals[0];
  const out = new JsonlWriter(outFile);
  try {
    for await (const t of singleKind(file, importOptions(a), rejects)) {
      const { drop, hits } = tracker.check('train', t, recordText(t));
      if (!drop) await out.write((hits.length ? flagContamination(t, hits) : t).record);
    }
    await out.close();
  } catch (err) {
    await out.abort();
    throw err;
  } finally {
    await rejects.close();
  }
  const report = tracker.result();
  const rows = Object.entries(report.stages.train ?? {}).map(([src, c]) => [src, c.checked, c.overlapping, c.dropped, c.flagged]);
  console.log(formatTable(['source', 'checked', 'overlapping', 'dropped', 'flagged'], rows));
  const hit =
    Object.entries(report.evalSetsHit)
      .map(([k, n]) => `${k}: ${n}`)
      .join(', ') || 'none';
  console.log(
    `\n${report.evalItems} evaluation items indexed (${report.evalItemsTooShort} too short to probe); items found in training data: ${hit}`,
  );
  console.log(`${out.count} records written to ${outFile}`);
  const reportFile = a.str('report');
  if (reportFile) await writeJsonAtomic(reportFile, report);
  return 0;
}

async function statsCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { json: { type: 'boolean' } }, COMMAND_HELP.stats);
  if (a.help) return help('stats');
  if (!a.positionals.length) throw usage('stats', 'give a run directory, a stats.json or record files');
  const collector = new StatsCollector();
  let merged: DatasetStats = {};
  let counted = false;
  for (const p of a.positionals) {
    const st = await stat(p).catch(() => undefined);
    if (!st) throw new DataError(`${p}: no such file or directory`);
    const statsFile = st.isDirectory() ? path.join(p, 'data', 'stats.json') : path.basename(p) === 'stats.json' ? p : undefined;
    if (statsFile) {
      const saved = JSON.parse(
        await readFile(statsFile, 'utf8').catch(() => {
          throw new DataError(`${p}: no ${statsFile}; run "chimed data build" first or pass record files`);
        }),
      );
      merged = { ...merged, ...(saved.stages as DatasetStats) };
      continue;
    }
    const stage = path.basename(p, path.extname(p));
    for await (const rec of await openImport(p, { maxRejectRate: 1 })) {
      collector.add(stage, rec.record.source, recordText(rec));
      counted = true;
    }
  }
  const stats = counted ? { ...merged, ...collector.result() } : merged;
  console.log(a.flag('json') ? JSON.stringify(stats, null, 2) : formatStatsTable(stats));
  return 0;
}

function help(command: string): number {
  console.log(COMMAND_HELP[command]);
  return 0;
}

/** A usage error of one data command, with its help. */
const usage = (command: string, msg: string) => new UsageError(`${command}: ${msg}\n\n${COMMAND_HELP[command]}`);

const COMMANDS: Record<string, Command> = {
  import: { summary: 'read raw or normalised files into the record schema', run: importCommand },
  build: { summary: "build a run's stage datasets from a build config", run: buildCommand },
  dedup: { summary: 'remove exact, near-duplicate and repeated-substring content', run: dedupCommand },
  decontam: { summary: 'drop or flag training records overlapping evaluation items', run: decontamCommand },
  stats: { summary: 'statistics of a run directory, a stats.json or record files', run: statsCommand },
};

/** Entry point for `chimed data ...`; returns the process exit code. */
export function dataCommand(argv: string[]): Promise<number> {
  return dispatch(argv, COMMANDS, HELP, 'data command');
}
