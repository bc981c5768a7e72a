import fs from 'node:fs';
import { writeJsonAtomic } from '../io/atomic.js';
import { Rng } from '../engine/rng.js';
import { EpochSampler } from './sampler.js';

/** What the packing stages need of a tokenizer (the BPE Tokenizer and the byte fallback both fit). */
export interface Encoder {
  encode(text: string): number[];
  readonly eosId: number | null;
  readonly vocabSize: number;
}

export interface TokenFileMeta {
  file: string;
  tokens: number;
  documents: number;
  vocab_size: number;
}

/**
 * Token ids on disk as raw little-endian uint32 with a JSON sidecar, like llm.c's .bin
 * shards: a corpus larger than memory is tokenised once, streamed in, and later read back a
 * block at a time.
 */
class TokenFileWriter {
  private fd: number;
  private buf = new Uint32Array(1 << 16);
  private n = 0;
  tokens = 0;
  documents = 0;

  constructor(readonly file: string) {
    this.fd = fs.openSync(`${file}.tmp`, 'w');
  }

  push(ids: number[], eos: number | null): void {
    for (const id of ids) this.put(id);
    if (eos !== null) this.put(eos);
    this.documents++;
  }

  private put(id: number): void {
    this.buf[this.n++] = id;
    this.tokens++;
    if (this.n === this.buf.length) this.flush();
  }

  private flush(): void {
    fs.writeSync(this.fd, new Uint8Array(this.buf.buffer, 0, this.n * 4));
    this.n = 0;
  }

  async close(vocab: number): Promise<TokenFileMeta> {
    this.flush();
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    fs.renameSync(`${this.file}.tmp`, this.file);
    const meta = { file: this.file, tokens: this.tokens, documents: this.documents, vocab_size: vocab };
    await writeJsonAtomic(`${this.file}.json`, meta);
    return meta;
  }
}

/** Splits documents into train / held-out by a seeded coin per document, streaming. */
export async function tokenizeDocuments(
  docs: AsyncIterable<string>,
  enc: Encoder,
  trainFile: string,
  evalFile: string,
  evalFraction: number,
  seed: number,
): Promise<{ train: TokenFileMeta; eval: TokenFileMeta }> {
  const train = new TokenFileWriter(trainFile),
    held = new TokenFileWriter(evalFile);
  const rng = Rng.derive(seed, 0x70e5);
  for await (const text of docs) (rng.next() < evalFraction ? held : train).push(enc.encode(text), enc.eosId);
  return { train: await train.close(enc.vocabSize), eval: await held.close(enc.vocabSize) };
}

/**
 * Fixed-length blocks over a token file: block i covers tokens [i*T, i*T + T] (T + 1 ids, the
 * last one only as a target). Order is a seeded permutation per epoch, so micro-batch m is a
 * pure function of (seed, m) and resume needs no loader state.
 */
export class TokenBlocks {
  readonly count: number;
  private fd: number;
  private sampler: EpochSampler;
  private scratch: Uint32Array;

  constructor(
    readonly file: string,
    readonly T: number,
    seed: number,
  ) {
    const tokens = fs.statSync(file).size / 4;
    this.count = Math.floor((tokens - 1) / T);
    this.fd = fs.openSync(file, 'r');
    this.scratch = new Uint32Array(T + 1);
    this.sampler = new EpochSampler(Math.max(1, this.count), seed);
  }

  /** The block drawn at global sample index j (epochs follow one another). */
  blockAt(j: number): number {
    return this.sampler.at(j);
  }

  /** Reads block i into row b of [B, T] ids / targets. */
  read(i: number, ids: Int32Array, targets: Int32Array, b: number): void {
    const T = this.T;
    fs.readSync(this.fd, new Uint8Array(this.scratch.buffer), 0, (T + 1) * 4, i * T * 4);
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = this.scratch[t];
      targets[b * T + t] = this.scratch[t + 1];
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
