import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import * as chimed from '../src/index.js';
import { qaTokenizer } from './fixtures.js';
import { tmpDir } from './helpers.js';

test('the package API: load a chat model and reply, as the index documents', async () => {
  const dir = tmpDir();
  const tok = chimed.Tokenizer.fromDir(await qaTokenizer(dir));
  const config = chimed.parseModelConfig({ vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2 }, 'api test');
  const out = path.join(dir, 'm');
  await chimed.saveModel(out, chimed.Llama.random(chimed.nativeKernels, config, 1, false));
  await tok.save(out);
  const { model, tokenizer, template } = await chimed.loadChatModel({ model: out });
  const [[reply]] = chimed.generateReplies(model, tokenizer, template, [[{ role: 'user', content: '高血压要注意什么？' }]], { maxNewTokens: 8 });
  assert.equal(typeof reply.text, 'string');
  assert.ok(reply.ids.length <= 8);
  for (const name of ['runPipeline', 'buildDatasets', 'Trainer', 'evaluateMcq', 'writeLlamaGguf', 'buildServer', 'LoraAdapter', 'RewardModel']) {
    assert.equal(typeof (chimed as Record<string, unknown>)[name], 'function', name);
  }
});
