import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { GGUF_EXPORT_DTYPES, ggufArchitecture, ggufDtypeOf, writeLlamaGguf, type GgufExportDtype } from '../model/gguf-llama.js';
import { copyRemoteCode, saveModel } from '../model/checkpoint.js';
import { Llama } from '../model/llama.js';
import { loadChatModel, type ChatModel } from '../model/load.js';
import { LoraAdapter } from '../model/lora.js';
import { dispatch, parse, UsageError, type Command } from '../io/argv.js';
import { MODEL_FLAGS, MODEL_USAGE, ROPE_FLAGS, ROPE_USAGE, loadPolicy } from './common.js';
import { exportLlamaFactoryCommand, LLAMAFACTORY_USAGE } from './export-llamafactory.js';

type Parsed = ReturnType<typeof parse>;

const SAMPLING_FLAGS = {
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  'max-new-tokens': { type: 'string' },
} as const;

const SAMPLING_USAGE = `  generation_config.json defaults (chimed generate's defaults unless given):
  --temperature X (0: greedy)  --top-k N  --top-p X  --repetition-penalty X  --max-new-tokens N (256)`;

const HF_USAGE = `chimed export hf --model DIR [--adapter DIR [--keep-adapter]] --out DIR [--dtype F32|F16|BF16]

Writes an HF model folder: config.json, model.safetensors, the tokenizer as it came
(tokenizer.json and/or tokenizer.model, tokenizer_config.json, the chat template in its own
form: a config string or list, or chat_template.jinja) and generation_config.json (eos = the chat
template's stop tokens). An --adapter is merged into the weights, or with --keep-adapter
written beside the base: OUT/base (the model folder) and OUT/adapter (the PEFT adapter).
--dtype defaults to the dtype the base is kept in: BF16 (F16) for a bf16 (f16) checkpoint,
F32 for an f32 one or a --base-dtype q8_0 base.

${SAMPLING_USAGE}
${MODEL_USAGE}`;

const MERGE_USAGE = `chimed export merge --model DIR --adapter DIR --out DIR

Folds a PEFT LoRA adapter into its base model and writes a plain HF model folder
(as chimed export hf without --keep-adapter).

${SAMPLING_USAGE}
${MODEL_USAGE}
${ROPE_USAGE} (the scaling the adapter was trained with)`;

const GGUF_USAGE = `chimed export gguf --model DIR [--adapter DIR] --out FILE.gguf [--dtype f32|f16|q8_0] [--name NAME]

Writes a GGUF file for llama.cpp (llama, qwen2, qwen3 or baichuan architecture, after the
model's family): weights (an --adapter merged first), the tokenizer (byte-level BPE as
tokenizer.ggml.model gpt2; SentencePiece-style vocabularies, Llama-2's or Baichuan's, as llama
with scores and token types) and the chat template. f16 and q8_0 keep the norms in f32, as
llama.cpp's converter does; q8_0 matrices whose rows are not multiples of 32 are stored f16.
--dtype defaults to the base's: f16 for a bf16 or f16 checkpoint, q8_0 for --base-dtype q8_0,
else f32.

${MODEL_USAGE}`;

const USAGE = `chimed export hf|gguf|merge|llamafactory ...\n\n${HF_USAGE}\n\n${GGUF_USAGE}\n\n${MERGE_USAGE}\n\n${LLAMAFACTORY_USAGE}`;

const EXPORTS: Record<string, Command> = {
  hf: { summary: 'HF model folder', run: (argv) => exportHf(argv, HF_USAGE, false) },
  gguf: { summary: 'GGUF file for llama.cpp', run: exportGguf },
  merge: { summary: 'a LoRA adapter folded into its base', run: (argv) => exportHf(argv, MERGE_USAGE, true) },
  llamafactory: { summary: "a run's datasets and stage settings for LLaMA-Factory", run: exportLlamaFactoryCommand },
};

export function exportCommand(argv: string[]): Promise<number> {
  return dispatch(argv, EXPORTS, USAGE, 'export');
}

/** HF generation_config.json: the template's stop tokens end generation; sampling defaults from the flags. */
export function generationConfig(chat: ChatModel, a: Parsed): Record<string, unknown> {
  const { tokenizer: tok, template } = chat;
  const temperature = a.num('temperature', 0, (x) => Number.isFinite(x) && x >= 0, 'a number >= 0');
  const sampling: Record<string, unknown> =
    temperature > 0
      ? {
          do_sample: true,
          temperature,
          ...(a.str('top-k') !== undefined && { top_k: a.int('top-k') }),
          ...(a.str('top-p') !== undefined && { top_p: a.num('top-p') }),
        }
      : { do_sample: false };
  const rp = a.num('repetition-penalty', 1);
  return {
    ...(tok.bosId !== null && { bos_token_id: tok.bosId }),
    eos_token_id: template.stopIds(tok),
    pad_token_id: tok.padId,
    ...sampling,
    ...(rp !== 1 && { repetition_penalty: rp }),
    max_new_tokens: a.int('max-new-tokens', 256),
  };
}

/** Model folder: weights, tokenizer with the chat template, generation_config.json, remote code (Baichuan). */
async function writeHfFolder(out: string, chat: ChatModel, a: Parsed, dtype: 'F32' | 'F16' | 'BF16' | undefined): Promise<void> {
  const { model, tokenizer, template } = chat;
  // config.json names the special tokens too, as transformers writes it
  const config = {
    ...model.config,
    eos_token_id: tokenizer.eosId,
    pad_token_id: tokenizer.padId,
    ...(tokenizer.bosId !== null && { bos_token_id: tokenizer.bosId }),
  };
  await saveModel(out, new Llama(config, model.params), dtype);
  copyRemoteCode(model.config, chat.dir, out);
  await tokenizer.save(out, { template });
  await writeJsonAtomic(path.join(out, 'generation_config.json'), generationConfig(chat, a));
}

async function exportHf(argv: string[], usage: string, merge: boolean): Promise<number> {
  const a = parse(
    argv,
    {
      ...MODEL_FLAGS,
      ...ROPE_FLAGS,
      ...SAMPLING_FLAGS,
      out: { type: 'string' },
      dtype: { type: 'string' },
      'keep-adapter': { type: 'boolean' },
    },
    usage,
  );
  if (a.help) {
    process.stdout.write(usage + '\n');
    return 0;
  }
  const out = a.need('out');
  const adapter = a.str('adapter');
  if (merge && !adapter) throw new UsageError(`--adapter is required\n\n${usage}`);
  // default: the dtype the base is kept in (a bf16 checkpoint stays bf16; f32 for an f32 or q8_0 base)
  const dtype = a.str('dtype')?.toUpperCase() as 'F32' | undefined;
  if (dtype && !['F32', 'F16', 'BF16'].includes(dtype)) throw new UsageError(`--dtype: expected F32, F16 or BF16, got "${a.str('dtype')}"`);
  if (!a.flag('keep-adapter')) {
    await writeHfFolder(out, await loadPolicy(a, false), a, dtype);
    process.stdout.write(`${adapter ? 'merged model' : 'model'}: ${out}\n`);
    return 0;
  }
  if (merge || !adapter) throw new UsageError(`--keep-adapter needs --adapter (and export hf)\n\n${usage}`);
  const base = await loadChatModel({ model: a.need('model'), tokenizer: a.str('tokenizer'), template: a.str('template') });
  await LoraAdapter.load(adapter, base.model); // checks every adapter tensor against the base before anything is written
  await writeHfFolder(path.join(out, 'base'), base, a, dtype);
  const adapterOut = path.join(out, 'adapter');
  await mkdir(adapterOut, { recursive: true });
  for (const f of ['adapter_config.json', 'adapter_model.safetensors']) await copyFile(path.join(adapter, f), path.join(adapterOut, f));
  process.stdout.write(`base model: ${path.join(out, 'base')}\nPEFT adapter: ${adapterOut}\n`);
  return 0;
}

async function exportGguf(argv: string[]): Promise<number> {
  const a = parse(argv, { ...MODEL_FLAGS, out: { type: 'string' }, dtype: { type: 'string' }, name: { type: 'string' } }, GGUF_USAGE);
  if (a.help) {
    process.stdout.write(GGUF_USAGE + '\n');
    return 0;
  }
  const out = a.need('out');
  const asked = a.str('dtype')?.toLowerCase() as GgufExportDtype | undefined;
  if (asked && !GGUF_EXPORT_DTYPES.includes(asked))
    throw new UsageError(`--dtype: expected ${GGUF_EXPORT_DTYPES.join(', ')}, got "${a.str('dtype')}"`);
  const chat = await loadPolicy(a, false);
  const dtype = asked ?? ggufDtypeOf(chat.model);
  await mkdir(path.dirname(path.resolve(out)), { recursive: true });
  const notes = await writeLlamaGguf(out, { ...chat, name: a.str('name') ?? path.basename(path.resolve(a.need('model'))) }, dtype);
  for (const n of notes) process.stderr.write(`note: ${n}\n`);
  process.stdout.write(`gguf (${dtype}, ${ggufArchitecture(chat.model.config).arch} architecture): ${out}\n`);
  return 0;
}
