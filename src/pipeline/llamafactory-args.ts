// The run's stages as LLaMA-Factory training configs: one YAML per stage carrying the run's
// resolved hyperparameters, chained so each stage starts from the model the previous one left
// (a LoRA stage is merged by `llamafactory-cli export` first, as chimed merges it). Every key
// is a LLaMA-Factory argument (src/llamafactory/hparams/*.py) or a transformers
// Seq2SeqTrainingArguments field; test/llamafactory.test.ts keeps the list with its commits.
import YAML from 'yaml';
import type { LoraSetting } from '../train/stages/common.js';
import { trainerDefaults } from '../train/trainer.js';
import type { RunConfig, StageConfig } from './config.js';

export type YamlValue = string | number | boolean | Record<string, number>;
/** A YAML file as titled sections of key: value lines (LLaMA-Factory's examples are laid out so). */
export type YamlSections = [title: string, args: Record<string, YamlValue>][];

export interface LfStep {
  /** The command: `llamafactory-cli train FILE` or `llamafactory-cli export FILE`. */
  command: 'train' | 'export';
  file: string;
  /** The chimed stage it reproduces (rs-round-N for a rejection-sampling round). */
  stage: string;
  sections: YamlSections;
}

export interface LfPlanOptions {
  /** model_name_or_path of the first stage. */
  model: string;
  /** LLaMA-Factory template name; null leaves it unset (LLaMA-Factory then parses the tokenizer's). */
  template: string | null;
  trustRemoteCode: boolean;
  /** Dataset names in dataset_info.json, per chimed stage dataset. */
  datasets: { pt?: string; sft?: string; pref?: string; rs: string[] };
  /** DeepSpeed config file name (relative to the export folder). */
  deepspeed: string;
}

const saves = (name: string) => `saves/${name}`;

/** chimed's schedule (warmup, then decay to minLrRatio × lr) in transformers' scheduler names. */
function scheduler(st: StageConfig): Record<string, YamlValue> {
  const minRate = trainerDefaults.minLrRatio;
  switch (st.schedule) {
    case 'cosine':
      return minRate > 0
        ? { lr_scheduler_type: 'cosine_with_min_lr', lr_scheduler_kwargs: { min_lr_rate: minRate } }
        : { lr_scheduler_type: 'cosine' };
    case 'linear':
      return { lr_scheduler_type: 'linear' }; // transformers' linear decays to 0 (README says so)
    case 'constant':
      return { lr_scheduler_type: st.warmup_ratio > 0 ? 'constant_with_warmup' : 'constant' };
  }
}

function trainArgs(st: StageConfig, seed: number): Record<string, YamlValue> {
  return {
    per_device_train_batch_size: st.batch_size,
    gradient_accumulation_steps: st.grad_accum,
    learning_rate: st.lr,
    ...(st.max_steps ? { max_steps: st.max_steps } : { num_train_epochs: st.epochs }),
    ...scheduler(st),
    warmup_ratio: st.warmup_ratio,
    weight_decay: st.weight_decay,
    max_grad_norm: st.clip,
    adam_beta1: trainerDefaults.beta1,
    adam_beta2: trainerDefaults.beta2,
    adam_epsilon: trainerDefaults.eps,
    bf16: true,
    seed,
  };
}

function evalArgs(st: StageConfig, valSize: number): Record<string, YamlValue> {
  if (!(valSize > 0)) return {};
  // chimed evaluates the held-out share every eval_every steps, or once at the end
  const when: Record<string, YamlValue> = st.eval_every > 0 ? { eval_strategy: 'steps', eval_steps: st.eval_every } : { do_eval: true };
  return { val_size: valSize, per_device_eval_batch_size: st.batch_size, ...when };
}

type Lora = LoraSetting;

function methodArgs(stage: string, lora: Lora, deepspeed: string): Record<string, YamlValue> {
  const ft: Record<string, YamlValue> = lora
    ? {
        finetuning_type: 'lora',
        lora_rank: lora.r,
        lora_alpha: lora.alpha,
        lora_dropout: lora.dropout,
        lora_target: lora.target_modules === 'all-linear' ? 'all' : lora.target_modules.join(','),
      }
    : { finetuning_type: 'full' };
  return { stage, do_train: true, ...ft, deepspeed };
}

/**
 * The LLaMA-Factory steps that continue a chimed run: a train step per stage (rs: per round,
 * on the answers its reward model kept) and an export step merging each LoRA policy stage.
 */
export function llamaFactoryPlan(cfg: RunConfig, o: LfPlanOptions): LfStep[] {
  const steps: LfStep[] = [];
  const model = (m: string): Record<string, YamlValue> => ({
    model_name_or_path: m,
    ...(o.trustRemoteCode ? { trust_remote_code: true } : {}),
  });
  const template: Record<string, YamlValue> = o.template ? { template: o.template } : {};
  let policy = o.model;
  const train = (
    stage: string,
    file: string,
    lfStage: 'pt' | 'sft' | 'rm' | 'dpo',
    st: StageConfig,
    dataset: string,
    lora: Lora,
    cutoff: number,
    extra: { method?: Record<string, YamlValue>; data?: Record<string, YamlValue> },
    valSize: number,
  ) => {
    const out = saves(stage);
    steps.push({
      command: 'train',
      file,
      stage,
      sections: [
        ['model', model(policy)],
        ['method', { ...methodArgs(lfStage, lora, o.deepspeed), ...extra.method }],
        // pre-training text needs no chat template (LLaMA-Factory's own pre-training examples set none)
        ['dataset', { dataset, dataset_dir: 'data', ...(lfStage === 'pt' ? {} : template), cutoff_len: cutoff, ...extra.data }],
        ['output', { output_dir: out, logging_steps: 10, save_steps: st.save_every, plot_loss: true, report_to: 'none' }],
        ['train', trainArgs(st, cfg.seed)],
        ['eval', evalArgs(st, valSize)],
      ].filter(([, args]) => Object.keys(args).length) as YamlSections,
    });
    if (lfStage === 'rm') return; // a branch: the policy goes on without it
    if (!lora) {
      policy = out;
      return;
    }
    steps.push({
      command: 'export',
      file: `merge_${file}`,
      stage,
      sections: [
        ['model', { ...model(policy), adapter_name_or_path: out, ...template, finetuning_type: 'lora' }],
        ['export', { export_dir: `${out}-merged` }],
      ],
    });
    policy = `${out}-merged`;
  };
  const need = (name: string | undefined, st: string, data: string) => {
    if (!name) throw new Error(`stage ${st}: the run has no ${data} dataset to export`);
    return name;
  };
  for (const st of cfg.stages) {
    const lengths = 'max_source' in st ? st.max_source + st.max_target : 0;
    switch (st.type) {
      case 'pt':
        train('pt', 'pt.yaml', 'pt', st, need(o.datasets.pt, 'pt', 'pre-training'), false, st.block_size, {}, st.eval_fraction);
        break;
      case 'sft':
        train(
          'sft',
          'sft.yaml',
          'sft',
          st,
          need(o.datasets.sft, 'sft', 'SFT'),
          st.lora,
          lengths,
          { data: st.train_on_prompt ? { train_on_prompt: true } : {} },
          st.eval_fraction,
        );
        break;
      case 'rm':
        train('rm', 'rm.yaml', 'rm', st, need(o.datasets.pref, 'rm', 'preference'), st.lora, lengths, {}, st.eval_fraction);
        break;
      case 'rs':
        // the kept answers are fixed data now: each round is an SFT pass on its own set
        o.datasets.rs.forEach((dataset, i) =>
          train(`rs-round-${i + 1}`, `rs_round${i + 1}.yaml`, 'sft', st, dataset, st.lora, lengths, {}, 0),
        );
        break;
      case 'dpo':
        train(
          'dpo',
          'dpo.yaml',
          'dpo',
          st,
          need(o.datasets.pref, 'dpo', 'preference'),
          st.lora,
          lengths,
          { method: { pref_beta: st.beta, pref_loss: st.loss } },
          st.eval_fraction,
        );
        break;
    }
  }
  return steps;
}

/** Floats keep a decimal point (2.0e-5, not 2e-5): YAML 1.1 loaders read 2e-5 as a string. */
function yamlNumber(x: number): string {
  if (Number.isInteger(x)) return String(x);
  const s = String(x);
  return /e/.test(s) && !s.includes('.') ? s.replace('e', '.0e') : s;
}

/** The YAML text of a step; strings are quoted by the yaml library when they need it. */
export function renderYaml(sections: YamlSections): string {
  const value = (v: YamlValue): string =>
    typeof v === 'number'
      ? yamlNumber(v)
      : typeof v === 'boolean'
        ? String(v)
        : typeof v === 'string'
          ? YAML.stringify(v).trimEnd()
          : `{${Object.entries(v)
              .map(([k, x]) => `${k}: ${yamlNumber(x)}`)
              .join(', ')}}`;
  return (
    sections
      .map(([title, args]) => [`### ${title}`, ...Object.entries(args).map(([k, v]) => `${k}: ${value(v)}`)].join('\n'))
      .join('\n\n') + '\n'
  );
}

/** A DeepSpeed ZeRO config whose sizes transformers fills in from the training arguments ("auto"). */
export function zeroConfig(stage: 2 | 3): Record<string, unknown> {
  const zero =
    stage === 3
      ? {
          stage,
          overlap_comm: true,
          contiguous_gradients: true,
          reduce_bucket_size: 'auto',
          stage3_prefetch_bucket_size: 'auto',
          stage3_param_persistence_threshold: 'auto',
          stage3_gather_16bit_weights_on_model_save: true,
        }
      : {
          stage,
          overlap_comm: true,
          contiguous_gradients: true,
          reduce_scatter: true,
          reduce_bucket_size: 'auto',
          allgather_bucket_size: 5e8,
        };
  return {
    train_batch_size: 'auto',
    train_micro_batch_size_per_gpu: 'auto',
    gradient_accumulation_steps: 'auto',
    gradient_clipping: 'auto',
    zero_allow_untested_optimizer: true,
    bf16: { enabled: 'auto' },
    fp16: { enabled: 'auto' },
    zero_optimization: zero,
  };
}
