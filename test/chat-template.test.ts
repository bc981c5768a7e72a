import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { nativeKernels } from '../src/engine/native.js';
import { saveModel } from '../src/model/checkpoint.js';
import { parseModelConfig } from '../src/model/config.js';
import { Llama } from '../src/model/llama.js';
import { loadChatModel } from '../src/model/load.js';
import { ChatTemplate, type ChatMessage } from '../src/tokenizer/chat-template.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { qaTokenizer } from './fixtures.js';
import { tmpDir } from './helpers.js';

const conversation: ChatMessage[] = [
  { role: 'system', content: '你是一名谨慎的全科医生。' },
  { role: 'user', content: '高血压常用什么药？' },
  { role: 'assistant', content: '高血压常用氨氯地平，请遵医嘱。' },
  { role: 'user', content: '糖尿病有什么症状？\n还会口渴吗？' },
  { role: 'assistant', content: '糖尿病常见口渴多尿。' },
];

test('one conversation gives the same token ids through training, inference, export and HF', async () => {
  const dir = tmpDir();
  const tok = Tokenizer.fromDir(await qaTokenizer(dir));
  const template = ChatTemplate.builtin('chatml');
  // the model folder as training leaves it: weights, tokenizer, template in tokenizer_config.json
  const modelDir = path.join(dir, 'model');
  await saveModel(modelDir, Llama.random(nativeKernels, parseModelConfig({ vocab_size: tok.vocabSize, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 }, 't'), 1, false));
  await tok.save(modelDir, { chatTemplate: template.source });
  const loaded = await loadChatModel({ model: modelDir });
  const hfTok = new HfTokenizer(JSON.parse(fs.readFileSync(path.join(modelDir, 'tokenizer.json'), 'utf8')), JSON.parse(fs.readFileSync(path.join(modelDir, 'tokenizer_config.json'), 'utf8')));
  const hfTemplate = new Template(JSON.parse(fs.readFileSync(path.join(modelDir, 'tokenizer_config.json'), 'utf8')).chat_template);

  // training: ids + labels, with each assistant span
  const train = template.encodeConversation(tok, conversation);
  assert.equal(train.spans.length, 2);
  for (const [i, turn] of [[2, 0], [4, 1]] as const) {
    const history = conversation.slice(0, i);
    const paths = {
      inference: template.encodePrompt(tok, history),                       // chimed generate / chat / serve / eval
      reloaded: loaded.template.encodePrompt(loaded.tokenizer, history),    // a model folder read back
      hf: hfTok.encode(hfTemplate.render({ messages: history, add_generation_prompt: true, eos_token: tok.eosToken }), { add_special_tokens: false }).ids,
    };
    for (const [name, ids] of Object.entries(paths)) {
      assert.deepEqual(ids, train.ids.slice(0, train.spans[turn][0]), `${name}: prompt ids before assistant turn ${turn} differ from training's`);
    }
    // the trained answer ends with the end-of-turn token that stops generation
    const answer = train.ids.slice(train.spans[turn][0], train.spans[turn][1]);
    assert.ok(loaded.template.stopIds(loaded.tokenizer).includes(answer.at(-2)!), 'answer span ends with <|im_end|> (+ newline)');
    assert.deepEqual(train.labels.slice(train.spans[turn][0], train.spans[turn][1]), answer);
  }
  assert.ok(train.labels.slice(0, train.spans[0][0]).every((l) => l === -100), 'system and user tokens are not trained');
  assert.equal(loaded.template.name, 'chatml');
});

test('a custom Jinja template from tokenizer_config.json renders and stops on its end-of-turn marker', async () => {
  const dir = tmpDir();
  const tok = Tokenizer.fromDir(await qaTokenizer(dir));
  const custom = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + ':' + m['content'] + '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant:' }}{% endif %}";
  await tok.save(path.join(dir, 'c'), { chatTemplate: custom });
  const t = ChatTemplate.fromDir(path.join(dir, 'c'));
  assert.equal(t.render(conversation.slice(0, 2), tok, true), '<|im_start|>system:你是一名谨慎的全科医生。<|im_end|><|im_start|>user:高血压常用什么药？<|im_end|><|im_start|>assistant:');
  assert.ok(t.stopIds(tok).includes(tok.tokenToId('<|im_end|>')!));
  assert.throws(() => new ChatTemplate('{% for %}', []), /does not parse/);
  assert.throws(() => ChatTemplate.builtin('nope'), /unknown chat template "nope"/);
});
