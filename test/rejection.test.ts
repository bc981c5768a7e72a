import assert from 'node:assert/strict';
import { test } from 'node:test';
import { roundSummary, roundTrainingSet, selectKept, type Candidate, type RoundRecord, type RsPrompt } from '../src/train/rejection.js';

const cands = (greedy: number, policy: number[], extra: Candidate[] = []): Candidate[] => [
  { text: 'g', source: 'greedy', reward: greedy },
  ...policy.map((reward, i) => ({ text: `p${i}`, source: 'policy' as const, reward })),
  ...extra,
];
const base = { keep: 1, threshold: null, margin: 0, beatReference: false, referenceCandidate: false };

test('selectKept: only samples that beat the greedy answer by the margin, best first, above the floor', () => {
  const c = cands(
    1,
    [0.5, 1.2, 2, 1.05],
    [
      { text: 'e', source: 'external', reward: 1.5 },
      { text: 'r', source: 'reference', reward: 1.8 },
    ],
  );
  assert.deepEqual(selectKept(c, base), { bar: 1, kept: [3] });
  assert.deepEqual(selectKept(c, { ...base, keep: 3 }).kept, [3, 5, 2]);
  assert.deepEqual(selectKept(c, { ...base, keep: 9, margin: 0.3 }).kept, [3, 5], '1.2 and 1.05 do not clear 1 + 0.3');
  assert.deepEqual(selectKept(c, { ...base, keep: 9, beatReference: true }), { bar: 1.8, kept: [3] });
  assert.deepEqual(selectKept(c, { ...base, keep: 9, threshold: 1.6 }).kept, [3], 'the threshold stays an absolute floor');
  assert.deepEqual(selectKept(c, { ...base, keep: 9, referenceCandidate: true }).kept, [3, 6, 5, 2, 4]);
  // the greedy answer itself never counts as an improvement, and ties do not pass
  assert.deepEqual(selectKept(cands(1, [1, 0.2]), { ...base, keep: 9 }).kept, []);
  // without a greedy answer (external-only use) the bar is the floor alone
  assert.deepEqual(selectKept([{ text: 'e', source: 'external', reward: -5 }], base).kept, [0]);
});

const prompt = (id: string, reference?: string): RsPrompt => ({
  id,
  messages: [{ role: 'user', content: `问${id}` }],
  ...(reference ? { reference } : {}),
});
const record = (p: RsPrompt, kept: number[]): RoundRecord => ({ id: p.id, prompt: p.messages, bar: 0, kept, candidates: cands(0, [1, 2]) });

test('roundTrainingSet: kept answers plus replayed references making up the replay share, seeded', () => {
  const prompts = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((id) => prompt(id, id === 'h' ? undefined : `答${id}`));
  const records = prompts.map((p, i) => record(p, i < 3 ? [2] : []));
  const half = roundTrainingSet(records, prompts, { replay: 0.5, seed: 1 }, 1);
  assert.deepEqual([half.kept, half.replayed, half.conversations.length], [3, 3, 6]);
  assert.deepEqual(half.conversations[0], [
    { role: 'user', content: '问a' },
    { role: 'assistant', content: 'p1' },
  ]);
  for (const c of half.conversations.slice(3))
    assert.equal(c[1].content, c[0].content.replace('问', '答'), 'a replayed prompt keeps its own reference');
  assert.deepEqual(roundTrainingSet(records, prompts, { replay: 0.5, seed: 1 }, 1), half, 'same seed and round, same replay');
  assert.equal(roundTrainingSet(records, prompts, { replay: 0, seed: 1 }, 1).replayed, 0);
  // 0.75 of the set would be 9 references: only the 7 prompts with one can be replayed
  assert.equal(roundTrainingSet(records, prompts, { replay: 0.75, seed: 1 }, 1).replayed, 7);
  assert.equal(
    roundTrainingSet(
      records.map((r) => ({ ...r, kept: [] })),
      prompts,
      { replay: 0.5, seed: 1 },
      1,
    ).conversations.length,
    0,
    'nothing kept, nothing to fine-tune on',
  );
});

test('roundSummary: kept fraction and the mean rewards of kept, greedy, reference and sampled answers', () => {
  const records: RoundRecord[] = [
    { id: 'a', prompt: [], bar: 1, kept: [2], candidates: cands(1, [0, 3], [{ text: 'r', source: 'reference', reward: 2 }]) },
    { id: 'b', prompt: [], bar: 2, kept: [], candidates: cands(2, [1, 1]) },
  ];
  const s = roundSummary(records);
  assert.deepEqual(
    [
      s['rs/prompts'],
      s['rs/kept'],
      s['rs/kept_fraction'],
      s['rs/kept_mean_reward'],
      s['rs/greedy_mean_reward'],
      s['rs/reference_mean_reward'],
      s['rs/mean_reward'],
      s['rs/best_reward'],
    ],
    [2, 1, 0.5, 3, 1.5, 2, 1.25, 2],
  );
});
