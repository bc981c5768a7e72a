import path from 'node:path';
import { exportLlamaFactory } from '../pipeline/llamafactory.js';
import { parse, UsageError } from '../io/argv.js';

export const LLAMAFACTORY_USAGE = `chimed export llamafactory RUN_DIR --out DIR [--model PATH_OR_HUB_ID] [--zero 2|3]

Hands a chimed run to LLaMA-Factory (GPU clusters, DeepSpeed): DIR/data holds the run's
stage datasets after dedup and decontamination (pre-training text, sharegpt SFT, ranking
preference pairs, each rejection-sampling round's kept answers) with dataset_info.json;
DIR/{pt,sft,rm,rs_roundN,dpo}.yaml carry the run's hyperparameters, merge_*.yaml merge LoRA
stages, ds_zN_config.json is the DeepSpeed config and DIR/README.md lists the commands.

  --model X    model_name_or_path of the first stage (default: the run's base model folder)
  --zero N     DeepSpeed ZeRO stage, 2 or 3 (default 3)`;

export async function exportLlamaFactoryCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { out: { type: 'string' }, model: { type: 'string' }, zero: { type: 'string' } }, LLAMAFACTORY_USAGE);
  if (a.help) {
    process.stdout.write(LLAMAFACTORY_USAGE + '\n');
    return 0;
  }
  if (a.positionals.length !== 1) throw new UsageError(`give one RUN_DIR\n\n${LLAMAFACTORY_USAGE}`);
  const zero = a.num('zero', 3, (x) => x === 2 || x === 3, '2 or 3') as 2 | 3;
  const out = a.need('out');
  const r = await exportLlamaFactory(a.positionals[0], { out, model: a.str('model'), zero });
  const lines = [
    ...r.datasets.map((d) => `${d.name}: ${d.records} records`),
    `template: ${r.template ? r.template.name : "none matches (LLaMA-Factory will parse the tokenizer's chat template)"}`,
    `configs: ${r.steps.map((s) => s.file).join(', ')}`,
    `commands: ${path.join(out, 'README.md')}`,
    ...r.notes.map((n) => `note: ${n}`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
