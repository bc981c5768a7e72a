// The `chimed data build` configuration: which files feed which stage datasets, and how they
// are deduplicated and decontaminated. YAML or JSON, validated with zod; every default is
// filled in so the resolved config written with the stats says exactly what ran.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import YAML from 'yaml';
import { DECONTAM_DEFAULTS } from './decontam.js';
import { ConfigError } from '../model/config.js';
import { NEAR_DUP_DEFAULTS, SUBSTRING_DEFAULTS } from './dedup.js';
import { IMPORT_DEFAULTS } from './import.js';
import { FORMAT_NAMES } from './readers/format.js';

export const STAGES = ['pt', 'sft', 'pref', 'eval'] as const;
export type Stage = (typeof STAGES)[number];
export const TRAINING_STAGES = ['pt', 'sft', 'pref'] as const;

const fraction = z.number().min(0).max(1);

const SourceSchema = z
  .strictObject({
    path: z
      .string()
      .min(1)
      .describe('input file, or a LLaMA-Factory dataset_info.json (its datasets); relative paths resolve against the config file'),
    name: z
      .string()
      .regex(/^[\w.-]+$/, 'use letters, digits, "_", "-" or "." (it names files and table rows)')
      .optional()
      .describe('source name in records and stats; default: the file name without extension'),
    format: z.enum([...FORMAT_NAMES, 'auto']).default('auto'),
    encoding: z.enum(['auto', 'utf-8', 'utf-8-bom', 'gb18030']).default('auto'),
    stages: z
      .array(z.enum(STAGES))
      .min(1)
      .optional()
      .describe('default by record kind: document -> pt, conversation -> sft, preference -> pref, mcq/ner -> eval'),
    textMaxChars: z.number().int().positive().default(IMPORT_DEFAULTS.textMaxChars),
    kgOutput: z.enum(['text', 'qa', 'both']).default(IMPORT_DEFAULTS.kgOutput),
    maxRejectRate: fraction.optional().describe('overrides the top-level maxRejectRate for this source'),
    datasets: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('a LLaMA-Factory dataset_info.json source: the datasets to read (default all)'),
  })
  .refine((s) => !(s.stages?.includes('eval') && s.stages.length > 1), {
    message: 'a source used for eval cannot also feed a training stage (that would contaminate the evaluation)',
    path: ['stages'],
  });

const NearSchema = z.strictObject({
  threshold: z.number().gt(0).max(1).default(NEAR_DUP_DEFAULTS.threshold),
  ngram: z.number().int().positive().default(NEAR_DUP_DEFAULTS.ngram),
  numPerm: z.number().int().min(16).max(1024).default(NEAR_DUP_DEFAULTS.numPerm),
  seed: z.number().int().default(NEAR_DUP_DEFAULTS.seed),
});

const SubstringSchema = z.strictObject({
  minLength: z.number().int().min(8).default(SUBSTRING_DEFAULTS.minLength),
  keep: z.enum(['none', 'first']).default(SUBSTRING_DEFAULTS.keep),
  shardChars: z.number().int().min(1000).default(SUBSTRING_DEFAULTS.shardChars),
  minDocChars: z.number().int().min(0).default(SUBSTRING_DEFAULTS.minDocChars),
});

const DedupSchema = z.strictObject({
  exact: z.boolean().default(true),
  near: z.union([z.literal(false), NearSchema]).prefault({}),
  substring: z
    .union([z.literal(false), SubstringSchema])
    .prefault({})
    .describe('exact-substring removal, pre-training documents only'),
  stages: z
    .array(z.enum(TRAINING_STAGES))
    .default([...TRAINING_STAGES])
    .describe('stages where exact and near-duplicate removal run'),
});

const DecontamSchema = z.strictObject({
  ngram: z.number().int().positive().default(DECONTAM_DEFAULTS.ngram),
  threshold: z.number().gt(0).max(1).default(DECONTAM_DEFAULTS.threshold),
  minChars: z.number().int().positive().default(DECONTAM_DEFAULTS.minChars),
  action: z.enum(['drop', 'flag']).default(DECONTAM_DEFAULTS.action),
});

export const BuildConfigSchema = z
  .strictObject({
    name: z.string().optional(),
    out: z.string().optional().describe('run directory; datasets go to OUT/data'),
    sources: z.array(SourceSchema).min(1),
    dedup: DedupSchema.prefault({}),
    decontam: z.union([z.literal(false), DecontamSchema]).prefault({}),
    maxRejectRate: fraction.default(IMPORT_DEFAULTS.maxRejectRate),
  })
  .superRefine((c, ctx) => {
    const seen = new Map<string, number>();
    c.sources.forEach((s, i) => {
      const name = sourceName(s);
      if (seen.has(name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['sources', i, 'name'],
          message: `source name "${name}" is also used by sources[${seen.get(name)}]; give one a distinct name`,
        });
      }
      seen.set(name, i);
    });
  });

export type BuildConfig = z.output<typeof BuildConfigSchema>;
export type SourceConfig = BuildConfig['sources'][number];

export function sourceName(s: { path: string; name?: string }): string {
  return s.name ?? path.basename(s.path, path.extname(s.path));
}

/** Validates a parsed config object; errors list every problem with its path. */
export function parseBuildConfig(raw: unknown, where = 'build config'): BuildConfig {
  const r = BuildConfigSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid ${where}:\n${z.prettifyError(r.error)}`);
  return r.data;
}

/** Reads a YAML or JSON build config; relative source paths are resolved against its folder. */
export async function loadBuildConfig(file: string): Promise<BuildConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read build config ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = /\.json$/i.test(file) ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  const cfg = parseBuildConfig(raw, `build config ${file}`);
  const dir = path.dirname(path.resolve(file));
  return {
    ...cfg,
    ...(cfg.out ? { out: path.resolve(dir, cfg.out) } : {}),
    sources: cfg.sources.map((s) => ({ ...s, path: path.resolve(dir, s.path) })),
  };
}
