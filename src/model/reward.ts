import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray, Kernels } from '../engine/kernels.js';
import { gatherRows, linear } from '../engine/ops.js';
import { Rng } from '../engine/rng.js';
import { Context, Tensor } from '../engine/tensor.js';
import { writeJsonAtomic } from '../io/atomic.js';
import type { BaseDtype } from '../engine/frozen.js';
import { mapCheckpoint, writeSafetensors, type StoredTensor } from '../io/safetensors.js';
import { buildStore, readModelConfig, storeTensors } from './checkpoint.js';
import { sequenceClassificationArchitecture, toHfConfig, type ModelConfig } from './config.js';
import { Llama, type TokenBatch } from './llama.js';

/** Whether DIR holds a reward model (config.json names a *ForSequenceClassification class, e.g. Qwen2ForSequenceClassification). */
export function isRewardModel(dir: string): boolean {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) return false;
  const arch = JSON.parse(fs.readFileSync(file, 'utf8')).architectures;
  return Array.isArray(arch) && arch.some((a) => typeof a === 'string' && a.endsWith('ForSequenceClassification'));
}

/**
 * A reward model: the decoder backbone plus a scalar head read at each sequence's last real
 * token, saved as the family's HF *ForSequenceClassification (LlamaForSequenceClassification,
 * Qwen2ForSequenceClassification, ...; num_labels 1, tensor `score.weight`). Baichuan's remote
 * code has no such class; its reward model is named BaichuanForSequenceClassification alike.
 * Its parameter store holds backbone and head together, so full fine-tuning is one store;
 * under LoRA the head is trained as an adapter-side copy (PEFT's modules_to_save) that
 * `useHead` points at, and merging copies it back: a merged model never loses its head.
 */
export class RewardModel<F extends FloatArray> {
  private head: Tensor<F>;

  constructor(readonly lm: Llama<F>) {
    this.head = lm.params.get('score.weight');
  }

  /**
   * A reward model from a causal LM checkpoint: the backbone is copied (a frozen one, under
   * LoRA, kept in `base` as loadModel does), the head initialised small.
   */
  static async fromCausalLm<F extends FloatArray>(
    dir: string,
    k: Kernels<F>,
    trainable: boolean,
    seed: number,
    base?: BaseDtype,
  ): Promise<RewardModel<F>> {
    const config = readModelConfig(dir);
    const tensors = await mapCheckpoint(dir);
    const rng = new Rng(seed);
    const head = Float32Array.from({ length: config.hidden_size }, () => rng.normal() / Math.sqrt(config.hidden_size));
    const withHead: Map<string, StoredTensor> = new Map(tensors);
    withHead.set('score.weight', { dtype: 'F32', shape: [1, config.hidden_size], bytes: new Uint8Array(head.buffer) });
    return RewardModel.build(config, k, withHead, dir, trainable, base, /^lm_head\.weight$/);
  }

  static async load<F extends FloatArray>(dir: string, k: Kernels<F>, trainable: boolean, base?: BaseDtype): Promise<RewardModel<F>> {
    const config = readModelConfig(dir);
    const tensors = await mapCheckpoint(dir);
    if (!tensors.has('score.weight'))
      throw new Error(`${dir}: no score.weight; this is not a reward model (train one with \`chimed train rm\`)`);
    return RewardModel.build(config, k, tensors, dir, trainable, base, null);
  }

  private static build<F extends FloatArray>(
    config: ModelConfig,
    k: Kernels<F>,
    tensors: Map<string, StoredTensor>,
    dir: string,
    trainable: boolean,
    base: BaseDtype | undefined,
    ignore: RegExp | null,
  ): RewardModel<F> {
    const frozen = Llama.frozenNames(config).filter((n) => n !== 'lm_head.weight');
    const store = buildStore(k, Llama.paramSpecs(config, 'score'), tensors, dir, { trainable, frozen, base, ignore });
    return new RewardModel(new Llama(config, store));
  }

  get headWeight(): Tensor<F> {
    return this.head;
  }

  /** Trains the head through another tensor (an adapter's copy) instead of the store's own. */
  useHead(t: Tensor<F>): void {
    this.head = t;
  }

  /** Copies the head in use back into the backbone store (after merging LoRA). */
  commitHead(): void {
    const own = this.lm.params.get('score.weight');
    if (own !== this.head) own.data.set(this.head.data);
    this.head = own;
  }

  /** Scalar rewards [B], read at `last[b]`, the last real token of row b. */
  scores(ctx: Context<F>, batch: TokenBatch, last: Int32Array, recompute = false): Tensor<F> {
    const h = this.lm.hidden(ctx, batch, { recompute });
    const rows = Int32Array.from(last, (t, b) => b * batch.T + t);
    return linear(ctx, gatherRows(ctx, h, rows, this.lm.config.hidden_size), this.head);
  }

  async save(dir: string): Promise<void> {
    this.commitHead();
    fs.mkdirSync(dir, { recursive: true });
    await writeSafetensors(path.join(dir, 'model.safetensors'), storeTensors(this.lm.params), { format: 'pt' });
    await writeJsonAtomic(path.join(dir, 'config.json'), {
      ...toHfConfig(this.lm.config),
      architectures: [sequenceClassificationArchitecture(this.lm.config)],
      num_labels: 1,
      id2label: { 0: 'LABEL_0' },
      label2id: { LABEL_0: 0 },
    });
  }
}
