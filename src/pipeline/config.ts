import fs from 'node:fs';
import path from 'node:path';
import * as z from 'zod';
import YAML from 'yaml';
import { BuildConfigSchema } from '../data/build-config.js';
import { ConfigError } from '../model/config.js';
import { ContextSchema, warnStepsAndEpochs } from '../train/stages/common.js';
import { DpoConfigSchema } from '../train/stages/dpo.js';
import { PtConfigSchema } from '../train/stages/pt.js';
import { RmConfigSchema } from '../train/stages/rm.js';
import { RsConfigSchema } from '../train/stages/rs.js';
import { SftConfigSchema } from '../train/stages/sft.js';
import { EvalSchema, filePath, resolveEvalPaths } from '../eval/config.js';
import { BUILTIN_TEMPLATES } from '../tokenizer/chat-template.js';
import { hasTokenizerFiles } from '../tokenizer/index.js';

/**
 * `chimed run CONFIG.yaml`: data, tokenizer, model, the ordered stages with their settings
 * (each stage module's schema, train/stages/), and the evaluations run after every stage.
 * Defaults are the papers' (DESIGN.md table); the resolved config with every default filled
 * in is written to RUN/config.yaml.
 */
const posInt = z.number().int().positive();

/** One entry of `stages`: a stage's settings (its module's schema) under its `type`. */
const StageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('pt'), ...PtConfigSchema.shape }),
  z.strictObject({ type: z.literal('sft'), ...SftConfigSchema.shape }),
  z.strictObject({ type: z.literal('rm'), ...RmConfigSchema.shape }),
  z.strictObject({ type: z.literal('rs'), ...RsConfigSchema.shape }),
  z.strictObject({ type: z.literal('dpo'), ...DpoConfigSchema.shape }),
]);

export const TokenizerTrainSchema = z.strictObject({
  vocab_size: posInt.default(8000).describe('size of the vocabulary (at most), special tokens included'),
  min_frequency: posInt.default(2).describe('characters and pairs seen fewer times do not become tokens'),
});

export const RunConfigSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[\w.-]+$/)
    .default('run')
    .describe('the run directory is runs/NAME unless --out is given'),
  seed: ContextSchema.shape.seed,
  threads: ContextSchema.shape.threads,
  builtin_corpus: z
    .union([
      z.literal(false),
      z.strictObject({
        seed: z.number().int().default(7).describe('seed of the generated texts and the held-out split'),
        heldout_fraction: z.number().gt(0).lt(1).default(0.1).describe('share of the diseases held out for evaluation'),
      }),
    ])
    .default(false)
    .describe('generate the built-in medical corpus and use its train / held-out files as sources'),
  data: z
    .record(z.string(), z.unknown())
    .default({})
    .describe('a `chimed data build` config (sources, dedup, decontam); sources may be empty with builtin_corpus'),
  tokenizer: z
    .union([
      z.strictObject({
        path: z.string().describe('a folder with tokenizer.json or tokenizer.model (and tokenizer_config.json)'),
        template: z
          .enum(Object.keys(BUILTIN_TEMPLATES) as [string, ...string[]])
          .optional()
          .describe('a built-in chat template for a tokenizer without one (or instead of its own); every stage and evaluation uses it'),
      }),
      z.strictObject({ train: TokenizerTrainSchema.prefault({}).describe('train a byte-level BPE on the pre-training and SFT data') }),
      z.strictObject({ bytes: z.literal(true).describe('UTF-8 bytes, no training') }),
    ])
    .default({ train: TokenizerTrainSchema.parse({}) }),
  model: z.union([
    z.strictObject({
      path: z.string().describe('an HF model folder: Llama-2/3, Qwen2/2.5, Qwen3 or Baichuan(2)-7B (config.json + safetensors)'),
    }),
    z.strictObject({
      config: z
        .record(z.string(), z.unknown())
        .describe(
          'a fresh model: HF config.json keys of model_type llama (default), qwen2, qwen3 or baichuan (vocab_size from the tokenizer); unknown keys are errors',
        ),
    }),
  ]),
  stages: z.array(StageSchema).min(1).describe('the stages in order, any subset of pt → sft → rm → rs → dpo (see Stages below)'),
  eval: EvalSchema.prefault({}),
});

type BuildConfig = z.output<typeof BuildConfigSchema>;
export type RunConfig = Omit<z.output<typeof RunConfigSchema>, 'data'> & {
  data: Omit<BuildConfig, 'sources'> & { sources: BuildConfig['sources'] };
};
export type StageConfig = RunConfig['stages'][number];

/** The built-in chat template the config chooses (tokenizer.template), if any. */
export function templateOf(cfg: RunConfig): string | undefined {
  return 'template' in cfg.tokenizer ? cfg.tokenizer.template : undefined;
}

const ORDER = ['pt', 'sft', 'rm', 'rs', 'dpo'] as const;

/** Validates a parsed config; errors name the file and the field path. */
export function parseRunConfig(raw: unknown, source: string): RunConfig {
  const r = RunConfigSchema.safeParse(raw);
  if (!r.success) {
    throw new ConfigError(`${source}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  // the data section is a data-build config; with the built-in corpus its sources may be empty,
  // so it is checked here with a stand-in source that is dropped again
  const rawSources = Array.isArray(r.data.data.sources) ? r.data.data.sources : [];
  if (!rawSources.length && r.data.builtin_corpus === false)
    throw new ConfigError(`${source}: data.sources: give at least one source, or enable builtin_corpus`);
  const placeholder = !rawSources.length;
  const d = BuildConfigSchema.safeParse({ ...r.data.data, sources: placeholder ? [{ path: 'builtin-corpus' }] : rawSources });
  if (!d.success) throw new ConfigError(`${source}: ${d.error.issues.map((i) => `data.${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const c: RunConfig = { ...r.data, data: { ...d.data, sources: placeholder ? [] : d.data.sources } };
  const types = c.stages.map((s) => s.type);
  const fail = (msg: string) => {
    throw new ConfigError(`${source}: stages: ${msg}`);
  };
  types.forEach((t, i) => {
    if (types.indexOf(t) !== i) fail(`${t} appears twice`);
    if (i > 0 && ORDER.indexOf(t) < ORDER.indexOf(types[i - 1]))
      fail(`${t} cannot come after ${types[i - 1]} (order: ${ORDER.join(' → ')})`);
  });
  if (types.includes('rs') && !types.includes('rm')) fail('rs needs a reward model: add an rm stage before it');
  const hasPref =
    c.builtin_corpus !== false || c.data.sources.some((s) => s.stages?.includes('pref') || /pref|dpo|reward|pair/i.test(s.path));
  for (const t of ['rm', 'dpo'] as const)
    if (types.includes(t) && !hasPref) fail(`${t} needs preference data: add a source with stages: [pref] (or enable builtin_corpus)`);
  return c;
}

/**
 * Every file and folder the config names that is not there (model, tokenizer, data sources,
 * evaluation and baseline files, rs external candidates), all in one error naming each field,
 * so a typo is found before the data build rather than after it.
 */
export function checkConfigFiles(cfg: RunConfig, source = 'config'): void {
  const named: (readonly [string, string | undefined, 'file' | 'model' | 'tokenizer'])[] = [
    ...cfg.data.sources.map((s, i) => [`data.sources.${i}.path`, s.path, 'file'] as const),
    ['model.path', 'path' in cfg.model ? cfg.model.path : undefined, 'model'],
    ['tokenizer.path', 'path' in cfg.tokenizer ? cfg.tokenizer.path : undefined, 'tokenizer'],
    ...cfg.eval.files.ppl.map((p, i) => [`eval.files.ppl.${i}`, p, 'file'] as const),
    ...(['mcq', 'gen', 'ner'] as const).map((k) => [`eval.files.${k}`, filePath(cfg.eval.files[k]) ?? undefined, 'file'] as const),
    ...(['mcq_dev', 'pref', 'ner_shots'] as const).map((k) => [`eval.files.${k}`, cfg.eval.files[k], 'file'] as const),
    ['eval.scale.file', cfg.eval.scale ? cfg.eval.scale.file : undefined, 'file'],
    ...cfg.eval.baselines.flatMap((b, i) =>
      (['gen', 'mcq', 'ner'] as const).map((k) => [`eval.baselines.${i}.predictions.${k}`, b.predictions[k], 'file'] as const),
    ),
    ...cfg.stages.map((s, i) => [`stages.${i}.external`, s.type === 'rs' ? s.external : undefined, 'file'] as const),
  ];
  const problems = named.flatMap(([field, p, kind]) => {
    if (p === undefined) return [];
    if (!fs.existsSync(p)) return [`${field}: ${p} not found`];
    if (kind === 'model' && !fs.existsSync(path.join(p, 'config.json'))) return [`${field}: ${p} is not a model folder (no config.json)`];
    if (kind === 'tokenizer' && !hasTokenizerFiles(p)) return [`${field}: ${p} has no tokenizer.json or tokenizer.model`];
    return [];
  });
  if (problems.length)
    throw new ConfigError(`${source}: ${problems.length === 1 ? 'a file' : 'files'} the config names:\n  ${problems.join('\n  ')}`);
}

export function readRunConfig(file: string): RunConfig {
  if (!fs.existsSync(file)) throw new ConfigError(`${file}: no such config file`);
  let raw: unknown;
  try {
    raw = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${file}: not valid YAML: ${(e as Error).message}`);
  }
  const cfg = parseRunConfig(raw, file);
  // as the user wrote it (the resolved config has every default, epochs included)
  (raw as { stages: Record<string, unknown>[] }).stages.forEach((st, i) => warnStepsAndEpochs(st, `${file}: stages.${i} (${st.type})`));
  // relative paths are relative to the config file, as in `chimed data build`
  const dir = path.dirname(path.resolve(file));
  const abs = (p: string) => (path.isAbsolute(p) ? p : path.resolve(dir, p));
  for (const s of cfg.data.sources) s.path = abs(s.path);
  if ('path' in cfg.tokenizer) cfg.tokenizer.path = abs(cfg.tokenizer.path);
  if ('path' in cfg.model) cfg.model.path = abs(cfg.model.path);
  for (const s of cfg.stages) if (s.type === 'rs' && s.external) s.external = abs(s.external);
  resolveEvalPaths(cfg.eval, abs);
  return cfg;
}
