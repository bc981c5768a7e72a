/**
 * chimed's typed API: the same pieces the CLI is made of. A typical use:
 *
 *   const { model, tokenizer, template } = await loadChatModel({ model: 'runs/demo/stages/dpo/merged' });
 *   const [[reply]] = generateReplies(model, tokenizer, template, [[{ role: 'user', content: '高血压要注意什么？' }]], { maxNewTokens: 128 });
 */
export type { Kernels, FloatArray, AttentionDims } from './engine/kernels.js';
export { nativeKernels, setThreads, getThreads, nativeInfo } from './engine/native.js';
export { referenceKernels } from './engine/reference.js';
export { Context, Tensor } from './engine/tensor.js';
export { ParamStore } from './engine/params.js';
export { AdamW, learningRate } from './engine/optim.js';
export { Rng } from './engine/rng.js';

export { parseModelConfig, toHfConfig, withRopeScaling, type ModelConfig, type ModelType, type RopeScaling } from './model/config.js';
export { Llama, KvCache, sequentialPositions, type TokenBatch } from './model/llama.js';
export { loadModel, saveModel, readModelConfig } from './model/checkpoint.js';
export { loadChatModel, type ChatModel, type ChatModelSource } from './model/load.js';
export { LoraAdapter, type LoraConfig } from './model/lora.js';
export { RewardModel, isRewardModel } from './model/reward.js';
export { generate, generateAsync, Decoder, type GenerateOptions, type Generation } from './model/generate.js';
export { generateReplies, generateRepliesAsync } from './model/chat.js';

export { Tokenizer } from './tokenizer/index.js';
export { ChatTemplate, BUILTIN_TEMPLATES, type ChatMessage } from './tokenizer/chat-template.js';

export { openImport } from './data/import.js';
export { buildDatasets } from './data/build.js';
export { parseBuildConfig } from './data/build-config.js';
export { writeCorpus, generateCorpus } from './corpus/generate.js';

export { Trainer, trainerDefaults, type TrainerConfig, type TrainTask } from './train/trainer.js';
export { PretrainTask, preparePretrainData } from './train/pretrain.js';
export { SftTask, encodeSft } from './train/sft.js';
export { RewardTask } from './train/reward.js';
export { DpoTask } from './train/dpo.js';
export { sampleAndRank, greedyReward } from './train/rejection.js';

export { evaluateMcq } from './eval/mcq.js';
export { evaluateNer, nerScores } from './eval/ner.js';
export { evaluateScale, loadScale } from './eval/scale.js';
export { textgenScores, corpusBleu, corpusRouge } from './eval/textgen.js';
export { LlamaEvalModel } from './eval/model.js';
export { perplexity } from './eval/suite.js';

export { readSafetensors, writeSafetensors, readCheckpointTensors } from './io/safetensors.js';
export { writeLlamaGguf } from './io/gguf-llama.js';
export { parseRunConfig, readRunConfig, type RunConfig } from './pipeline/config.js';
export { runPipeline } from './pipeline/run.js';
export { writeReport } from './report/report.js';
export { buildServer, startServer, stopServer } from './serve/server.js';
