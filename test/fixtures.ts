import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '../src/tokenizer/index.js';
import { runCli } from './helpers.js';

/** Small medical QA set: question, sound answer, and two rejected kinds (wrong fact, evasive). */
export function qaSet() {
  const rows: [string, string, string][] = [
    ['高血压', '氨氯地平', '头晕'], ['糖尿病', '二甲双胍', '口渴多尿'], ['肺炎', '阿莫西林', '咳嗽发热'], ['胃炎', '奥美拉唑', '上腹痛'],
    ['偏头痛', '布洛芬', '单侧头痛'], ['哮喘', '沙丁胺醇', '喘息'], ['贫血', '硫酸亚铁', '乏力'], ['痛风', '秋水仙碱', '关节红肿'],
    ['甲亢', '甲巯咪唑', '心悸消瘦'], ['失眠', '唑吡坦', '入睡困难'], ['荨麻疹', '氯雷他定', '风团瘙痒'], ['结膜炎', '左氧氟沙星滴眼液', '眼红'],
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

/** A tiny untrained chat model (random weights, the QA tokenizer) saved to DIR/model; returns that folder. */
export async function untrainedChatModel(dir: string): Promise<string> {
  const tok = await qaTokenizer(dir);
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({ vocab_size: 400, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 256 }));
  const out = path.join(dir, 'model');
  const r = runCli(['init', '--config', path.join(dir, 'model.json'), '--tokenizer', tok, '--out', out]);
  if (r.code !== 0) throw new Error(`chimed init failed: ${r.stderr}`);
  return out;
}
