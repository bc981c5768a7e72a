import path from 'node:path';
import { templateOf, type RunConfig, type StageConfig } from './config.js';

export interface StagePlan {
  /** `chimed train STAGE` arguments: the pipeline runs each stage exactly as a user would. */
  argv: string[];
  /** The model folder the stage leaves for the next one. */
  output: string;
  /** Files and folders it reads (hashed into done.json for lineage). */
  inputs: string[];
  /** A LoRA stage's adapter, merged into its base to give `output`. */
  merge: { base: string; adapter: string } | null;
}

type Lora = false | { r: number; alpha: number; dropout: number; target_modules: string[] | 'all-linear' };

const loraArgs = (l: Lora) => (l ? ['--lora', '--lora-r', String(l.r), '--lora-alpha', String(l.alpha), '--lora-dropout', String(l.dropout), '--target-modules', [l.target_modules].flat().join(',')] : []);

function trainerArgs(st: StageConfig, seed: number, threads: number): string[] {
  const a = [
    '--lr', String(st.lr), '--batch-size', String(st.batch_size), '--grad-accum', String(st.grad_accum), '--warmup-ratio', String(st.warmup_ratio),
    '--weight-decay', String(st.weight_decay), '--clip', String(st.clip), '--schedule', st.schedule, '--save-every', String(st.save_every), '--seed', String(seed),
    ...(st.max_steps ? ['--max-steps', String(st.max_steps)] : ['--epochs', String(st.epochs)]),
  ];
  if (st.eval_every) a.push('--eval-every', String(st.eval_every));
  if ('rope_scaling' in st && st.rope_scaling) a.push('--rope-scaling', `${st.rope_scaling.type}:${st.rope_scaling.factor}`);
  if (st.recompute) a.push('--recompute');
  if (threads) a.push('--threads', String(threads));
  return a;
}

/** Translates one configured stage into its CLI invocation and output location. */
export function stageArgs(cfg: RunConfig, runDir: string, st: StageConfig, policy: string, rmDir: string | null, tokDir: string): StagePlan {
  const data = (f: string) => path.join(runDir, 'data', f);
  const stageDir = path.join(runDir, 'stages', st.type);
  const common = ['--out', runDir, ...trainerArgs(st, cfg.seed, cfg.threads)];
  // every chat stage renders with the template the config chose, if it chose one
  const name = templateOf(cfg);
  const template = name ? ['--template', name] : [];
  const final = path.join(stageDir, 'final');
  const lengths = 'max_source' in st ? ['--max-source', String(st.max_source), '--max-target', String(st.max_target)] : [];
  const withLora = (l: Lora, argv: string[], inputs: string[]): StagePlan =>
    ({ argv: [...argv, ...loraArgs(l)], inputs, output: l ? path.join(stageDir, 'merged') : final, merge: l ? { base: policy, adapter: final } : null });
  switch (st.type) {
    case 'pt':
      return { argv: ['--data', data('pt.jsonl'), '--model', policy, '--tokenizer', tokDir, '--block-size', String(st.block_size), '--eval-fraction', String(st.eval_fraction), ...common], output: final, inputs: [data('pt.jsonl'), policy], merge: null };
    case 'sft':
      return withLora(st.lora, ['--data', data('sft.jsonl'), '--model', policy, ...template, ...lengths, ...(st.train_on_prompt ? ['--train-on-prompt'] : []), ...common], [data('sft.jsonl'), policy]);
    case 'rm': {
      const plan = withLora(st.lora, ['--data', data('pref.jsonl'), '--model', policy, ...template, ...lengths, '--eval-fraction', '0.1', ...common], [data('pref.jsonl'), policy]);
      // the reward model's own CLI writes the merged model (head included)
      return { ...plan, merge: null };
    }
    case 'rs': {
      if (!rmDir) throw new Error('rs needs a reward model stage before it');
      const prompts = data('sft.jsonl');
      const argv = ['--prompts', prompts, '--model', policy, ...template, '--reward', rmDir, '--k', String(st.k), '--keep', String(st.keep), '--rounds', String(st.rounds),
        '--temperature', String(st.temperature), '--top-p', String(st.top_p), '--max-new-tokens', String(st.max_new_tokens), ...lengths, ...common, ...loraArgs(st.lora)];
      if (st.threshold !== null) argv.push('--threshold', String(st.threshold));
      if (st.external) argv.push('--external', st.external);
      if (st.prompts) argv.push('--limit', String(st.prompts));
      return { argv, output: path.join(stageDir, `round-${st.rounds}`, 'policy'), inputs: [prompts, policy, rmDir], merge: null };
    }
    case 'dpo':
      return withLora(st.lora, ['--data', data('pref.jsonl'), '--model', policy, ...template, '--beta', String(st.beta), '--loss', st.loss, ...lengths, '--eval-fraction', '0.1', ...common], [data('pref.jsonl'), policy]);
  }
}
