/**
 * chimed's typed API: the same pieces the CLI is made of. A typical use:
 *
 *   const { model, tokenizer, template } = await loadChatModel({ model: 'runs/demo/stages/dpo/merged' });
 *   const [[reply]] = generateReplies(model, tokenizer, template, [[{ role: 'user', content: '高血压要注意什么？' }]], { maxNewTokens: 128 });
 *
 * Each training stage is a function taking the settings of a run config's stage entry (the
 * schema fills in the papers' defaults) and its inputs:
 *
 *   const sft = await runSft({ lora: {}, max_steps: 200 }, { runDir: 'runs/api', seed: 42, model: 'base', data: ['sft.jsonl'], merge: true });
 *   const dpo = await runDpo({ max_steps: 60 }, { runDir: 'runs/api', seed: 42, model: sft.output, data: ['pairs.jsonl'], merge: true });
 */
export type { Kernels, FloatArray, AttentionDims } from './engine/kernels.js';
export { nativeKernels, setThreads, getThreads, nativeInfo } from './engine/native.js';
export { gemmChoice, setGemmChoice, type GemmChoice, type GemmBackends } from './engine/gemm-choice.js';
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

export { MetricsLog, type MetricRecord } from './train/metrics.js';
export { Trainer, trainerDefaults, type TrainerConfig, type TrainTask } from './train/trainer.js';
export { PretrainTask, preparePretrainData } from './train/pretrain.js';
export { SftTask, encodeSft } from './train/sft.js';
export { RewardTask } from './train/reward.js';
export { DpoTask } from './train/dpo.js';
export { sampleAndRank, judgeGreedy } from './train/rejection.js';
export { runPt, PtConfigSchema, PtInputsSchema, type PtConfig, type PtInputs } from './train/stages/pt.js';
export { runSft, SftConfigSchema, SftInputsSchema, type SftConfig, type SftInputs } from './train/stages/sft.js';
export { runRm, RmConfigSchema, RmInputsSchema, type RmConfig, type RmInputs } from './train/stages/rm.js';
export { runRs, RsConfigSchema, RsInputsSchema, type RsConfig, type RsInputs } from './train/stages/rs.js';
export { runDpo, DpoConfigSchema, DpoInputsSchema, type DpoConfig, type DpoInputs } from './train/stages/dpo.js';
export { STAGES, type Stage, type StageName } from './train/stages/index.js';
export { runStageTracked, stageLineage } from './train/stages/tracked.js';
export { contentHash, lineageChanges, type Lineage } from './io/lineage.js';
export type { StageContext, StageResult } from './train/stages/common.js';
export { RunDir, StageDir, type DoneRecord } from './io/run-dir.js';
export { readJsonl, readDocuments, messagesOf, promptOf, preferenceOf } from './data/stage-files.js';

export { evaluateMcq } from './eval/mcq.js';
export { evaluateNer, nerScores } from './eval/ner.js';
export { evaluateScale, loadScale } from './eval/scale.js';
export { textgenScores, corpusBleu, corpusRouge } from './eval/textgen.js';
export { LlamaEvalModel } from './eval/model.js';
export { perplexity } from './eval/suite.js';
export { bootstrap, pairedDifference, percentileInterval } from './eval/bootstrap.js';
export { summarizeItems, compareItems, METRICS } from './eval/metrics.js';
export { genPredictionItems, mcqPredictionItems, nerPredictions } from './eval/predictions.js';
export { PUBLISHED } from './eval/benchmarks.js';

export { readSafetensors, writeSafetensors, readCheckpointTensors } from './io/safetensors.js';
export { writeLlamaGguf } from './model/gguf-llama.js';
export { parseRunConfig, readRunConfig, RunConfigSchema, type RunConfig, type StageConfig } from './pipeline/config.js';
export { runPipeline } from './pipeline/run.js';
export { writeReport } from './report/report.js';
export { buildServer, startServer, stopServer } from './serve/server.js';
