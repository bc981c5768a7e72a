import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CharNgramModel, ConstantModel } from '../src/eval/baselines.js';
import { lcsLength } from '../src/data/overlap.js';
import { corpusBleu, corpusRouge, evaluateTextgen, textgenScores, tokenize } from '../src/eval/textgen.js';
import { medicalText } from './helpers.js';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} != ${b}`);

test('char tokeniser: one token per CJK character, ASCII words and numbers whole, no whitespace', () => {
  assert.deepEqual(tokenize('COVID-19患者 体温38.5℃'), ['COVID', '-', '19', '患', '者', '体', '温', '38', '.', '5', '℃']);
  assert.deepEqual(tokenize('  \n'), []);
  assert.deepEqual(tokenize('The dog  bit', 'whitespace'), ['The', 'dog', 'bit']);
});

test('jieba tokeniser gives words', () => {
  const words = tokenize('患者行直肠癌根治术', 'jieba');
  assert.ok(words.includes('直肠癌'), words.join('/'));
  assert.equal(words.join(''), '患者行直肠癌根治术');
  assert.equal(textgenScores(['患者行直肠癌根治术'], ['患者行直肠癌根治术'], { tokenizer: 'jieba' }).bleu4, 100);
});

test('BLEU by hand: 我爱北京 vs 我爱上海', () => {
  // tokens 我 爱 北 京 / 我 爱 上 海; c = r = 4, so BP = 1
  // 1-grams 2/4, 2-grams {我爱} 1/3, 3-grams 0/2, 4-grams 0/1
  const b = corpusBleu(['我爱北京'], ['我爱上海']);
  assert.deepEqual(b.matches, [2, 1, 0, 0]);
  assert.deepEqual(b.totals, [4, 3, 2, 1]);
  assert.equal(b.brevity_penalty, 1);
  close(b.bleu[0], 50);
  close(b.bleu[1], 100 * Math.sqrt(0.5 * (1 / 3))); // 40.82
  // 'exp' smoothing: first zero order gets 1/(2*2), second 1/(4*1)
  close(b.precisions[2], 25);
  close(b.precisions[3], 25);
  close(b.bleu[2], 100 * Math.cbrt(0.5 * (1 / 3) * 0.25)); // (1/24)^(1/3) = 34.67
  close(b.bleu[3], 100 * (0.5 * (1 / 3) * 0.25 * 0.25) ** 0.25); // (1/96)^(1/4) = 31.95
  // 'floor' (Chen & Cherry method 1, epsilon 0.1): 0.1/2 and 0.1/1
  const f = corpusBleu(['我爱北京'], ['我爱上海'], { smoothing: 'floor' });
  close(f.bleu[3], 100 * (0.5 * (1 / 3) * 0.05 * 0.1) ** 0.25); // 16.99
  // no smoothing: a zero precision zeroes that order and every higher one
  const n = corpusBleu(['我爱北京'], ['我爱上海'], { smoothing: 'none' });
  assert.deepEqual(
    n.bleu.map((x) => Math.round(x * 1e6) / 1e6),
    [50, Math.round(1e8 * Math.sqrt(1 / 6)) / 1e6, 0, 0],
  );
});

test('BLEU brevity penalty, corpus-level counting and closest reference length', () => {
  // hypothesis 2 tokens, reference 4: BP = exp(1 - 4/2) = e^-1; both precisions 1; no 3-grams at all
  const short = corpusBleu(['我爱'], ['我爱北京']);
  close(short.brevity_penalty, Math.exp(-1));
  close(short.bleu[1], 100 * Math.exp(-1));
  assert.equal(short.bleu[2], 0);
  // corpus counts are summed before dividing: p1 = (2+2)/(4+2), p2 = (1+1)/(3+1), BP = exp(1 - 8/6)
  const corpus = corpusBleu(['我爱北京', '我爱'], ['我爱上海', '我爱北京']);
  close(corpus.bleu[1], 100 * Math.exp(1 - 8 / 6) * Math.sqrt((4 / 6) * (2 / 4)));
  // several references: clip by the largest count in any one reference; 北京 matches the second
  const multi = corpusBleu(['我爱北京'], [['我爱上海', '北京欢迎你']]);
  assert.deepEqual(multi.matches.slice(0, 2), [4, 2]);
  close(multi.bleu[1], 100 * Math.sqrt(1 * (2 / 3)));
  // hypothesis length 4 is equally far from 3 and 5: the shorter (3) is used, so BP = 1
  const tie = corpusBleu(['一二三四'], [['一二三', '一二三四五']]);
  assert.equal(tie.ref_len, 3);
  assert.equal(tie.bleu[0], 100);
});

test("BLEU matches sacrebleu's README example (48.53, 82.4/50.0/45.5/37.5, BP 0.943)", () => {
  // sacrebleu's 13a tokenisation done by hand: the final period is split off, "wasn't" kept.
  const sys = ['The dog bit the man .', "It wasn't surprising .", 'The man had just bitten him .'];
  const refs = [
    ['The dog bit the man .', 'The dog had bit the man .'],
    ['It was not unexpected .', 'No one was surprised .'],
    ['The man bit him first .', 'The man had bitten the dog .'],
  ];
  // matches per sentence, orders 1..4:  s1 6/5/4/3 (all in ref 1); s2 It and "." 2/0/0/0;
  // s3 The man had bitten him . = 6, "The man" "man had" = 2, "The man had" = 1, 0
  // totals: 17/14/11/8; reference lengths closest to 6, 4, 7: 6 + 5 + 7 = 18
  const b = corpusBleu(sys, refs, { tokenizer: 'whitespace' });
  assert.deepEqual(b.matches, [14, 7, 5, 3]);
  assert.deepEqual(b.totals, [17, 14, 11, 8]);
  assert.equal(b.hyp_len, 17);
  assert.equal(b.ref_len, 18);
  close(b.brevity_penalty, Math.exp(1 - 18 / 17));
  close(b.bleu[3], 48.530827009929865, 1e-9); // sacrebleu's printed score
  assert.deepEqual(
    b.precisions.map((p) => p.toFixed(1)),
    ['82.4', '50.0', '45.5', '37.5'],
  );
});

test('ROUGE by hand', () => {
  // 我爱北京 vs 我爱上海: unigram overlap 2 of 4 each side; bigram 1 of 3; LCS 我爱 = 2
  const r = corpusRouge(['我爱北京'], ['我爱上海']);
  close(r.rouge1.f1, 50);
  close(r.rouge2.f1, 100 / 3);
  close(r.rougeL.f1, 50);
  // 甲乙丙丁 vs 甲丙乙丁: same characters, no common bigram, LCS 3 (甲乙丁)
  const s = corpusRouge(['甲乙丙丁'], ['甲丙乙丁']);
  close(s.rouge1.f1, 100);
  close(s.rouge2.f1, 0);
  close(s.rougeL.f1, 75);
  // recall 2/4, precision 2/2: F1 = 2 * 1 * 0.5 / 1.5
  const short = corpusRouge(['我爱'], ['我爱北京']);
  close(short.rougeL.precision, 100);
  close(short.rougeL.recall, 50);
  close(short.rouge1.f1, 200 / 3);
  // sentence F1s are averaged: (50 + 200/3) / 2; with two references the better one counts
  close(corpusRouge(['我爱北京', '我爱'], ['我爱上海', '我爱北京']).rouge1.f1, (50 + 200 / 3) / 2);
  close(corpusRouge(['我爱北京'], [['北京欢迎你', '我爱上海']]).rouge1.f1, 50);
  assert.equal(lcsLength(['a', 'b', 'c', 'b', 'd', 'a', 'b'], ['b', 'd', 'c', 'a', 'b', 'a']), 4);
});

test('identical texts score 100, disjoint texts 0', () => {
  const text = ['高血压患者应低盐饮食，规律服用降压药物。', '糖尿病需要控制血糖 HbA1c < 7%。'];
  for (const v of Object.values(textgenScores(text, text))) close(v, 100);
  for (const v of Object.values(textgenScores(['甲乙丙丁'], ['子丑寅卯']))) assert.equal(v, 0);
  for (const v of Object.values(textgenScores([''], ['子丑寅卯']))) assert.equal(v, 0);
});

test('bad corpora are refused', () => {
  assert.throws(() => corpusBleu(['a'], []), /1 hypotheses but 0 references/);
  assert.throws(() => corpusRouge([], []), /empty corpus/);
  assert.throws(() => corpusBleu(['a'], [[]]), /references\[0\]: no reference/);
  assert.throws(() => tokenize('a', 'spaces' as never), /unknown tokenizer/);
});

test('evaluateTextgen: generated answers are scored as generated', async () => {
  const examples = [
    { id: 'q1', prompt: '问：高血压怎么办？\n答：', reference: '高血压是一种常见疾病，注意饮食与休息。' },
    { id: 'q2', prompt: '问：肺炎怎么办？\n答：', reference: '肺炎患者常出现咳嗽和发热等症状。' },
  ];
  const constant = await evaluateTextgen(new ConstantModel('注意饮食与休息。'), examples);
  assert.deepEqual(
    constant.outputs.map((o) => o.output),
    ['注意饮食与休息。', '注意饮食与休息。'],
  );
  assert.deepEqual(
    constant.scores,
    textgenScores(
      ['注意饮食与休息。', '注意饮食与休息。'],
      examples.map((e) => e.reference),
    ),
  );

  // a character trigram model trained on medical prose writes something medical-looking
  const lm = new CharNgramModel(medicalText(40), 3);
  const res = await evaluateTextgen(lm, examples, { maxNewTokens: 30, stop: ['\n'], batchSize: 1 });
  assert.equal(res.n, 2);
  for (const o of res.outputs) assert.ok(o.output.length > 0 && o.output.length <= 30);
  assert.deepEqual(
    res.scores,
    textgenScores(
      res.outputs.map((o) => o.output),
      examples.map((e) => e.reference),
    ),
  );
  assert.ok(res.scores.rouge1 > 0, 'a model trained on medical prose shares characters with the references');
});
