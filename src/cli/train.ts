import fs from 'node:fs';
import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { Context } from '../engine/tensor.js';
import { saveModel } from '../model/checkpoint.js';
import { Tokenizer } from '../tokenizer/index.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { MetricsLog } from '../train/metrics.js';
import { PretrainTask, preparePretrainData } from '../train/pretrain.js';
import { Trainer, trainerDefaults, type TrainerConfig } from '../train/trainer.js';
import { parse, UsageError } from './args.js';
import { applyThreads, modelFrom } from './common.js';

const PT_USAGE = `chimed train pt --data FILE[,FILE...] --out RUN_DIR (--config MODEL.json | --model DIR) [options]

Continued pre-training: next-token prediction on packed blocks. Data: .jsonl with "text"
(or prompt/response) and plain .txt files. Re-running the same command resumes from the last
checkpoint in RUN_DIR/stages/pt.

  --tokenizer DIR      tokenizer.json folder (default: the --model folder's, else UTF-8 bytes)
  --block-size N       tokens per block (default 1024, up to the model's max positions)
  --batch-size N       blocks per micro-batch (default 8)
  --grad-accum N       micro-batches per optimizer step (default 1)
  --epochs X           passes over the data (default 3) unless --max-steps
  --max-steps N        optimizer steps in total
  --lr X               peak learning rate (default 2e-4)
  --warmup-ratio X     (default 0.05)   --weight-decay X (default 0.01)   --clip X (default 1.0)
  --schedule S         cosine | linear | constant (default cosine)
  --eval-fraction X    documents held out for eval loss / perplexity (default 0.05)
  --eval-every N       steps between evaluations (default: only at the end)
  --eval-blocks N      held-out blocks per evaluation (default 64)
  --save-every N       steps between checkpoints (default 100)
  --recompute          recompute each block in backward (long contexts in little memory)
  --seed N  --threads N`;

export async function trainCommand(argv: string[]): Promise<number> {
  const [stage, ...rest] = argv;
  if (stage === 'pt') return trainPretrain(rest);
  if (!stage || stage === '--help' || stage === '-h') {
    process.stdout.write(`chimed train pt ...   continued pre-training\n\n${PT_USAGE}\n`);
    return stage ? 0 : 1;
  }
  throw new UsageError(`unknown training stage "${stage}" (available: pt)`);
}

async function trainPretrain(argv: string[]): Promise<number> {
  const a = parse(argv, {
    data: { type: 'string' }, out: { type: 'string' }, config: { type: 'string' }, model: { type: 'string' }, tokenizer: { type: 'string' },
    'block-size': { type: 'string' }, 'batch-size': { type: 'string' }, 'grad-accum': { type: 'string' }, epochs: { type: 'string' },
    'max-steps': { type: 'string' }, lr: { type: 'string' }, 'warmup-ratio': { type: 'string' }, 'weight-decay': { type: 'string' },
    clip: { type: 'string' }, schedule: { type: 'string' }, 'eval-fraction': { type: 'string' }, 'eval-every': { type: 'string' },
    'eval-blocks': { type: 'string' }, 'save-every': { type: 'string' }, recompute: { type: 'boolean' }, seed: { type: 'string' },
    threads: { type: 'string' },
  }, PT_USAGE);
  if (a.help) { process.stdout.write(PT_USAGE + '\n'); return 0; }
  applyThreads(a.str('threads') ? a.int('threads') : undefined);
  const runDir = a.need('out');
  const data = a.list('data');
  if (!data.length) throw new UsageError(`--data is required\n\n${PT_USAGE}`);
  const seed = a.num('seed', 42, Number.isInteger, 'an integer');
  const model = await modelFrom({ model: a.str('model'), config: a.str('config'), seed, trainable: true });
  const tokDir = a.str('tokenizer') ?? (a.str('model') && fs.existsSync(path.join(a.str('model')!, 'tokenizer.json')) ? a.str('model') : undefined);
  const tokenizer = tokDir ? await Tokenizer.fromDir(tokDir) : Tokenizer.bytes();
  if (tokenizer.vocabSize > model.config.vocab_size) {
    throw new UsageError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`);
  }
  const blockSize = a.int('block-size', 1024);
  if (blockSize > model.config.max_position_embeddings) {
    throw new UsageError(`--block-size ${blockSize} exceeds the model's max_position_embeddings (${model.config.max_position_embeddings})`);
  }
  const batchSize = a.int('batch-size', 8);
  const ptData = await preparePretrainData(data, tokenizer, path.join(runDir, 'data'), blockSize, a.num('eval-fraction', 0.05), seed);
  const gradAccum = a.int('grad-accum', 1);
  const schedule = a.str('schedule') ?? 'cosine';
  if (!['cosine', 'linear', 'constant'].includes(schedule)) throw new UsageError(`--schedule: expected cosine, linear or constant, got "${schedule}"`);
  const cfg: TrainerConfig = {
    ...trainerDefaults,
    lr: a.num('lr', 2e-4), warmupRatio: a.num('warmup-ratio', 0.05), weightDecay: a.num('weight-decay', 0.01), clipNorm: a.num('clip', 1.0),
    schedule: schedule as TrainerConfig['schedule'], gradAccum, seed,
    maxSteps: a.str('max-steps') ? a.int('max-steps') : Math.max(1, Math.ceil((a.num('epochs', 3) * ptData.train.count) / (batchSize * gradAccum))),
    evalEvery: a.str('eval-every') ? a.int('eval-every') : 0, saveEvery: a.int('save-every', 100),
  };
  const stageDir = path.join(runDir, 'stages', 'pt');
  fs.mkdirSync(stageDir, { recursive: true });
  await writeJsonAtomic(path.join(stageDir, 'args.json'), { ...cfg, blockSize, batchSize, data, tokenizer: tokDir ?? 'bytes', recompute: a.flag('recompute'), model: model.config });
  const save = async (dir: string) => { await saveModel(dir, model); await tokenizer.save(dir); };
  const task = new PretrainTask(model, ptData, batchSize, { recompute: a.flag('recompute'), evalBlocks: a.int('eval-blocks', 64) }, save);
  const trainer = new Trainer<Float32Array>('pt', stageDir, cfg, new MetricsLog(path.join(runDir, 'metrics.jsonl')));
  const stop = () => trainer.requestStop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    process.stderr.write(`pt: ${ptData.meta.train.tokens.toLocaleString('en-US')} training tokens in ${ptData.train.count} blocks of ${blockSize}; ${cfg.maxSteps} steps\n`);
    const r = await trainer.train(task, new Context(nativeKernels));
    const ev = r.evals;
    process.stdout.write(`pt done: ${r.steps} steps${r.resumedFrom ? ` (resumed at ${r.resumedFrom})` : ''}, train loss ${r.lastLoss.toFixed(4)}` +
      (ev.eval_loss !== undefined ? `, held-out loss ${ev.eval_loss.toFixed(4)}, perplexity ${ev.eval_ppl.toFixed(2)}` : '') + `\nmodel: ${r.finalDir}\n`);
    return 0;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    ptData.train.close();
    ptData.heldout?.close();
  }
}
