import type { BaseDtype } from '../engine/frozen.js';
import type { FloatArray } from '../engine/kernels.js';
import { nativeKernels } from '../engine/native.js';
import { ChatTemplate } from '../tokenizer/chat-template.js';
import { hasTokenizerFiles, Tokenizer } from '../tokenizer/index.js';
import { CheckpointError, loadModel } from './checkpoint.js';
import { withRopeScaling } from './config.js';
import { Llama } from './llama.js';
import { LoraAdapter } from './lora.js';

/** A RoPE scaling a stage applies to train or run past the model's length (see withRopeScaling). */
export interface RopeScalingRequest {
  type: 'linear' | 'dynamic' | 'yarn';
  factor: number;
}

/** The same weights under a config with RoPE scaled (a no-op when the model already has exactly this scaling). */
export function scaleRope<F extends FloatArray>(model: Llama<F>, r: RopeScalingRequest | null | undefined): Llama<F> {
  if (!r) return model;
  const config = withRopeScaling(model.config, r.type, r.factor);
  return config === model.config ? model : new Llama(config, model.params);
}

export interface ChatModelSource {
  /** HF model folder. */
  model: string;
  /** PEFT LoRA adapter merged into the model after loading. */
  adapter?: string;
  /** Tokenizer folder (default: the model folder). */
  tokenizer?: string;
  /** Built-in template name, chosen explicitly (a model without a template needs one to chat). */
  template?: string;
  trainable?: boolean;
  /** RoPE scaling applied after loading; saved checkpoints then carry it in config.json. */
  ropeScaling?: RopeScalingRequest | null;
  /** How a frozen (not trainable) base is kept; default: as the checkpoint stores it. */
  baseDtype?: BaseDtype;
}

export interface ChatModel {
  model: Llama<Float32Array>;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  dir: string;
}

/** A model ready to chat: weights (adapter merged), tokenizer and the one chat template. */
export async function loadChatModel(src: ChatModelSource): Promise<ChatModel> {
  const model = scaleRope(await loadModel(src.model, nativeKernels, src.trainable ?? false, src.baseDtype), src.ropeScaling);
  if (src.adapter) (await LoraAdapter.load(src.adapter, model)).merge();
  const tokDir = src.tokenizer ?? src.model;
  if (!hasTokenizerFiles(tokDir)) throw new CheckpointError(`${tokDir}: no tokenizer.json or tokenizer.model (give a tokenizer folder)`);
  const tokenizer = Tokenizer.fromDir(tokDir);
  const template = ChatTemplate.forModel(tokenizer, tokDir, src.template);
  if (tokenizer.vocabSize > model.config.vocab_size)
    throw new CheckpointError(
      `${tokDir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`,
    );
  return { model, tokenizer, template, dir: src.model };
}
