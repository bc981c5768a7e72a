import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { readConfigFile, saveModel } from '../model/checkpoint.js';
import { Llama } from '../model/llama.js';
import { Tokenizer } from '../tokenizer/index.js';
import { parse } from '../io/argv.js';


const USAGE = `chimed init --config MODEL.json --out DIR [--seed N] [--tokenizer DIR] [--dtype F32|F16|BF16]

Writes a random-initialised LLaMA model in HF layout (config.json + model.safetensors).
MODEL.json uses HF LlamaConfig keys (vocab_size, hidden_size, intermediate_size,
num_hidden_layers, num_attention_heads, num_key_value_heads, rope_theta, ...).`;

export async function initCommand(argv: string[]): Promise<number> {
  const a = parse(argv, { config: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, tokenizer: { type: 'string' }, dtype: { type: 'string' } }, USAGE);
  if (a.help) { process.stdout.write(USAGE + '\n'); return 0; }
  const out = a.need('out');
  const model = Llama.random(nativeKernels, readConfigFile(a.need('config')), a.num('seed', 42, Number.isInteger, 'an integer'), false);
  const dtype = (a.str('dtype') ?? 'F32').toUpperCase();
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new Error(`--dtype: expected F32, F16 or BF16, got "${a.str('dtype')}"`);
  await saveModel(out, model, dtype as 'F32');
  const tokDir = a.str('tokenizer');
  if (tokDir) await (await Tokenizer.fromDir(tokDir)).save(out);
  const n = model.params.size;
  process.stdout.write(`wrote ${path.join(out, 'model.safetensors')}: ${n.toLocaleString('en-US')} parameters\n`);
  return 0;
}
