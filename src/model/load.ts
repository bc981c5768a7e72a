import { nativeKernels } from '../engine/native.js';
import { ChatTemplate } from '../tokenizer/chat-template.js';
import { hasTokenizerFiles, Tokenizer } from '../tokenizer/index.js';
import { CheckpointError, loadModel } from './checkpoint.js';
import type { Llama } from './llama.js';
import { LoraAdapter } from './lora.js';

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
}

export interface ChatModel {
  model: Llama<Float32Array>;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  dir: string;
}

/** A model ready to chat: weights (adapter merged), tokenizer and the one chat template. */
export async function loadChatModel(src: ChatModelSource): Promise<ChatModel> {
  const model = await loadModel(src.model, nativeKernels, src.trainable ?? false);
  if (src.adapter) (await LoraAdapter.load(src.adapter, model)).merge();
  const tokDir = src.tokenizer ?? src.model;
  if (!hasTokenizerFiles(tokDir)) throw new CheckpointError(`${tokDir}: no tokenizer.json or tokenizer.model (give a tokenizer folder)`);
  const tokenizer = Tokenizer.fromDir(tokDir);
  const template = ChatTemplate.forModel(tokenizer, tokDir, src.template);
  if (tokenizer.vocabSize > model.config.vocab_size) throw new CheckpointError(`${tokDir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.config.vocab_size}`);
  return { model, tokenizer, template, dir: src.model };
}
