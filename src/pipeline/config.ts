import fs from 'node:fs';
import path from 'node:path';
import * as z from 'zod';
import YAML from 'yaml';
import { BuildConfigSchema } from '../data/build-config.js';
import { BUILTIN_TEMPLATES } from '../tokenizer/chat-template.js';

/**
 * `chimed run CONFIG.yaml`: data, tokenizer, model, the ordered stages with their settings,
 * and the evaluations run after every stage. Defaults are the papers' (DESIGN.md table);
 * the resolved config with every default filled in is written to RUN/config.yaml.
 */
const posInt = z.number().int().positive();
const fraction = z.number().min(0).max(1);

const trainer = {
  lr: z.number().positive(),
  epochs: z.number().positive().default(1),
  max_steps: posInt.optional().describe('overrides epochs'),
  batch_size: posInt.default(8),
  grad_accum: posInt.default(1),
  warmup_ratio: fraction.default(0.05),
  weight_decay: z.number().min(0).default(0.01),
  clip: z.number().min(0).default(1),
  schedule: z.enum(['cosine', 'linear', 'constant']).default('cosine'),
  eval_every: z.number().int().min(0).default(0),
  save_every: posInt.default(100),
  recompute: z.boolean().default(false),
};

const LoraSchema = z.strictObject({
  r: posInt.default(8),
  alpha: z.number().positive().default(32),
  dropout: fraction.default(0.05),
  target_modules: z.union([z.literal('all-linear'), z.array(z.string()).min(1)]).default('all-linear')
    .describe("PEFT module names (q_proj, ..., W_pack for Baichuan) or all-linear: every linear layer of the model's family"),
});

const rope = {
  rope_scaling: z.strictObject({ type: z.enum(['linear', 'dynamic', 'yarn']), factor: z.number().gt(1) }).optional()
    .describe('scale RoPE to train past the model\'s length (e.g. linear 2: 2k -> 4k); written into the saved config.json'),
};

const lengths = { max_source: posInt.default(256), max_target: posInt.default(256) };

const StageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('pt'), ...trainer, ...rope, lr: trainer.lr.default(2e-4), epochs: trainer.epochs.default(3), block_size: posInt.max(32768).default(1024), eval_fraction: fraction.default(0.05) }),
  z.strictObject({ type: z.literal('sft'), ...trainer, ...rope, lr: trainer.lr.default(2e-5), epochs: trainer.epochs.default(3), weight_decay: trainer.weight_decay.default(0.05), lora: z.union([z.literal(false), LoraSchema]).default(false), train_on_prompt: z.boolean().default(false), ...lengths }),
  z.strictObject({ type: z.literal('rm'), ...trainer, ...rope, lr: trainer.lr.default(2e-5), batch_size: posInt.default(4), lora: z.union([z.literal(false), LoraSchema]).default(false), ...lengths }),
  z.strictObject({
    type: z.literal('rs'), ...trainer, lr: trainer.lr.default(2e-5), weight_decay: trainer.weight_decay.default(0.05), lora: z.union([z.literal(false), LoraSchema]).default(false),
    k: posInt.default(4), keep: posInt.default(1), threshold: z.number().nullable().default(null), rounds: posInt.default(1),
    temperature: z.number().min(0).default(0.8), top_p: z.number().gt(0).max(1).default(0.9), max_new_tokens: posInt.default(128),
    prompts: z.number().int().positive().optional().describe('at most this many SFT prompts per round (default all)'),
    external: z.string().optional().describe('JSONL of extra candidates {id or prompt, response}'), ...lengths,
  }),
  z.strictObject({ type: z.literal('dpo'), ...trainer, ...rope, lr: trainer.lr.default(2e-5), batch_size: posInt.default(4), weight_decay: trainer.weight_decay.default(0.05), beta: z.number().positive().default(0.1), loss: z.enum(['sigmoid', 'ipo']).default('sigmoid'), lora: z.union([z.literal(false), LoraSchema]).default({ r: 8, alpha: 16, dropout: 0.05, target_modules: 'all-linear' }), ...lengths }),
]);

const EvalSchema = z.strictObject({
  files: z.strictObject({
    ppl: z.array(z.string()).default([]).describe('held-out text (.txt / .jsonl with text) for perplexity'),
    mcq: z.string().optional().describe('MCQ test items (CMMLU/C-Eval CSV, CMExam or normalised JSONL)'),
    mcq_dev: z.string().optional().describe('MCQ dev items for k-shot prompts (same subjects)'),
    gen: z.string().optional().describe('held-out conversations for BLEU/ROUGE and the reward of greedy answers'),
    pref: z.string().optional().describe('held-out preference pairs for preference accuracy'),
  }).prefault({}).describe('evaluation sets; the built-in corpus supplies its own held-out files'),
  ppl: z.boolean().default(true).describe('held-out perplexity on the evaluation documents'),
  mcq: z.strictObject({ k_shot: z.number().int().min(0).default(5), mode: z.enum(['loglik', 'cloze', 'generate']).default('loglik'), limit: posInt.optional() }).or(z.literal(false)).prefault({}),
  gen: z.strictObject({ limit: posInt.default(100), max_new_tokens: posInt.default(96) }).or(z.literal(false)).prefault({}),
  pref: z.boolean().default(true).describe('policy preference accuracy on held-out pairs, and reward of greedy answers once a reward model exists'),
  scale: z.strictObject({ file: z.string().optional(), samples: posInt.default(1), mode: z.enum(['generate', 'loglik']).default('generate').describe('loglik: the most likely option (small models)') }).or(z.literal(false)).prefault({}),
});

export const RunConfigSchema = z.strictObject({
  name: z.string().regex(/^[\w.-]+$/).default('run'),
  seed: z.number().int().default(42),
  threads: z.number().int().min(0).default(0).describe('0 = all cores'),
  builtin_corpus: z.union([z.literal(false), z.strictObject({ seed: z.number().int().default(7), heldout_fraction: z.number().gt(0).lt(1).default(0.1) })]).default(false)
    .describe('generate the built-in medical corpus and use its train / held-out files as sources'),
  data: z.record(z.string(), z.unknown()).default({}).describe('a `chimed data build` config (sources, dedup, decontam); sources may be empty with builtin_corpus'),
  tokenizer: z.union([
    z.strictObject({
      path: z.string(),
      template: z.enum(Object.keys(BUILTIN_TEMPLATES) as [string, ...string[]]).optional()
        .describe("a built-in chat template for a tokenizer without one (or instead of its own); every stage and evaluation uses it"),
    }),
    z.strictObject({ train: z.strictObject({ vocab_size: posInt.default(8000), min_frequency: posInt.default(2) }).prefault({}) }),
    z.strictObject({ bytes: z.literal(true) }),
  ]).default({ train: { vocab_size: 8000, min_frequency: 2 } }),
  model: z.union([
    z.strictObject({ path: z.string().describe('an HF model folder: Llama-2/3, Qwen2/2.5, Qwen3 or Baichuan(2)-7B (config.json + safetensors)') }),
    z.strictObject({ config: z.record(z.string(), z.unknown()).describe('a fresh model: HF config.json keys of model_type llama (default), qwen2, qwen3 or baichuan; unknown keys are errors') }),
  ]),
  stages: z.array(StageSchema).min(1),
  eval: EvalSchema.prefault({}),
});

type BuildConfig = z.output<typeof BuildConfigSchema>;
export type RunConfig = Omit<z.output<typeof RunConfigSchema>, 'data'> & { data: Omit<BuildConfig, 'sources'> & { sources: BuildConfig['sources'] } };
export type StageConfig = RunConfig['stages'][number];

export class RunConfigError extends Error {}

/** The built-in chat template the config chooses (tokenizer.template), if any. */
export function templateOf(cfg: RunConfig): string | undefined {
  return 'template' in cfg.tokenizer ? cfg.tokenizer.template : undefined;
}

const ORDER = ['pt', 'sft', 'rm', 'rs', 'dpo'] as const;

/** Validates a parsed config; errors name the file and the field path. */
export function parseRunConfig(raw: unknown, source: string): RunConfig {
  const r = RunConfigSchema.safeParse(raw);
  if (!r.success) {
    throw new RunConfigError(`${source}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  // the data section is a data-build config; with the built-in corpus its sources may be empty,
  // so it is checked here with a stand-in source that is dropped again
  const rawSources = Array.isArray(r.data.data.sources) ? r.data.data.sources : [];
  if (!rawSources.length && r.data.builtin_corpus === false) throw new RunConfigError(`${source}: data.sources: give at least one source, or enable builtin_corpus`);
  const placeholder = !rawSources.length;
  const d = BuildConfigSchema.safeParse({ ...r.data.data, sources: placeholder ? [{ path: 'builtin-corpus' }] : rawSources });
  if (!d.success) throw new RunConfigError(`${source}: ${d.error.issues.map((i) => `data.${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const c: RunConfig = { ...r.data, data: { ...d.data, sources: placeholder ? [] : d.data.sources } };
  const types = c.stages.map((s) => s.type);
  const fail = (msg: string) => { throw new RunConfigError(`${source}: stages: ${msg}`); };
  types.forEach((t, i) => {
    if (types.indexOf(t) !== i) fail(`${t} appears twice`);
    if (i > 0 && ORDER.indexOf(t) < ORDER.indexOf(types[i - 1])) fail(`${t} cannot come after ${types[i - 1]} (order: ${ORDER.join(' → ')})`);
  });
  if (types.includes('rs') && !types.includes('rm')) fail('rs needs a reward model: add an rm stage before it');
  const hasPref = c.builtin_corpus !== false || c.data.sources.some((s) => s.stages?.includes('pref') || /pref|dpo|reward|pair/i.test(s.path));
  for (const t of ['rm', 'dpo'] as const) if (types.includes(t) && !hasPref) fail(`${t} needs preference data: add a source with stages: [pref] (or enable builtin_corpus)`);
  return c;
}

export function readRunConfig(file: string): RunConfig {
  if (!fs.existsSync(file)) throw new RunConfigError(`${file}: no such config file`);
  let raw: unknown;
  try {
    raw = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new RunConfigError(`${file}: not valid YAML: ${(e as Error).message}`);
  }
  const cfg = parseRunConfig(raw, file);
  // relative paths are relative to the config file, as in `chimed data build`
  const dir = path.dirname(path.resolve(file));
  const abs = (p: string) => (path.isAbsolute(p) ? p : path.resolve(dir, p));
  for (const s of cfg.data.sources) s.path = abs(s.path);
  if ('path' in cfg.tokenizer) cfg.tokenizer.path = abs(cfg.tokenizer.path);
  if ('path' in cfg.model) cfg.model.path = abs(cfg.model.path);
  for (const s of cfg.stages) if (s.type === 'rs' && s.external) s.external = abs(s.external);
  if (cfg.eval.scale && cfg.eval.scale.file) cfg.eval.scale.file = abs(cfg.eval.scale.file);
  const f = cfg.eval.files;
  f.ppl = f.ppl.map(abs);
  for (const k of ['mcq', 'mcq_dev', 'gen', 'pref'] as const) if (f[k]) f[k] = abs(f[k]!);
  return cfg;
}
