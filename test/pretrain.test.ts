import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { nativeKernels } from '../src/engine/native.js';
import { writeChecksums } from '../src/io/checksums.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { RewardModel } from '../src/model/reward.js';
import { ptFixture, ptFixtureArgs, qaTokenizer, TINY_PT_MODEL } from './fixtures.js';
import { runCli, runCliKilledWhen, tmpDir, trainingSeed } from './helpers.js';

const setup = () => ptFixture(tmpDir());

const ptArgs = (dir: string, run: string, extra: string[] = []) =>
  ptFixtureArgs(dir, run, ['--warmup-ratio', '0.1', '--threads', '2', '--seed', String(trainingSeed(42)), ...extra]);

function losses(metricsFile: string): { step: number; loss: number }[] {
  return fs
    .readFileSync(metricsFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((r) => r.loss !== undefined)
    .map((r) => ({ step: r.step, loss: r.loss }));
}

test('continued pre-training lowers the loss and reports held-out perplexity', (t) => {
  const dir = setup();
  const r = runCli(ptArgs(dir, 'run', ['--max-steps', '40', '--eval-every', '20']));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /held-out perplexity \d+\.\d+/);
  const metrics = path.join(dir, 'run/metrics.jsonl');
  const ls = losses(metrics);
  const evals = fs
    .readFileSync(metrics, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((x) => x.eval_ppl);
  t.diagnostic(
    `seed ${trainingSeed(42)}: loss ${ls[0].loss} -> ${ls.at(-1)!.loss} (ratio ${ls.at(-1)!.loss / ls[0].loss}); held-out loss ${evals.map((e) => e.eval_loss).join(' -> ')}`,
  );
  assert.equal(ls.length, 40);
  // seeds 1-5 and 42: loss ratio 0.633-0.645, held-out loss down by 0.40-0.45 from step 20 to 40
  assert.ok(ls.at(-1)!.loss < ls[0].loss * 0.75, `loss ${ls[0].loss} -> ${ls.at(-1)!.loss}`);
  assert.equal(evals.length, 2);
  assert.ok(evals[1].eval_loss < evals[0].eval_loss - 0.2, `held-out loss ${evals[0].eval_loss} -> ${evals[1].eval_loss}`);
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json'])
    assert.ok(fs.existsSync(path.join(dir, 'run/stages/pt/final', f)), f);
  // the exported model scores text through the CLI
  const s = runCli(['score', '--model', path.join(dir, 'run/stages/pt/final'), '--text', '高血压患者', '--json']);
  assert.equal(s.code, 0, s.stderr);
  const out = JSON.parse(s.stdout);
  assert.equal(out.logprobs.length, out.ids.length - 1);
  assert.ok(out.logprobs.every((x: number) => x < 0 && Number.isFinite(x)));
});

test('a run killed mid-training resumes from its last checkpoint and reproduces the same losses', async () => {
  const dir = setup();
  const extra = ['--max-steps', '24', '--save-every', '6'];
  assert.equal(runCli(ptArgs(dir, 'full', extra)).code, 0);
  const reference = losses(path.join(dir, 'full/metrics.jsonl'));

  const metrics = path.join(dir, 'killed/metrics.jsonl');
  await runCliKilledWhen(ptArgs(dir, 'killed', extra), () => fs.existsSync(metrics) && losses(metrics).length >= 15);
  const partial = losses(metrics);
  assert.ok(partial.length >= 15 && partial.length < 24, `killed after ${partial.length} steps`);
  const stageDir = path.join(dir, 'killed/stages/pt');
  assert.ok(fs.readdirSync(stageDir).some((n) => n === 'checkpoint-12'));

  const r = runCli(ptArgs(dir, 'killed', extra));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /resumed at 12/);
  assert.deepEqual(losses(metrics), reference);
  assert.deepEqual(
    fs.readdirSync(stageDir).filter((n) => n.includes('.tmp-')),
    [],
  );
});

test('Ctrl-C (SIGINT) stops after the current step with a checkpoint; the re-run resumes there', async () => {
  const dir = setup();
  const extra = ['--max-steps', '400', '--save-every', '1000'];
  const metrics = path.join(dir, 'int/metrics.jsonl');
  const r = await runCliKilledWhen(ptArgs(dir, 'int', extra), () => fs.existsSync(metrics) && losses(metrics).length >= 10, 'SIGINT');
  assert.equal(r.code, 1);
  const m = /stopped at step (\d+) on request; checkpoint saved/.exec(r.stderr);
  assert.ok(m, r.stderr);
  const step = Number(m[1]);
  assert.ok(step < 400 && fs.existsSync(path.join(dir, 'int/stages/pt', `checkpoint-${step}`)));
  const again = runCli(ptArgs(dir, 'int', extra));
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`resumed at ${step}`));
});

test('a diverging run stops with a clear error and keeps its last checkpoint', () => {
  const dir = setup();
  const r = runCli(ptArgs(dir, 'run', ['--max-steps', '12', '--save-every', '1', '--lr', '1e30', '--warmup-ratio', '0', '--clip', '0']));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not finite/);
  const stageDir = path.join(dir, 'run/stages/pt');
  const ckpts = fs.readdirSync(stageDir).filter((n) => n.startsWith('checkpoint-'));
  assert.ok(ckpts.length >= 1, 'a checkpoint from before the divergence survives');
  for (const c of ckpts) assert.ok(fs.existsSync(path.join(stageDir, c, 'trainer_state.json')));
});

/** Rewrites a checkpoint file through `edit`, then its checksums, as a consistent but wrong checkpoint would be. */
async function rewriteCheckpoint(ckpt: string, edit: () => Promise<void> | void): Promise<void> {
  await edit();
  await writeChecksums(ckpt);
}

function editJson(file: string, change: Record<string, unknown>): void {
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), ...change }));
}

/**
 * Re-runs a stage as a crash after its last checkpoint leaves it (checkpoints, no done.json),
 * so it resumes rather than being skipped as finished.
 */
function rerunUnfinished(dir: string, extra: string[]) {
  fs.rmSync(path.join(dir, 'run/stages/pt/done.json'), { force: true });
  return runCli(ptArgs(dir, 'run', extra));
}

/** A finished 24-step run that kept checkpoint-12 and checkpoint-18, and its losses. */
function checkpointedRun() {
  const dir = setup();
  const extra = ['--max-steps', '24', '--save-every', '6'];
  assert.equal(runCli(ptArgs(dir, 'run', extra)).code, 0);
  const metrics = path.join(dir, 'run/metrics.jsonl');
  return { dir, extra, metrics, reference: losses(metrics), stageDir: path.join(dir, 'run/stages/pt') };
}

test('a corrupt newest checkpoint (flipped byte, NaN in optimizer state) is moved aside and the run resumes from the previous one', async () => {
  const { dir, extra, metrics, reference, stageDir } = checkpointedRun();
  const ckpt = (n: number) => path.join(stageDir, `checkpoint-${n}`);

  // a flipped byte inside the optimizer's tensors: the file still parses, the checksum does not match
  const opt = path.join(ckpt(18), 'optimizer.safetensors');
  const bytes = fs.readFileSync(opt);
  bytes[bytes.length - 101] ^= 0x40;
  fs.writeFileSync(opt, bytes);
  // leftovers of atomic writes killed mid-way: removed (or restored) when the stage starts
  fs.mkdirSync(path.join(stageDir, 'checkpoint-30.tmp-4242-0123456789ab'));
  fs.writeFileSync(path.join(stageDir, 'done.json.tmp-4242-0123456789ab'), '{"partial');
  fs.renameSync(path.join(stageDir, 'final'), path.join(stageDir, 'final.old-4242-abcdef012345'));
  let r = rerunUnfinished(dir, extra);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /checkpoint-18\/optimizer\.safetensors: sha256 [0-9a-f]+ does not match/);
  assert.match(r.stderr, /moved it to .*checkpoint-18\.invalid-\d+/);
  assert.match(r.stdout, /resumed at 12/);
  assert.deepEqual(losses(metrics), reference, 'the fallback reproduces the uninterrupted run');
  assert.match(r.stderr, /removed .*checkpoint-30\.tmp-4242-0123456789ab/);
  assert.match(r.stderr, /restored .*final from .*final\.old-4242/);
  assert.deepEqual(
    fs.readdirSync(stageDir).filter((n) => /\.(tmp|old)-/.test(n)),
    [],
  );
  assert.equal(
    fs.readdirSync(stageDir).filter((n) => n.includes('.invalid-')).length,
    1,
    'the broken checkpoint is kept aside, not deleted',
  );

  // NaN in the optimizer state, written with matching checksums: found by the value check
  await rewriteCheckpoint(ckpt(18), async () => {
    const t = await readSafetensors(opt);
    t.get('exp_avg')!.data[7] = NaN;
    await writeSafetensors(
      opt,
      [...t].map(([name, v]) => ({ name, shape: v.shape, data: v.data })),
      { step: '18' },
    );
  });
  r = rerunUnfinished(dir, extra);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /optimizer\.safetensors: exp_avg\[7\] is NaN/);
  assert.match(r.stdout, /resumed at 12/);
  assert.deepEqual(losses(metrics), reference);
});

test('trainer_state with an impossible global_step (1400 of 24, "abc") is invalid, not a reason to skip training; with no valid checkpoint the run stops', async () => {
  const { dir, extra, metrics, reference, stageDir } = checkpointedRun();
  const state = (n: number) => path.join(stageDir, `checkpoint-${n}`, 'trainer_state.json');
  await rewriteCheckpoint(path.dirname(state(18)), () => editJson(state(18), { global_step: 1400 }));
  await rewriteCheckpoint(path.dirname(state(12)), () => editJson(state(12), { global_step: 'abc' }));
  let r = rerunUnfinished(dir, extra);
  assert.equal(r.code, 1, 'nothing silently skipped');
  assert.match(r.stderr, /checkpoint-18\/trainer_state\.json: global_step 1400 is not the step of checkpoint-18 within 1\.\.23/);
  assert.match(r.stderr, /checkpoint-12\/trainer_state\.json: global_step "abc"/);
  assert.match(r.stderr, /no checkpoint in .* can be resumed from/);
  assert.equal(losses(metrics).length, 24, 'metrics are not wiped');
  // the broken ones are aside: a re-run starts the stage over and reproduces it
  r = rerunUnfinished(dir, extra);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /resumed at/);
  assert.deepEqual(losses(metrics), reference);
  assert.equal(fs.readdirSync(stageDir).filter((n) => n.includes('.invalid-')).length, 2);

  // a trainer_state.json that is not JSON: named by the checksum, then by the parse
  fs.writeFileSync(state(18), '{"stage": "pt", "global_st');
  r = rerunUnfinished(dir, extra);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /checkpoint-18\/trainer_state\.json: sha256/);
  assert.match(r.stdout, /resumed at 12/);
});

test('a model folder with a NaN or infinite weight is refused on load, naming the tensor', async () => {
  const dir = setup();
  const m = path.join(dir, 'm');
  const tok = await qaTokenizer(dir, 300);
  assert.equal(runCli(['init', '--config', path.join(dir, 'model.json'), '--tokenizer', tok, '--out', m]).code, 0);
  const st = path.join(m, 'model.safetensors');
  const t = await readSafetensors(st);
  t.get('model.layers.1.mlp.up_proj.weight')!.data[5] = NaN;
  t.get('model.layers.1.mlp.up_proj.weight')!.data[9] = Infinity;
  await writeSafetensors(
    st,
    [...t].map(([name, v]) => ({ name, shape: v.shape, data: v.data })),
    { format: 'pt' },
  );
  for (const args of [
    ['score', '--model', m, '--ids', '1,2,3'],
    ['generate', '--model', m, '--prompt', '高血压', '--max-new-tokens', '2'],
  ]) {
    const r = runCli(args);
    assert.equal(r.code, 1, `${args[0]}: ${r.stdout}`);
    assert.match(r.stderr, /model\.layers\.1\.mlp\.up_proj\.weight holds NaN at index 5 \(2 of \d+ values are NaN or infinite\)/, args[0]);
    assert.match(r.stderr, new RegExp(m.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'the folder is named');
  }
  // the reward model's loader too (it fills its own store)
  await assert.rejects(RewardModel.fromCausalLm(m, nativeKernels, false, 1), /model\.layers\.1\.mlp\.up_proj\.weight holds NaN at index 5/);
});

test('pre-tokenised token-id files (.bin) train directly; ids outside the vocabulary are refused', () => {
  const dir = setup();
  const ids = Uint32Array.from({ length: 4000 }, (_, i) => (i * 7919) % 250);
  fs.writeFileSync(path.join(dir, 'train.bin'), new Uint8Array(ids.buffer));
  fs.writeFileSync(path.join(dir, 'eval.bin'), new Uint8Array(ids.slice(0, 600).buffer));
  const args = ptArgs(dir, 'bin', ['--max-steps', '4']).map((x) =>
    x.endsWith('corpus.txt') ? `${path.join(dir, 'train.bin')},${path.join(dir, 'eval.bin')}` : x,
  );
  const r = runCli(args);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /held-out perplexity/);
  fs.writeFileSync(path.join(dir, 'bad.bin'), new Uint8Array(Uint32Array.from([1, 2, 999]).buffer));
  const bad = runCli(ptArgs(dir, 'bad', ['--max-steps', '2']).map((x) => (x.endsWith('corpus.txt') ? path.join(dir, 'bad.bin') : x)));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /bad\.bin: token id 999 at position 2 is outside the vocabulary/);
});

test('bad inputs get errors naming the file and the problem', () => {
  const dir = setup();
  fs.writeFileSync(path.join(dir, 'gbk.txt'), Buffer.from([0xb8, 0xdf, 0xd1, 0xaa, 0xd1, 0xb9, 0x0a])); // 高血压 in GBK
  let r = runCli(ptArgs(dir, 'a', ['--max-steps', '2']).map((x) => (x.endsWith('corpus.txt') ? path.join(dir, 'gbk.txt') : x)));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /gbk\.txt: not valid UTF-8/);

  fs.writeFileSync(path.join(dir, 'empty.txt'), '\n\n');
  r = runCli(ptArgs(dir, 'b', ['--max-steps', '2']).map((x) => (x.endsWith('corpus.txt') ? path.join(dir, 'empty.txt') : x)));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /empty\.txt: no text to train on/);

  fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ ...TINY_PT_MODEL, num_attention_heads: 5 }));
  r = runCli(['init', '--config', path.join(dir, 'bad.json'), '--out', path.join(dir, 'm')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad\.json: num_attention_heads \(5\) does not divide hidden_size \(32\)/);
  assert.ok(!fs.existsSync(path.join(dir, 'm')));

  r = runCli(['init', '--config', path.join(dir, 'model.json'), '--out', path.join(dir, 'm')]);
  assert.equal(r.code, 0, r.stderr);
  const cfg = path.join(dir, 'm/config.json');
  const good = fs.readFileSync(cfg, 'utf8');
  fs.writeFileSync(cfg, JSON.stringify({ ...JSON.parse(good), intermediate_size: 48 }));
  r = runCli(['score', '--model', path.join(dir, 'm'), '--ids', '1,2,3']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /mlp\.gate_proj\.weight has shape \[64,32\] but the config implies \[48,32\]/);

  fs.writeFileSync(cfg, good);
  const st = path.join(dir, 'm/model.safetensors');
  fs.truncateSync(st, fs.statSync(st).size - 100);
  r = runCli(['score', '--model', path.join(dir, 'm'), '--ids', '1,2,3']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /model\.safetensors/);
  assert.match(r.stderr, /truncat|beyond|exceed|short/i);

  r = runCli([
    'train',
    'pt',
    '--data',
    path.join(dir, 'corpus.txt'),
    '--out',
    path.join(dir, 'c'),
    '--config',
    path.join(dir, 'model.json'),
    '--block-size',
    '64',
    '--lr',
    'fast',
  ]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--lr: expected a number, got "fast"/);
});
