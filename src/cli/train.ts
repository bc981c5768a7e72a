import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { saveModel } from '../model/checkpoint.js';
import { contextLength } from '../model/config.js';
import { scaleRope } from '../model/load.js';
import { isRewardModel, RewardModel } from '../model/reward.js';
import { ChatTemplate } from '../tokenizer/chat-template.js';
import { Tokenizer } from '../tokenizer/index.js';
import { toMessages, readJsonl } from '../train/conversations.js';
import { DpoTask } from '../train/dpo.js';
import { InputError } from '../train/documents.js';
import { encodeResponse, toPreference, type PreferencePair } from '../train/preference.js';
import { PretrainTask, preparePretrainData } from '../train/pretrain.js';
import { RewardTask } from '../train/reward.js';
import { encodeSft, SftTask } from '../train/sft.js';
import { Context } from '../engine/tensor.js';
import { parse, UsageError } from './args.js';
import { applyThreads, modelFrom } from './common.js';
import { rsCommand } from './rs.js';
import {
  LORA_FLAGS, LORA_USAGE, MODEL_FLAGS, MODEL_USAGE, ROPE_FLAGS, ROPE_USAGE, TRAINER_FLAGS, TRAINER_USAGE,
  loadPolicy, loraFrom, ropeScalingFrom, runStage, splitHeldout, trainerConfig,
} from './stage.js';

const STAGES: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  pt: { summary: 'continued pre-training on packed text blocks', run: trainPretrain },
  sft: { summary: 'supervised fine-tuning on conversations (full or LoRA)', run: trainSft },
  rm: { summary: 'reward model on preference pairs (pairwise loss)', run: trainReward },
  rs: { summary: 'rejection sampling: k samples, reward-ranked, SFT on the best, in rounds', run: rsCommand },
  dpo: { summary: 'direct preference optimisation (sigmoid or IPO loss)', run: trainDpo },
};

export async function trainCommand(argv: string[]): Promise<number> {
  const [stage, ...rest] = argv;
  const s = stage ? STAGES[stage] : undefined;
  if (s) return s.run(rest);
  const list = Object.entries(STAGES).map(([n, x]) => `  ${n.padEnd(5)} ${x.summary}`).join('\n');
  if (!stage || stage === '--help' || stage === '-h') { process.stdout.write(`chimed train STAGE [options]   (STAGE --help for its options)\n\n${list}\n`); return stage ? 0 : 1; }
  throw new UsageError(`unknown training stage "${stage}"\n\n${list}`);
}

const QA_FLAGS = { data: { type: 'string' }, 'eval-data': { type: 'string' }, 'eval-fraction': { type: 'string' }, 'max-source': { type: 'string' }, 'max-target': { type: 'string' } } as const;
const QA_USAGE = `  --data FILE[,FILE]   JSONL: {messages} or {prompt, response, history?, system?} (preference: + chosen/rejected)
  --eval-data FILE     held-out set (default: --eval-fraction of --data, 0.05)
  --max-source N  --max-target N   token limits of prompt and answer (default 256 / 256)`;

const PT_USAGE = `chimed train pt --data FILE[,FILE...] --out RUN_DIR (--config MODEL.json | --model DIR) [options]

Continued pre-training: next-token prediction on packed blocks. Data: .jsonl with "text"
(or prompt/response, or messages) and plain .txt files, tokenised once into RUN_DIR/data;
or token-id files (.bin, raw uint32: the first trains, an optional second is held out).

  --tokenizer DIR      tokenizer.json folder (default: the --model folder's, else UTF-8 bytes)
  --block-size N       tokens per block (default 1024, up to the model's max positions)
  --eval-fraction X    documents held out for eval loss / perplexity (default 0.05)
  --eval-blocks N      held-out blocks per evaluation (default 64)
${ROPE_USAGE}
${TRAINER_USAGE}`;

async function trainPretrain(argv: string[]): Promise<number> {
  const a = parse(argv, {
    ...TRAINER_FLAGS, ...ROPE_FLAGS, data: { type: 'string' }, config: { type: 'string' }, model: { type: 'string' }, tokenizer: { type: 'string' },
    'block-size': { type: 'string' }, 'eval-fraction': { type: 'string' }, 'eval-blocks': { type: 'string' },
  }, PT_USAGE);
  if (a.help) { process.stdout.write(PT_USAGE + '\n'); return 0; }
  applyThreads(a.str('threads') ? a.int('threads') : undefined);
  const runDir = a.need('out');
  const data = a.list('data');
  if (!data.length) throw new UsageError(`--data is required\n\n${PT_USAGE}`);
  const seed = a.num('seed', 42, Number.isInteger, 'an integer');
  const model = await modelFrom({ model: a.str('model'), config: a.str('config'), seed, trainable: true, ropeScaling: ropeScalingFrom(a) });
  const tokDir = a.str('tokenizer') ?? a.str('model');
  const tokenizer = tokDir ? Tokenizer.fromDir(tokDir) : Tokenizer.bytes();
  if (tokenizer.vocabSize > model.config.vocab_size) {
    throw new UsageError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`);
  }
  const blockSize = a.int('block-size', 1024);
  if (blockSize > contextLength(model.config)) {
    throw new UsageError(`--block-size ${blockSize} exceeds the model's context of ${contextLength(model.config)} positions (max_position_embeddings; --rope-scaling extends it)`);
  }
  const ptData = await preparePretrainData(data, tokenizer, path.join(runDir, 'data'), blockSize, a.num('eval-fraction', 0.05), seed);
  const cfg = trainerConfig(a, ptData.train.count, { lr: 2e-4, epochs: 3, batchSize: 8, warmupRatio: 0.05, weightDecay: 0.01 });
  const save = async (dir: string) => { await saveModel(dir, model); await tokenizer.save(dir); };
  const task = new PretrainTask(model, ptData, cfg.batchSize, { recompute: a.flag('recompute'), evalBlocks: a.int('eval-blocks', 64) }, save);
  process.stderr.write(`pt: ${ptData.meta.train.tokens.toLocaleString('en-US')} training tokens in ${ptData.train.count} blocks of ${blockSize}; ${cfg.maxSteps} steps\n`);
  try {
    const r = await runStage('pt', runDir, cfg, task, { blockSize, data, tokenizer: tokDir ?? 'bytes', recompute: a.flag('recompute'), model: model.config });
    if (r.evals.eval_ppl !== undefined) process.stdout.write(`held-out perplexity ${r.evals.eval_ppl.toFixed(2)} (loss ${r.evals.eval_loss.toFixed(4)})\n`);
  } finally {
    ptData.train.close();
    ptData.heldout?.close();
  }
  return 0;
}

/** Records of --data and the held-out set (--eval-data, or a seeded fraction of --data). */
async function readSplit(a: ReturnType<typeof parse>, usage: string) {
  const files = a.list('data');
  if (!files.length) throw new UsageError(`--data is required\n\n${usage}`);
  const all = (await Promise.all(files.map(readJsonl))).flat();
  if (!all.length) throw new InputError(`${files.join(', ')}: no records`);
  if (a.str('eval-data')) return { train: all, heldout: await readJsonl(a.str('eval-data')!) };
  return splitHeldout(all, a.num('eval-fraction', 0.05), a.num('seed', 42));
}

const SFT_USAGE = `chimed train sft --data FILE --model DIR --out RUN_DIR [options]

Supervised fine-tuning on conversations rendered with the chat template; loss on the
assistant turns only (unless --train-on-prompt).

${QA_USAGE}
  --train-on-prompt    also train on system/user tokens
${MODEL_USAGE}
${LORA_USAGE}
${ROPE_USAGE}
${TRAINER_USAGE}`;

async function trainSft(argv: string[]): Promise<number> {
  const a = parse(argv, { ...TRAINER_FLAGS, ...ROPE_FLAGS, ...LORA_FLAGS, ...MODEL_FLAGS, ...QA_FLAGS, 'train-on-prompt': { type: 'boolean' } }, SFT_USAGE);
  if (a.help) { process.stdout.write(SFT_USAGE + '\n'); return 0; }
  applyThreads(a.str('threads') ? a.int('threads') : undefined);
  const runDir = a.need('out');
  const { model, tokenizer, template, dir } = await loadPolicy(a, !a.flag('lora'));
  const split = await readSplit(a, SFT_USAGE);
  const enc = { maxSource: a.int('max-source', 256), maxTarget: a.int('max-target', 256), trainOnPrompt: a.flag('train-on-prompt') };
  const train = encodeSft(split.train.map((r) => toMessages(r.rec, r.where)), tokenizer, template, enc);
  const held = encodeSft(split.heldout.map((r) => toMessages(r.rec, r.where)), tokenizer, template, enc);
  const adapter = loraFrom(a, model, { r: 8, alpha: 32, dropout: 0.05 });
  const cfg = trainerConfig(a, train.examples.length, { lr: 2e-5, epochs: 3, batchSize: 8, warmupRatio: 0.05, weightDecay: 0.05 });
  process.stderr.write(`sft: ${train.stats.examples} conversations (${train.stats.truncated} truncated, ${train.stats.droppedHistoryTurns} old turns dropped, ${train.stats.skippedNoTarget} without answer tokens skipped), ${held.stats.examples} held out; ${cfg.maxSteps} steps\n`);
  const save = async (out: string) => {
    if (adapter) await adapter.save(out, dir); else await saveModel(out, model);
    await tokenizer.save(out, { template: template });
  };
  const task = new SftTask(model, train.examples, held.examples, { batchSize: cfg.batchSize, recompute: a.flag('recompute'), seed: cfg.seed }, adapter, save);
  await runStage('sft', runDir, cfg, task, { ...enc, model: dir, adapter: a.str('adapter') ?? null, lora: adapter?.config ?? null, template: template.name, stats: train.stats });
  return 0;
}

async function readPairs(a: ReturnType<typeof parse>, usage: string, tok: Tokenizer, template: ChatTemplate) {
  const split = await readSplit(a, usage);
  const maxSource = a.int('max-source', 256), maxTarget = a.int('max-target', 256);
  const encode = (rows: { rec: Record<string, unknown>; where: string }[]): PreferencePair[] => rows.map(({ rec, where }) => {
    const p = toPreference(rec, where);
    return { prompt: p.prompt, chosen: encodeResponse(tok, template, p.prompt, p.chosen, maxSource, maxTarget), rejected: encodeResponse(tok, template, p.prompt, p.rejected, maxSource, maxTarget) };
  });
  return { train: encode(split.train), heldout: encode(split.heldout), maxSource, maxTarget };
}

const RM_USAGE = `chimed train rm --data PAIRS.jsonl --model DIR --out RUN_DIR [options]

Reward model (HF LlamaForSequenceClassification, one label) on preference pairs with the
pairwise loss -log sigmoid(r_chosen - r_rejected); logs held-out pairwise accuracy.
Starts from a causal LM (the head is added) or continues a reward model. With --lora the
head is trained beside the adapter and the final model is written merged, head included.

${QA_USAGE}
${MODEL_USAGE}
${LORA_USAGE}
${ROPE_USAGE}
${TRAINER_USAGE}`;

async function trainReward(argv: string[]): Promise<number> {
  const a = parse(argv, { ...TRAINER_FLAGS, ...ROPE_FLAGS, ...LORA_FLAGS, ...MODEL_FLAGS, ...QA_FLAGS }, RM_USAGE);
  if (a.help) { process.stdout.write(RM_USAGE + '\n'); return 0; }
  applyThreads(a.str('threads') ? a.int('threads') : undefined);
  const runDir = a.need('out'), dir = a.need('model');
  const lora = a.flag('lora');
  const seed = a.num('seed', 42);
  const loaded = isRewardModel(dir) ? await RewardModel.load(dir, nativeKernels, !lora) : await RewardModel.fromCausalLm(dir, nativeKernels, !lora, seed);
  const rm = new RewardModel(scaleRope(loaded.lm, ropeScalingFrom(a)));
  const tokenizer = Tokenizer.fromDir(a.str('tokenizer') ?? dir);
  const template = ChatTemplate.forModel(tokenizer, a.str('tokenizer') ?? dir, a.str('template'));
  const data = await readPairs(a, RM_USAGE, tokenizer, template);
  const adapter = loraFrom(a, rm.lm, { r: 8, alpha: 32, dropout: 0.05 }, ['score']);
  if (adapter) rm.useHead(adapter.saved('score'));
  const cfg = trainerConfig(a, data.train.length, { lr: 2e-5, epochs: 1, batchSize: 4, warmupRatio: 0.05, weightDecay: 0.01 });
  process.stderr.write(`rm: ${data.train.length} pairs, ${data.heldout.length} held out; ${cfg.maxSteps} steps\n`);
  const save = async (out: string) => {
    if (adapter) await adapter.save(out, dir); else await rm.save(out);
    await tokenizer.save(out, { template: template });
  };
  const task = new RewardTask(rm, data.train, data.heldout, { batchSize: cfg.batchSize, recompute: a.flag('recompute'), seed: cfg.seed }, adapter, save);
  const r = await runStage('rm', runDir, cfg, task, { model: dir, lora: adapter?.config ?? null, maxSource: data.maxSource, maxTarget: data.maxTarget });
  if (adapter) {
    adapter.merge();
    const merged = path.join(runDir, 'stages', 'rm', 'merged');
    await rm.save(merged);
    await tokenizer.save(merged, { template: template });
    process.stdout.write(`merged reward model: ${merged}\n`);
  }
  return r ? 0 : 1;
}

const DPO_USAGE = `chimed train dpo --data PAIRS.jsonl --model DIR --out RUN_DIR [options]

Direct preference optimisation. Reference log-probabilities are computed once with the
starting weights and cached. Qilin-Med: --lora (r 8, alpha 16) on the SFT-merged model
(--model BASE --adapter SFT_ADAPTER), beta 0.1, sigmoid loss.

  --beta X             (default 0.1)
  --loss sigmoid|ipo   (default sigmoid)
${QA_USAGE}
${MODEL_USAGE}
${LORA_USAGE}
${ROPE_USAGE}
${TRAINER_USAGE}`;

async function trainDpo(argv: string[]): Promise<number> {
  const a = parse(argv, { ...TRAINER_FLAGS, ...ROPE_FLAGS, ...LORA_FLAGS, ...MODEL_FLAGS, ...QA_FLAGS, beta: { type: 'string' }, loss: { type: 'string' } }, DPO_USAGE);
  if (a.help) { process.stdout.write(DPO_USAGE + '\n'); return 0; }
  applyThreads(a.str('threads') ? a.int('threads') : undefined);
  const runDir = a.need('out');
  const loss = a.str('loss') ?? 'sigmoid';
  if (loss !== 'sigmoid' && loss !== 'ipo') throw new UsageError(`--loss: expected sigmoid or ipo, got "${loss}"`);
  const { model, tokenizer, template, dir } = await loadPolicy(a, !a.flag('lora'));
  const data = await readPairs(a, DPO_USAGE, tokenizer, template);
  const adapter = loraFrom(a, model, { r: 8, alpha: 16, dropout: 0.05 });
  const cfg = trainerConfig(a, data.train.length, { lr: 2e-5, epochs: 1, batchSize: 4, warmupRatio: 0.05, weightDecay: 0.05 });
  const save = async (out: string) => {
    if (adapter) await adapter.save(out, dir); else await saveModel(out, model);
    await tokenizer.save(out, { template: template });
  };
  const opts = { beta: a.num('beta', 0.1), loss: loss as 'sigmoid' | 'ipo', batchSize: cfg.batchSize, recompute: a.flag('recompute'), seed: cfg.seed };
  process.stderr.write(`dpo: ${data.train.length} pairs, ${data.heldout.length} held out; ${cfg.maxSteps} steps (reference log-probs cached)\n`);
  const task = new DpoTask(model, data.train, data.heldout, opts, adapter, save, new Context(nativeKernels));
  await runStage('dpo', runDir, cfg, task, { ...opts, model: dir, adapter: a.str('adapter') ?? null, lora: adapter?.config ?? null });
  return 0;
}
