import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nativeKernels } from '../src/engine/native.js';
import { Context } from '../src/engine/tensor.js';
import { parseModelConfig } from '../src/model/config.js';
import { generate } from '../src/model/generate.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';

const cfg = parseModelConfig(
  {
    vocab_size: 50,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    initializer_range: 0.3,
  },
  'test',
);
const model = Llama.random(nativeKernels, cfg, 11, false);

/** Greedy decoding by re-running the whole sequence each step (no cache): the reference. */
function greedyNoCache(prompt: number[], steps: number): number[] {
  const seq = prompt.slice();
  for (let s = 0; s < steps; s++) {
    const ctx = new Context(nativeKernels, undefined, false);
    const T = seq.length;
    const h = model.hidden(ctx, { ids: Int32Array.from(seq), pos: sequentialPositions(1, T), B: 1, T });
    const last = ctx.tensor([1, cfg.hidden_size], false);
    last.data.set(h.data.subarray((T - 1) * cfg.hidden_size));
    const logits = model.logits(ctx, last);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    seq.push(best);
  }
  return seq.slice(prompt.length);
}

test('KV-cache greedy decoding equals re-running the full sequence', () => {
  const prompt = [3, 14, 15, 9, 2, 6];
  const [[g]] = generate(model, [prompt], { maxNewTokens: 12 });
  assert.deepEqual(g.ids, greedyNoCache(prompt, 12));
  assert.equal(g.finishReason, 'length');
});

test('prompts of different lengths batched with left padding give the same tokens as alone', () => {
  const prompts = [[1, 2, 3], [7, 8, 9, 10, 11, 12, 13], [5]];
  const batched = generate(model, prompts, { maxNewTokens: 8 });
  prompts.forEach((p, i) => assert.deepEqual(batched[i][0].ids, generate(model, [p], { maxNewTokens: 8 })[0][0].ids));
});

test('sampling: seeded, n samples per prompt, top-k 1 is greedy, EOS and stop strings end a row', () => {
  const p = [4, 4, 2];
  const opts = { maxNewTokens: 10, temperature: 1.5, topP: 0.95, n: 4, seed: 3 };
  const a = generate(model, [p], opts),
    b = generate(model, [p], opts);
  assert.deepEqual(a, b);
  assert.equal(a[0].length, 4);
  assert.ok(new Set(a[0].map((g) => g.ids.join())).size > 1, 'samples differ');
  assert.notDeepEqual(generate(model, [p], { ...opts, seed: 4 }), a);
  const greedy = generate(model, [p], { maxNewTokens: 10 })[0][0].ids;
  assert.deepEqual(generate(model, [p], { maxNewTokens: 10, temperature: 1, topK: 1, seed: 9 })[0][0].ids, greedy);
  const eos = generate(model, [p], { maxNewTokens: 10, eosIds: [greedy[3]] })[0][0];
  assert.equal(eos.finishReason, 'eos');
  assert.deepEqual(eos.ids, greedy.slice(0, greedy.indexOf(greedy[3])));
  const decode = (ids: number[]) => ids.map((i) => String.fromCharCode(65 + (i % 26))).join('');
  const stopAt = decode(greedy).slice(2, 4);
  const st = generate(model, [p], { maxNewTokens: 10, stop: [stopAt], decode })[0][0];
  assert.equal(st.finishReason, 'stop');
  assert.equal(st.text, decode(greedy).slice(0, decode(greedy).indexOf(stopAt)));
  const streamed: number[] = [];
  generate(model, [p], {
    maxNewTokens: 5,
    onToken: (row, id) => {
      assert.equal(row, 0);
      streamed.push(id);
    },
  });
  assert.deepEqual(streamed, greedy.slice(0, 5));
});

test('generation refuses to run past the context window', () => {
  assert.throws(() => generate(model, [[1, 2]], { maxNewTokens: 5000 }), /max_position_embeddings/);
});
