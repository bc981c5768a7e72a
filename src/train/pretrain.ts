import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray } from '../engine/kernels.js';
import { Context } from '../engine/tensor.js';
import { Llama, sequentialPositions, type TokenBatch } from '../model/llama.js';
import { DataError } from '../data/errors.js';
import { readDocuments } from '../data/stage-files.js';
import { lmLossStep, lossMetrics, nllSum } from './lm-loss.js';
import { TokenBlocks, tokenizeDocuments, type Encoder, type TokenFileMeta } from './tokens.js';
import type { MicroResult, RowRange, TrainTask } from './trainer.js';

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
  files: string[],
  enc: Encoder,
  dataDir: string,
  blockSize: number,
  evalFraction: number,
  seed: number,
): Promise<PretrainData> {
  fs.mkdirSync(dataDir, { recursive: true });
  const given = files.filter((f) => f.endsWith('.bin'));
  if (given.length && given.length !== files.length)
    throw new DataError(`${files.join(', ')}: give either token-id files (.bin) or text files, not both`);
  // token-id files (raw little-endian uint32, as llm.c writes): the first trains, a second is held out
  const [trainFile, evalFile] = given.length
    ? [given[0], given[1] ?? '']
    : [path.join(dataDir, 'pt_train.bin'), path.join(dataDir, 'pt_eval.bin')];
  const meta = given.length
    ? {
        train: binMeta(trainFile, enc.vocabSize),
        eval: evalFile ? binMeta(evalFile, enc.vocabSize) : { file: '', tokens: 0, documents: 0, vocab_size: enc.vocabSize },
      }
    : fs.existsSync(`${trainFile}.json`) && fs.existsSync(`${evalFile}.json`)
      ? { train: readMeta(`${trainFile}.json`), eval: readMeta(`${evalFile}.json`) }
      : await tokenizeDocuments(readDocuments(files), enc, trainFile, evalFile, evalFraction, seed);
  if (meta.train.vocab_size !== enc.vocabSize) {
    throw new DataError(
      `${trainFile}: tokenised with a vocabulary of ${meta.train.vocab_size}, but the tokenizer has ${enc.vocabSize}; delete ${dataDir}/pt_*.bin to re-tokenise`,
    );
  }
  if (meta.train.tokens === 0) throw new DataError(`${files.join(', ')}: no text to train on (the corpus is empty)`);
  if (meta.train.tokens < blockSize + 1) {
    throw new DataError(
      `${files.join(', ')}: only ${meta.train.tokens} training tokens, fewer than one block of ${blockSize}; lower --block-size or add data`,
    );
  }
  const heldout = meta.eval.tokens >= blockSize + 1 ? new TokenBlocks(evalFile, blockSize, seed) : null;
  return { train: new TokenBlocks(trainFile, blockSize, seed), heldout, meta };
}

/** Checks a raw uint32 token file: whole ids, all inside the vocabulary. */
function binMeta(file: string, vocab: number): TokenFileMeta {
  if (!fs.existsSync(file)) throw new DataError(`${file}: no such file`);
  const size = fs.statSync(file).size;
  if (size % 4) throw new DataError(`${file}: ${size} bytes is not a whole number of uint32 token ids`);
  const fd = fs.openSync(file, 'r');
  const buf = new Uint32Array(1 << 16);
  try {
    for (let off = 0; off < size; off += buf.byteLength) {
      const n = fs.readSync(fd, new Uint8Array(buf.buffer), 0, Math.min(buf.byteLength, size - off), off) / 4;
      for (let i = 0; i < n; i++)
        if (buf[i] >= vocab)
          throw new DataError(`${file}: token id ${buf[i]} at position ${off / 4 + i} is outside the vocabulary (${vocab})`);
    }
  } finally {
    fs.closeSync(fd);
  }
  return { file, tokens: size / 4, documents: 0, vocab_size: vocab };
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
    const T = data.train.T,
      B = batchSize;
    this.batch = { ids: new Int32Array(B * T), pos: sequentialPositions(B, T), B, T };
    this.targets = new Int32Array(B * T);
  }

  get params() {
    return this.model.params;
  }

  microStep(ctx: Context<F>, index: number, gradScale: number, rows?: RowRange): MicroResult {
    const { B } = this.batch;
    for (let b = 0; b < B; b++) this.data.train.read(this.data.train.blockAt(index * B + b), this.batch.ids, this.targets, b);
    return lmLossStep(ctx, this.model, this.batch, this.targets, gradScale, this.opts.recompute, rows);
  }

  /** Mean held-out token loss and perplexity over (up to) evalBlocks blocks in file order. */
  evaluate(ctx: Context<F>): Record<string, number> {
    const held = this.data.heldout;
    if (!held) return {};
    const n = Math.min(held.count, this.opts.evalBlocks);
    const { B, T } = this.batch;
    let sum = 0,
      count = 0;
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
