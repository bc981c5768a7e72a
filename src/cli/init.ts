import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { readConfigFile, saveModel } from '../model/checkpoint.js';
import { Llama } from '../model/llama.js';
import { Tokenizer } from '../tokenizer/index.js';
import { parse } from '../io/argv.js';

const USAGE = `chimed init --config MODEL.json --out DIR [--seed N] [--tokenizer DIR] [--dtype F32|F16|BF16]

Writes a random-initialised model in HF layout (config.json + model.safetensors) of the
family MODEL.json names: an HF config.json of Llama-2/3 (LlamaForCausalLM), Qwen2/2.5
(Qwen2ForCausalLM), Qwen3 (Qwen3ForCausalLM) or Baichuan-7B / Baichuan2-7B
(BaiChuanForCausalLM / BaichuanForCausalLM), e.g. a real model's config.json with smaller
sizes. Without architectures / model_type it is a LLaMA. Keys that would change the maths
in a way chimed does not implement are refused, naming the key. --dtype F16 / BF16 draws the
weights straight into that precision: memory of 2 bytes per parameter (a 7B model fits a
24 GB machine), the same values as rounding the F32 draw.`;

export async function initCommand(argv: string[]): Promise<number> {
  const a = parse(
    argv,
    {
      config: { type: 'string' },
      out: { type: 'string' },
      seed: { type: 'string' },
      tokenizer: { type: 'string' },
      dtype: { type: 'string' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const out = a.need('out');
  const dtype = (a.str('dtype') ?? 'F32').toUpperCase();
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new Error(`--dtype: expected F32, F16 or BF16, got "${a.str('dtype')}"`);
  // a half-precision model is drawn straight into that dtype (the same values as rounding the
  // f32 draw), so a 7B model takes 14 GB of memory, not 28
  const base = dtype === 'F32' ? 'f32' : (dtype.toLowerCase() as 'bf16' | 'f16');
  const model = Llama.random(
    nativeKernels,
    readConfigFile(a.need('config')),
    a.num('seed', 42, Number.isInteger, 'an integer'),
    false,
    base,
  );
  await saveModel(out, model, dtype as 'F32');
  const tokDir = a.str('tokenizer');
  if (tokDir) await (await Tokenizer.fromDir(tokDir)).save(out);
  const n = model.params.count;
  process.stdout.write(`wrote ${path.join(out, 'model.safetensors')}: ${n.toLocaleString('en-US')} parameters\n`);
  return 0;
}
