import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray } from '../engine/kernels.js';
import { Context } from '../engine/tensor.js';
import { Llama, sequentialPositions, type TokenBatch } from '../model/llama.js';
import { InputError, readDocuments } from './documents.js';
import { lmLossStep, lossMetrics, nllSum } from './lm-loss.js';
import { TokenBlocks, tokenizeDocuments, type Encoder, type TokenFileMeta } from './tokens.js';
import type { MicroResult, TrainTask } from './trainer.js';

export interface PretrainData {
  train: TokenBlocks;
  heldout: TokenBlocks | null;
  meta: { train: TokenFileMeta; eval: TokenFileMeta };
}

/**
 * Tokenises the documents once into runDir/data/pt_{train,eval}.bin (reused on re-runs), and
 * opens them as packed blocks of `blockSize` tokens.
 */
export async function preparePretrainData(
  files: string[], enc: Encoder, dataDir: string, blockSize: number, evalFraction: number, seed: number,
): Promise<PretrainData> {
  fs.mkdirSync(dataDir, { recursive: true });
  const trainFile = path.join(dataDir, 'pt_train.bin'), evalFile = path.join(dataDir, 'pt_eval.bin');
  const meta = fs.existsSync(`${trainFile}.json`) && fs.existsSync(`${evalFile}.json`)
    ? { train: readMeta(`${trainFile}.json`), eval: readMeta(`${evalFile}.json`) }
    : await tokenizeDocuments(readDocuments(files), enc, trainFile, evalFile, evalFraction, seed);
  if (meta.train.vocab_size !== enc.vocabSize) {
    throw new InputError(`${trainFile}: tokenised with a vocabulary of ${meta.train.vocab_size}, but the tokenizer has ${enc.vocabSize}; delete ${dataDir}/pt_*.bin to re-tokenise`);
  }
  if (meta.train.tokens === 0) throw new InputError(`${files.join(', ')}: no text to train on (the corpus is empty)`);
  if (meta.train.tokens < blockSize + 1) {
    throw new InputError(`${files.join(', ')}: only ${meta.train.tokens} training tokens, fewer than one block of ${blockSize}; lower --block-size or add data`);
  }
  const heldout = meta.eval.tokens >= blockSize + 1 ? new TokenBlocks(evalFile, blockSize, seed) : null;
  return { train: new TokenBlocks(trainFile, blockSize, seed), heldout, meta };
}

function readMeta(file: string): TokenFileMeta {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as TokenFileMeta;
}

/** Next-token prediction on packed blocks (continued pre-training). */
export class PretrainTask<F extends FloatArray> implements TrainTask<F> {
  private batch: TokenBatch;
  private targets: Int32Array;

  constructor(
    readonly model: Llama<F>,
    readonly data: PretrainData,
    readonly batchSize: number,
    readonly opts: { recompute: boolean; evalBlocks: number },
    readonly saveWeights: (dir: string) => Promise<void>,
  ) {
    const T = data.train.T, B = batchSize;
    this.batch = { ids: new Int32Array(B * T), pos: sequentialPositions(B, T), B, T };
    this.targets = new Int32Array(B * T);
  }

  get params() {
    return this.model.params;
  }

  microStep(ctx: Context<F>, index: number, gradScale: number): MicroResult {
    const { B } = this.batch;
    for (let b = 0; b < B; b++) this.data.train.read(this.data.train.blockAt(index * B + b), this.batch.ids, this.targets, b);
    return lmLossStep(ctx, this.model, this.batch, this.targets, gradScale, this.opts.recompute);
  }

  /** Mean held-out token loss and perplexity over (up to) evalBlocks blocks in file order. */
  evaluate(ctx: Context<F>): Record<string, number> {
    const held = this.data.heldout;
    if (!held) return {};
    const n = Math.min(held.count, this.opts.evalBlocks);
    const { B, T } = this.batch;
    let sum = 0, count = 0;
    for (let i = 0; i < n; i += B) {
      const rows = Math.min(B, n - i);
      const batch: TokenBatch = { ids: this.batch.ids.subarray(0, rows * T), pos: this.batch.pos.subarray(0, rows * T), B: rows, T };
      for (let b = 0; b < rows; b++) held.read(i + b, batch.ids, this.targets, b);
      const r = nllSum(ctx, this.model, batch, this.targets.subarray(0, rows * T));
      sum += r.sum;
      count += r.tokens;
    }
    return lossMetrics(sum, count);
  }
}
