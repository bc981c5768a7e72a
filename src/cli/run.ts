import path from 'node:path';
import { parseRunConfig, readRunConfig } from '../pipeline/config.js';
import { DEMO_SEED, demoConfig } from '../pipeline/demo.js';
import { configReference } from '../pipeline/reference.js';
import { runPipeline } from '../pipeline/run.js';
import { parse } from '../io/argv.js';

const RUN_USAGE = `chimed run CONFIG.yaml [--out RUN_DIR]
chimed run --reference        print the configuration reference (docs/config.md)

The whole regime from one config: data build (dedup, decontamination), tokenizer, the
ordered stages (pt, sft, rm, rs, dpo: any subset in that order) and the evaluations after
every stage. Re-running re-makes exactly what changed (a source file, a setting) and what
follows, saying why, the old results moved to RUN_DIR/stale-TIME; unchanged finished steps are
skipped and an interrupted stage continues from its last checkpoint. Output: RUN_DIR (default
runs/NAME).`;

export async function runCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { out: { type: 'string' }, reference: { type: 'boolean' } }, RUN_USAGE);
  if (a.flag('reference')) {
    process.stdout.write(configReference());
    return 0;
  }
  if (a.help || !a.positionals[0]) {
    process.stdout.write(RUN_USAGE + '\n');
    return a.help ? 0 : 2;
  }
  const cfg = readRunConfig(a.positionals[0]);
  await runPipeline(cfg, a.str('out') ?? path.join('runs', cfg.name));
  return 0;
}

const DEMO_USAGE = `chimed demo [--fast] [--seed N] [--out RUN_DIR]

The whole regime on the built-in medical corpus with a small model: data build, tokenizer,
pre-training, SFT, reward model, rejection sampling, DPO, with evaluation after each stage
and a summary table (about 10 minutes on 2 cores; --fast about 1).

  --seed N    seeds everything: the corpus and its held-out split, the initialisation, data
              order and sampling (default ${DEMO_SEED}); runs differ only by it`;

export async function demoCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { fast: { type: 'boolean' }, seed: { type: 'string' }, out: { type: 'string' } }, DEMO_USAGE);
  if (a.help) {
    process.stdout.write(DEMO_USAGE + '\n');
    return 0;
  }
  const cfg = parseRunConfig(
    demoConfig(a.flag('fast'), a.num('seed', DEMO_SEED, Number.isSafeInteger, 'an integer')),
    'built-in demo config',
  );
  await runPipeline(cfg, a.str('out') ?? path.join('runs', cfg.name));
  return 0;
}
