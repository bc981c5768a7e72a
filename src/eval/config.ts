// The `eval` section of a run config: which held-out files are scored after every stage,
// how, which metrics the summary table shows, the bootstrap behind its intervals, the case
// studies of the report and other systems' predictions scored on the same items.
import * as z from 'zod';
import { BENCHMARK_NAMES, BENCHMARKS, type BenchmarkName } from './benchmarks.js';
import { DEFAULT_TABLE, METRIC_KEYS } from './metrics.js';

const posInt = z.number().int().positive();

/** A file, or a file tagged with the published benchmark it holds (the report then prints the papers' figures on it). */
function taggedFile(kind: 'mcq' | 'gen' | 'ner', what: string) {
  const names = BENCHMARK_NAMES.filter((b) => BENCHMARKS[b].file === kind).join(', ');
  return z
    .union([
      z.string(),
      z.strictObject({
        path: z.string(),
        benchmark: z
          .enum(BENCHMARK_NAMES)
          .optional()
          .describe(`the benchmark these items come from (${names}); the report prints the published figures on it`),
      }),
    ])
    .optional()
    .describe(`${what}; a path, or {path, benchmark}`);
}

export const EvalSchema = z
  .strictObject({
    files: z
      .strictObject({
        ppl: z.array(z.string()).default([]).describe('held-out text (.txt / .jsonl with text) for perplexity'),
        mcq: taggedFile('mcq', 'MCQ test items (CMMLU/C-Eval CSV, CMExam or normalised JSONL)'),
        mcq_dev: z.string().optional().describe('MCQ dev items for k-shot prompts (same subjects)'),
        gen: taggedFile('gen', 'held-out conversations for BLEU/ROUGE and the reward of greedy answers'),
        pref: z.string().optional().describe('held-out preference pairs for preference accuracy'),
        ner: taggedFile('ner', 'NER test examples (CCKS-2019 JSONL, CMeEE JSON array or normalised JSONL)'),
        ner_shots: z
          .string()
          .optional()
          .describe(
            'NER examples the few-shot demonstrations are taken from; default: the first k_shot of files.ner, which are then not scored',
          ),
      })
      .prefault({})
      .describe('evaluation sets; with builtin_corpus, its held-out files stand in for those not given'),
    ppl: z.boolean().default(true).describe('held-out perplexity on the evaluation documents'),
    mcq: z
      .strictObject({
        k_shot: z.number().int().min(0).default(5),
        mode: z.enum(['loglik', 'cloze', 'generate']).default('loglik'),
        limit: posInt.optional(),
      })
      .or(z.literal(false))
      .prefault({}),
    gen: z
      .strictObject({ limit: posInt.default(100), max_new_tokens: posInt.default(96) })
      .or(z.literal(false))
      .prefault({}),
    ner: z
      .strictObject({
        k_shot: z.number().int().min(0).default(3).describe('demonstrations per prompt (ChiMed-GPT: few-shot)'),
        limit: posInt.optional(),
        max_new_tokens: posInt.default(256),
      })
      .or(z.literal(false))
      .prefault({})
      .describe('few-shot NER by generation, strict span F1 (as `chimed eval ner`)'),
    pref: z
      .boolean()
      .default(true)
      .describe(
        'policy preference accuracy on held-out pairs; reward-model accuracy on them and the reward of greedy answers once a reward model exists',
      ),
    scale: z
      .strictObject({
        file: z.string().optional(),
        samples: posInt.default(1),
        mode: z.enum(['generate', 'loglik']).default('generate').describe('loglik: the most likely option (small models)'),
      })
      .or(z.literal(false))
      .prefault({}),
    table: z
      .array(z.enum(METRIC_KEYS))
      .min(1)
      .default(DEFAULT_TABLE)
      .describe(`summary table columns, in order (known: ${METRIC_KEYS.join(', ')})`),
    bootstrap: z
      .strictObject({
        resamples: posInt.default(1000).describe('percentile bootstrap over items for every interval'),
        level: z.number().gt(0).lt(1).default(0.95),
        seed: z.number().int().default(0),
      })
      .prefault({})
      .describe(
        'intervals of every metric, and paired intervals of each change between consecutive stages ("≈": the change is within noise)',
      ),
    cases: z
      .number()
      .int()
      .min(0)
      .default(5)
      .describe("held-out items the report shows with every stage's answer (picked by the run seed across the eval files)"),
    baselines: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[\w.+-]+$/, 'letters, digits, _ . + - only'),
          predictions: z.strictObject({
            gen: z.string().optional().describe('JSONL {id, output} per held-out conversation'),
            mcq: z.string().optional().describe('JSONL {id, answer: letters} or {id, output: text} per MCQ item'),
            ner: z
              .string()
              .optional()
              .describe('JSONL {id, output: "类型: 实体" lines} or {id, entities: [{start, end, type}]} per NER example'),
          }),
        }),
      )
      .default([])
      .describe("other systems' outputs on the same items, scored with the same metrics: extra rows of the summary table"),
  })
  .superRefine((e, ctx) => {
    for (const k of ['mcq', 'gen', 'ner'] as const) {
      const b = fileBenchmark(e.files[k]);
      if (b && BENCHMARKS[b].file !== k)
        ctx.addIssue({ code: 'custom', path: ['files', k, 'benchmark'], message: `${b} is a ${BENCHMARKS[b].file} benchmark, not ${k}` });
    }
    const names = e.baselines.map((b) => b.name);
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['baselines', i, 'name'], message: `duplicate baseline ${n}` });
    });
  });

export type EvalConfig = z.output<typeof EvalSchema>;
type TaggedFile = string | { path: string; benchmark?: BenchmarkName } | undefined;

export function filePath(f: TaggedFile): string | null {
  return f === undefined ? null : typeof f === 'string' ? f : f.path;
}

export function fileBenchmark(f: TaggedFile): BenchmarkName | undefined {
  return f && typeof f === 'object' ? f.benchmark : undefined;
}

/** Makes every path in the section absolute with `abs` (relative paths are relative to the config file). */
export function resolveEvalPaths(e: EvalConfig, abs: (p: string) => string): void {
  const f = e.files;
  f.ppl = f.ppl.map(abs);
  for (const k of ['mcq', 'gen', 'ner'] as const) {
    const v = f[k];
    if (v !== undefined) f[k] = typeof v === 'string' ? abs(v) : { ...v, path: abs(v.path) };
  }
  for (const k of ['mcq_dev', 'pref', 'ner_shots'] as const) if (f[k]) f[k] = abs(f[k]!);
  if (e.scale && e.scale.file) e.scale.file = abs(e.scale.file);
  for (const b of e.baselines)
    for (const k of ['gen', 'mcq', 'ner'] as const) if (b.predictions[k]) b.predictions[k] = abs(b.predictions[k]!);
}
