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
import { lenmlDir } from '../bench/parity.js';
import { generate } from '../src/model/generate.js';
import { buildServer } from '../src/serve/server.js';
import { tokenName } from '../src/tokenizer/hf-json.js';
import { qaSet, qaTokenizer, writeJsonl } from './fixtures.js';
import { runCli, tmpDir } from './helpers.js';

const conversation: ChatMessage[] = [
  { role: 'system', content: '你是一名谨慎的全科医生。' },
  { role: 'user', content: '高血压常用什么药？' },
  { role: 'assistant', content: '高血压常用氨氯地平，请遵医嘱。' },
  { role: 'user', content: '糖尿病有什么症状？\n还会口渴吗？' },
  { role: 'assistant', content: '糖尿病常见口渴多尿。' },
];

/** A random one-layer model for `tok` saved in MODEL_DIR with the tokenizer (and `template`). */
async function saveRandomModel(
  modelDir: string,
  tok: Tokenizer,
  o: { hiddenSize: number; maxPositions?: number; template?: ChatTemplate },
): Promise<void> {
  const sizes = {
    vocab_size: tok.vocabSize,
    hidden_size: o.hiddenSize,
    intermediate_size: 2 * o.hiddenSize,
    num_hidden_layers: 1,
    num_attention_heads: 2,
  };
  const config = parseModelConfig({ ...sizes, ...(o.maxPositions ? { max_position_embeddings: o.maxPositions } : {}) }, 't');
  await saveModel(modelDir, Llama.random(nativeKernels, config, 1, false));
  await tok.save(modelDir, o.template ? { template: o.template } : {});
}

test('one conversation gives the same token ids through training, inference, export and HF', async () => {
  const dir = tmpDir();
  const tok = Tokenizer.fromDir(await qaTokenizer(dir));
  const template = ChatTemplate.builtin('chatml');
  // the model folder as training leaves it: weights, tokenizer, template in tokenizer_config.json
  const modelDir = path.join(dir, 'model');
  await saveRandomModel(modelDir, tok, { hiddenSize: 16, template });
  const loaded = await loadChatModel({ model: modelDir });
  const hfTok = new HfTokenizer(
    JSON.parse(fs.readFileSync(path.join(modelDir, 'tokenizer.json'), 'utf8')),
    JSON.parse(fs.readFileSync(path.join(modelDir, 'tokenizer_config.json'), 'utf8')),
  );
  const hfTemplate = new Template(JSON.parse(fs.readFileSync(path.join(modelDir, 'tokenizer_config.json'), 'utf8')).chat_template);

  // training: ids + labels, with each assistant span
  const train = template.encodeConversation(tok, conversation);
  assert.equal(train.spans.length, 2);
  for (const [i, turn] of [
    [2, 0],
    [4, 1],
  ] as const) {
    const history = conversation.slice(0, i);
    const paths = {
      inference: template.encodePrompt(tok, history), // chimed generate / chat / serve / eval
      reloaded: loaded.template.encodePrompt(loaded.tokenizer, history), // a model folder read back
      hf: hfTok.encode(hfTemplate.render({ messages: history, add_generation_prompt: true, eos_token: tok.eosToken }), {
        add_special_tokens: false,
      }).ids,
    };
    for (const [name, ids] of Object.entries(paths)) {
      assert.deepEqual(
        ids,
        train.ids.slice(0, train.spans[turn][0]),
        `${name}: prompt ids before assistant turn ${turn} differ from training's`,
      );
    }
    // the trained answer ends with the end-of-turn token that stops generation
    const answer = train.ids.slice(train.spans[turn][0], train.spans[turn][1]);
    assert.ok(loaded.template.stopIds(loaded.tokenizer).includes(answer.at(-2)!), 'answer span ends with <|im_end|> (+ newline)');
    assert.deepEqual(train.labels.slice(train.spans[turn][0], train.spans[turn][1]), answer);
  }
  assert.ok(
    train.labels.slice(0, train.spans[0][0]).every((l) => l === -100),
    'system and user tokens are not trained',
  );
  assert.equal(loaded.template.name, 'chatml');
});

test('a custom Jinja template from tokenizer_config.json renders and stops on its end-of-turn marker', async () => {
  const dir = tmpDir();
  const tok = Tokenizer.fromDir(await qaTokenizer(dir));
  const custom =
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + ':' + m['content'] + '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant:' }}{% endif %}";
  await tok.save(path.join(dir, 'c'), { template: ChatTemplate.custom(custom) });
  const t = ChatTemplate.forModel(Tokenizer.fromDir(path.join(dir, 'c')), path.join(dir, 'c'));
  assert.equal(
    t.render(conversation.slice(0, 2), tok, true),
    '<|im_start|>system:你是一名谨慎的全科医生。<|im_end|><|im_start|>user:高血压常用什么药？<|im_end|><|im_start|>assistant:',
  );
  assert.ok(t.stopIds(tok).includes(tok.tokenToId('<|im_end|>')!));
  assert.throws(() => ChatTemplate.custom('{% for %}'), /does not parse/);
  assert.throws(() => ChatTemplate.builtin('nope'), /unknown chat template "nope"/);
});

// ------------------------------------------------- real templates through every path

/** Qwen2's convention, written as its template does: a default system prompt when none is given. */
const QWEN2_STYLE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}" +
  "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

interface Case {
  name: string;
  tokenizer: string;
  template?: string;
  config?: Record<string, unknown>;
  conv: ChatMessage[];
  expect: RegExp;
}
const CASES: Case[] = [
  {
    name: 'Qwen3 (its own template)',
    tokenizer: 'qwen3',
    conv: conversation.slice(0, 3),
    expect: /^<\|im_start\|>system\n你是一名谨慎的全科医生。<\|im_end\|>\n<\|im_start\|>user\n/,
  },
  {
    name: 'Qwen2 style (default system prompt)',
    tokenizer: 'qwen3',
    config: { chat_template: QWEN2_STYLE },
    conv: conversation.slice(1, 3),
    expect: /^<\|im_start\|>system\nYou are a helpful assistant\.<\|im_end\|>\n<\|im_start\|>user\n高血压/,
  },
  {
    name: 'Llama-3.1 (its own template: BOS and headers)',
    tokenizer: 'llama3_1',
    conv: conversation.slice(0, 3),
    expect: /^<\|begin_of_text\|><\|start_header_id\|>system<\|end_header_id\|>\n\n你是/,
  },
  {
    name: 'Llama-2 (no template of its own: --template llama2)',
    tokenizer: 'llama2',
    template: 'llama2',
    conv: conversation.slice(0, 3),
    expect: /^<s>\[INST\] <<SYS>>\n你是一名谨慎的全科医生。\n<<\/SYS>>\n\n高血压常用什么药？ \[\/INST\]$/,
  },
];

for (const c of CASES) {
  test(`${c.name}: training ids, the server's prompt and the exported files read by @huggingface/tokenizers + jinja agree`, async () => {
    const dir = tmpDir('chimed-tpl-');
    const modelDir = path.join(dir, 'model');
    const src = lenmlDir(c.tokenizer);
    const config = { ...JSON.parse(fs.readFileSync(path.join(src, 'tokenizer_config.json'), 'utf8')), ...c.config };
    const tok = Tokenizer.fromJSON(JSON.parse(fs.readFileSync(path.join(src, 'tokenizer.json'), 'utf8')), config);
    await saveRandomModel(modelDir, tok, { hiddenSize: 8, maxPositions: 512 });
    const cm = await loadChatModel({ model: modelDir, template: c.template });
    const history = c.conv.slice(0, -1);
    // training: the prompt part of the encoded conversation
    const train = cm.template.encodeConversation(cm.tokenizer, c.conv);
    const [start, end] = train.spans.at(-1)!;
    const prompt = train.ids.slice(0, start);
    assert.match(cm.template.render(history, cm.tokenizer, true), c.expect);
    assert.deepEqual(cm.template.encodePrompt(cm.tokenizer, history), prompt);
    if (cm.tokenizer.bosId !== null) assert.equal(prompt.filter((id) => id === cm.tokenizer.bosId).length, 1, 'one BOS, from the template');
    assert.ok(
      cm.template.stopIds(cm.tokenizer).includes(train.ids[end - 1]) || cm.template.stopIds(cm.tokenizer).includes(train.ids[end - 2]),
      'the trained answer ends with a stop token',
    );
    // the server: same prompt length, and its greedy reply is the continuation of the training prompt
    const app = await buildServer({ chat: cm });
    try {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: { model: 'chimed', messages: history, max_tokens: 4, temperature: 0 },
      });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json();
      assert.equal(body.usage.prompt_tokens, prompt.length);
      const [[g]] = generate(cm.model, [prompt], {
        maxNewTokens: 4,
        eosIds: cm.template.stopIds(cm.tokenizer),
        decode: (ids) => cm.tokenizer.decode(ids, { skipSpecialTokens: true }),
      });
      assert.equal(body.choices[0].message.content, g.text);
    } finally {
      await app.close();
    }
    // export hf, then the files alone in the HF reference implementations
    const out = path.join(dir, 'hf');
    const r = runCli(['export', 'hf', '--model', modelDir, '--out', out, ...(c.template ? ['--template', c.template] : [])]);
    assert.equal(r.code, 0, r.stderr);
    const outConfig = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8'));
    const hf = new HfTokenizer(JSON.parse(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8')), outConfig);
    const jinja = new Template(outConfig.chat_template);
    const render = (messages: ChatMessage[], gen: boolean) =>
      jinja.render({
        messages,
        add_generation_prompt: gen,
        bos_token: tokenName(outConfig.bos_token) ?? '',
        eos_token: tokenName(outConfig.eos_token) ?? '',
      });
    assert.deepEqual(hf.encode(render(history, true), { add_special_tokens: false }).ids, prompt);
    assert.deepEqual(hf.encode(render(c.conv, false), { add_special_tokens: false }).ids, train.ids);
    const gen = JSON.parse(fs.readFileSync(path.join(out, 'generation_config.json'), 'utf8'));
    assert.deepEqual(gen.eos_token_id, cm.template.stopIds(cm.tokenizer));
  });
}

test('a model whose template is only in chat_template.jinja is trained, evaluated and served with that template', async () => {
  const dir = tmpDir('chimed-jinja-');
  const tok = Tokenizer.fromDir(await qaTokenizer(dir));
  const jinja =
    "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + eos_token }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";
  const modelDir = path.join(dir, 'model');
  await saveRandomModel(modelDir, tok, { hiddenSize: 16, maxPositions: 256 });
  const cfgFile = path.join(modelDir, 'tokenizer_config.json');
  const { chat_template: _, ...cfg } = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  fs.writeFileSync(path.join(modelDir, 'chat_template.jinja'), jinja);
  const { sft } = qaSet();
  const data = writeJsonl(path.join(dir, 'sft.jsonl'), sft);
  // trained: the stage output carries the same file, the config still has none
  const r = runCli([
    'train',
    'sft',
    '--model',
    modelDir,
    '--data',
    data,
    '--out',
    path.join(dir, 'run'),
    '--max-steps',
    '2',
    '--batch-size',
    '2',
    '--eval-fraction',
    '0.2',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const final = path.join(dir, 'run/stages/sft/final');
  assert.equal(fs.readFileSync(path.join(final, 'chat_template.jinja'), 'utf8'), jinja);
  assert.equal(JSON.parse(fs.readFileSync(path.join(final, 'tokenizer_config.json'), 'utf8')).chat_template, undefined);
  const cm = await loadChatModel({ model: final });
  assert.equal(cm.template.source, jinja);
  assert.equal(cm.template.name, path.join(final, 'chat_template.jinja'));
  const history: ChatMessage[] = [{ role: 'user', content: sft[0].prompt }];
  const prompt = cm.template.encodePrompt(cm.tokenizer, history);
  assert.deepEqual(prompt, cm.tokenizer.encode(`<|user|>${sft[0].prompt}<|endoftext|><|assistant|>`));
  assert.deepEqual(cm.template.stopIds(cm.tokenizer), [cm.tokenizer.eosId]);
  // evaluated through the chat template
  const e = runCli(['eval', 'gen', '--model', final, '--data', data, '--limit', '2', '--max-new-tokens', '4', '--json']);
  assert.equal(e.code, 0, e.stderr);
  assert.equal(JSON.parse(e.stdout).n, 2);
  // served: the prompt is the template's
  const app = await buildServer({ chat: cm });
  try {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model: 'chimed', messages: history, max_tokens: 2, temperature: 0 },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().usage.prompt_tokens, prompt.length);
  } finally {
    await app.close();
  }
});

test('a model without a template chats only with a built-in chosen by name; the error lists them', async () => {
  const tok = Tokenizer.fromDir(lenmlDir('llama2'));
  assert.equal(tok.chatTemplate, null);
  const none = ChatTemplate.forModel(tok, lenmlDir('llama2'));
  assert.equal(none.present, false);
  assert.throws(
    () => none.encodePrompt(tok, conversation.slice(1, 2)),
    /models.*has no chat template .*--template NAME .*chatml, vicuna, llama2/s,
  );
  assert.deepEqual(none.stopIds(tok), [tok.eosId], 'export still knows the eos');
  const chosen = ChatTemplate.forModel(tok, lenmlDir('llama2'), 'llama2');
  assert.equal(
    chosen.render(conversation.slice(1, 3), tok, false),
    '<s>[INST] 高血压常用什么药？ [/INST] 高血压常用氨氯地平，请遵医嘱。 </s>',
  );
  // the CLI: a clear error, and the explicit choice works
  const dir = tmpDir('chimed-notpl-');
  const modelDir = path.join(dir, 'model');
  await saveRandomModel(modelDir, tok, { hiddenSize: 8, maxPositions: 128 });
  const bad = runCli(['generate', '--model', modelDir, '--prompt', '头痛怎么办？', '--max-new-tokens', '2']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /has no chat template.*--template NAME.*chatml, vicuna, llama2/s);
  const ok = runCli(['generate', '--model', modelDir, '--prompt', '头痛怎么办？', '--max-new-tokens', '2', '--template', 'llama2']);
  assert.equal(ok.code, 0, ok.stderr);
  // a model with its own template keeps it: no silent ChatML
  assert.match(ChatTemplate.forModel(Tokenizer.fromDir(lenmlDir('llama3_1')), lenmlDir('llama3_1')).source, /start_header_id/);
});
