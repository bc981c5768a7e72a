import { saveModel } from '../model/checkpoint.js';
import { parse, UsageError } from './args.js';
import { MODEL_FLAGS, MODEL_USAGE, loadPolicy } from './stage.js';

const MERGE_USAGE = `chimed export merge --model DIR --adapter DIR --out DIR

Folds a PEFT LoRA adapter into its base model and writes a plain HF model folder
(config.json, model.safetensors, tokenizer.json, tokenizer_config.json).

${MODEL_USAGE}`;

export async function exportCommand(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what !== 'merge') throw new UsageError(`chimed export merge ...  (unknown export "${what ?? ''}")\n\n${MERGE_USAGE}`);
  const a = parse(rest, { ...MODEL_FLAGS, out: { type: 'string' } }, MERGE_USAGE);
  if (a.help) { process.stdout.write(MERGE_USAGE + '\n'); return 0; }
  if (!a.str('adapter')) throw new UsageError(`--adapter is required\n\n${MERGE_USAGE}`);
  const out = a.need('out');
  const { model, tokenizer, template } = await loadPolicy(a, false);
  await saveModel(out, model);
  await tokenizer.save(out, { chatTemplate: template.source });
  process.stdout.write(`merged model: ${out}\n`);
  return 0;
}
