// The training stages: each a settings schema (the run config's stage keys and the CLI's
// flags), an inputs schema (what the CLI names and the pipeline supplies) and a typed run.
import type * as z from 'zod';
import type { StageContext, StageResult } from './common.js';
import { DpoConfigSchema, DpoInputsSchema, runDpo } from './dpo.js';
import { PtConfigSchema, PtInputsSchema, runPt } from './pt.js';
import { RmConfigSchema, RmInputsSchema, runRm } from './rm.js';
import { RsConfigSchema, RsInputsSchema, runRs } from './rs.js';
import { runSft, SftConfigSchema, SftInputsSchema } from './sft.js';

export interface Stage<C extends z.ZodObject = z.ZodObject, I extends z.ZodObject = z.ZodObject> {
  name: string;
  summary: string;
  /** What the stage does, for its --help. */
  about: string;
  config: C;
  inputs: I;
  run(settings: z.input<C>, ctx: StageContext & z.input<I>): Promise<StageResult>;
}

const stage = <C extends z.ZodObject, I extends z.ZodObject>(s: Stage<C, I>) => s;

export const STAGES = {
  pt: stage({
    name: 'pt',
    summary: 'continued pre-training on packed text blocks',
    config: PtConfigSchema,
    inputs: PtInputsSchema,
    run: runPt,
    about: 'Continued pre-training: next-token prediction on packed blocks; starts from --model, or from a fresh model (--config).',
  }),
  sft: stage({
    name: 'sft',
    summary: 'supervised fine-tuning on conversations (full or LoRA)',
    config: SftConfigSchema,
    inputs: SftInputsSchema,
    run: runSft,
    about:
      'Supervised fine-tuning on conversations rendered with the chat template; loss on the assistant turns only (unless --train-on-prompt).',
  }),
  rm: stage({
    name: 'rm',
    summary: 'reward model on preference pairs (pairwise loss)',
    config: RmConfigSchema,
    inputs: RmInputsSchema,
    run: runRm,
    about:
      'Reward model (HF LlamaForSequenceClassification, one label) on preference pairs with the pairwise loss\n' +
      '-log sigmoid(r_chosen - r_rejected); logs held-out pairwise accuracy. Starts from a causal LM (the head is added)\n' +
      'or continues a reward model. With --lora the head is trained beside the adapter and the model is also written\n' +
      'merged, head included (stages/rm/merged).',
  }),
  rs: stage({
    name: 'rs',
    summary: 'rejection sampling: k samples, reward-ranked, SFT on the best, in rounds',
    config: RsConfigSchema,
    inputs: RsInputsSchema,
    run: runRs,
    about:
      "ChiMed-GPT's rejection sampling: per round, the policy's greedy answer and k samples per prompt, any external\n" +
      "candidates and the prompt's reference answer are scored by the reward model; the best --keep samples that beat the\n" +
      "greedy answer's reward by more than --margin (and above --threshold) become an SFT set, with --replay of it reference\n" +
      'answers, the policy is fine-tuned on. A prompt whose samples do not beat its greedy answer teaches nothing that round;\n' +
      "the round keeps the weights whose greedy answers to the held-out prompts score best without their reference answers'\n" +
      'loss rising by more than --max-loss-rise, so it never leaves the policy worse on them, nor drifted from what SFT taught.\n' +
      'Candidates, rewards and choices of each round go to RUN_DIR/stages/rs/round-N/candidates.jsonl, its report (kept\n' +
      'fraction, mean reward of kept vs greedy vs reference answers, held-out reward before and after) to summary.json,\n' +
      "metrics.jsonl and stdout; the round's policy to round-N/policy.",
  }),
  dpo: stage({
    name: 'dpo',
    summary: 'direct preference optimisation (sigmoid or IPO loss)',
    config: DpoConfigSchema,
    inputs: DpoInputsSchema,
    run: runDpo,
    about:
      'Direct preference optimisation. Reference log-probabilities are computed with the starting weights and cached.\n' +
      'Qilin-Med: LoRA (r 8, alpha 16) on the SFT-merged model (or --model BASE --adapter SFT_ADAPTER), beta 0.1, sigmoid loss.',
  }),
};

export type StageName = keyof typeof STAGES;
