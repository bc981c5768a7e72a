// Continued pre-training (Qilin-Med's DCPT): next-token prediction on packed blocks.
import fs from 'node:fs';
import path from 'node:path';
import * as z from 'zod';
import { dist, rootFirst, say } from '../../engine/dist.js';
import { nativeKernels } from '../../engine/native.js';
import { lineageOf } from '../../io/lineage.js';
import { RunDir } from '../../io/run-dir.js';
import { loadModel, readConfigFile, saveModel } from '../../model/checkpoint.js';
import { ConfigError, contextLength } from '../../model/config.js';
import { Llama } from '../../model/llama.js';
import { scaleRope } from '../../model/load.js';
import { Tokenizer, TOKENIZER_FILES } from '../../tokenizer/index.js';
import { reconcile, recordLineage } from '../lineage.js';
import { PretrainTask, preparePretrainData } from '../pretrain.js';
import {
  heldoutSetting,
  posInt,
  ropeSetting,
  trainerConfig,
  resolveSettings,
  trainerSettings,
  trainStage,
  type StageContext,
  type StageResult,
} from './common.js';

export const PtConfigSchema = z.strictObject({
  ...trainerSettings({ lr: 2e-4, epochs: 3, batch_size: 8, weight_decay: 0.01 }),
  ...ropeSetting,
  block_size: posInt
    .max(32768)
    .default(1024)
    .describe("tokens per packed block (at most the model's context: max_position_embeddings, extended by rope_scaling)"),
  eval_fraction: heldoutSetting(0.05, 'documents'),
  eval_blocks: posInt.default(64).describe('held-out blocks scored per evaluation'),
});
export type PtConfig = z.output<typeof PtConfigSchema>;

export const PtInputsSchema = z.strictObject({
  data: z.array(z.string()).min(1).meta({
    arg: 'FILE',
    description:
      'documents: .jsonl with "text" (or prompt/response, or messages) and plain .txt, tokenised once into RUN_DIR/data; or token-id files (.bin, raw uint32: the first trains, a second is held out)',
  }),
  model: z.string().optional().meta({ arg: 'DIR', description: 'HF model folder to continue from' }),
  config: z.string().optional().meta({ arg: 'MODEL.json', description: 'HF LlamaConfig keys: start from a fresh random model instead' }),
  tokenizer: z.string().optional().meta({ arg: 'DIR', description: "tokenizer folder (default: the model folder's, else UTF-8 bytes)" }),
});
export type PtInputs = z.output<typeof PtInputsSchema>;

/**
 * The documents are tokenised once into RUN/data/pt_*.bin; those are re-made (the old ones
 * moved aside) when the documents, the tokenizer, the held-out share or the seed change.
 * Token-id files (.bin) given as data are read as they are.
 */
async function tokenisedData(run: RunDir, ctx: StageContext & PtInputs, tokDir: string | undefined, evalFraction: number) {
  const step = {
    name: 'pt',
    verb: 're-tokenising the documents',
    record: path.join(run.data, 'pt_tokens.lineage.json'),
    outputs: run.ptTokens,
  };
  const tokFiles = tokDir ? TOKENIZER_FILES.map((f) => path.join(tokDir, f)).filter((f) => fs.existsSync(f)) : [];
  const now = lineageOf(run.root, { eval_fraction: evalFraction, seed: ctx.seed, tokenizer: tokDir ? 'files' : 'bytes' }, [
    ...ctx.data,
    ...tokFiles,
  ]);
  const text = !ctx.data.some((f) => f.endsWith('.bin'));
  if (text) await reconcile(run, step, now);
  return { record: () => (text ? recordLineage(step, now) : Promise.resolve()) };
}

/** Runs the stage: `settings` as in a run config's stage entry (defaults filled in here), inputs and run directory in `ctx`. */
export async function runPt(settings: z.input<typeof PtConfigSchema>, ctx: StageContext & PtInputs): Promise<StageResult> {
  const config = resolveSettings(PtConfigSchema, settings, 'pt');
  const loaded = ctx.model
    ? await loadModel(ctx.model, nativeKernels, true)
    : ctx.config
      ? Llama.random(nativeKernels, readConfigFile(ctx.config), ctx.seed, true)
      : null;
  if (!loaded) throw new ConfigError('pt: give a model folder to continue from, or a model config (MODEL.json) for a fresh model');
  const model = scaleRope(loaded, config.rope_scaling);
  const tokDir = ctx.tokenizer ?? ctx.model;
  const tokenizer = tokDir ? Tokenizer.fromDir(tokDir) : Tokenizer.bytes();
  if (tokenizer.vocabSize > model.config.vocab_size) {
    throw new ConfigError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`);
  }
  if (config.block_size > contextLength(model.config)) {
    throw new ConfigError(
      `block_size ${config.block_size} exceeds the model's context of ${contextLength(model.config)} positions (max_position_embeddings; rope_scaling extends it)`,
    );
  }
  const run = new RunDir(ctx.runDir);
  const prepare = () => preparePretrainData(ctx.data, tokenizer, run.data, config.block_size, config.eval_fraction, ctx.seed);
  // rank 0 reconciles and tokenises into the run directory; the other ranks then open its files
  const data = await rootFirst(async () => {
    if (!dist().isRoot) return prepare();
    const tokens = await tokenisedData(run, ctx, tokDir, config.eval_fraction);
    const prepared = await prepare();
    await tokens.record();
    return prepared;
  });
  const cfg = trainerConfig(config, data.train.count, ctx.seed);
  const save = async (dir: string) => {
    await saveModel(dir, model);
    await tokenizer.save(dir);
  };
  const task = new PretrainTask(model, data, config.batch_size, { recompute: config.recompute, evalBlocks: config.eval_blocks }, save);
  say(
    `pt: ${data.meta.train.tokens.toLocaleString('en-US')} training tokens in ${data.train.count} blocks of ${config.block_size}; ${cfg.maxSteps} steps`,
  );
  try {
    const r = await trainStage('pt', ctx.runDir, cfg, task, {
      blockSize: config.block_size,
      data: ctx.data,
      tokenizer: tokDir ?? 'bytes',
      recompute: config.recompute,
      model: model.config,
    });
    if (r.evals.eval_ppl !== undefined)
      process.stdout.write(`held-out perplexity ${r.evals.eval_ppl.toFixed(2)} (loss ${r.evals.eval_loss.toFixed(4)})\n`);
    return { output: r.finalDir, final: r.finalDir };
  } finally {
    data.train.close();
    data.heldout?.close();
  }
}
