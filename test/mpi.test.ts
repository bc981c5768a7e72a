// Data-parallel training over MPI (Open MPI's mpirun on this machine): N ranks give the
// 1-process run's losses and weights, over shared memory and over TCP; a killed rank ends
// the job quickly, naming the rank, with the last checkpoint intact; a build without MPI
// refuses to run as one of several ranks.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { verifyChecksums } from '../src/io/checksums.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { WEIGHT_TOLERANCE, weightsDivergence, weightSums } from '../src/train/trainer.js';
import { ptFixture, ptFixtureArgs, qaSet, untrainedChatModel, writeJsonl } from './fixtures.js';
import { medicalText, repoRoot, runCli, tmpDir, trainingSeed } from './helpers.js';

const bin = path.join(repoRoot, 'bin/chimed.js');

/**
 * mpirun's arguments on one machine: root is allowed (containers), more ranks than cores
 * (--oversubscribe), no single-copy mechanism (CMA is often forbidden in containers), and one
 * kernel thread per rank.
 */
function mpirunArgs(np: number, args: string[], o: { tcp?: boolean; env?: string[] } = {}): string[] {
  return [
    '--allow-run-as-root',
    '--oversubscribe',
    '--mca',
    'btl_vader_single_copy_mechanism',
    'none',
    ...(o.tcp ? ['--mca', 'btl', 'self,tcp'] : []),
    ...['OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'CHIMED_QUIET', ...(o.env ?? [])].flatMap((v) => ['-x', v]),
    '-np',
    String(np),
    process.execPath,
    bin,
    ...args,
  ];
}

const mpiEnv = (extra: Record<string, string> = {}) => ({
  ...process.env,
  OMPI_ALLOW_RUN_AS_ROOT: '1',
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
  OMP_NUM_THREADS: '1',
  OMP_WAIT_POLICY: 'passive',
  CHIMED_QUIET: '1',
  ...extra,
});

function mpirun(np: number, args: string[], o: { tcp?: boolean; env?: Record<string, string> } = {}) {
  const r = spawnSync('mpirun', mpirunArgs(np, args, { tcp: o.tcp, env: Object.keys(o.env ?? {}) }), {
    encoding: 'utf8',
    env: mpiEnv(o.env),
    timeout: 120_000,
  });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')
    throw new Error('mpirun not found: install openmpi-bin libopenmpi-dev (and rebuild the addon: npm run install)');
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ptSetup = () => ptFixture(tmpDir('chimed-mpi-'));

// global batch 8: 2 micro-batches of 4, one per rank under -np 2
const ptArgs = (dir: string, out: string, extra: string[] = []) =>
  ptFixtureArgs(dir, out, ['--grad-accum', '2', '--seed', String(trainingSeed(7)), ...extra]);

function stepLosses(runDir: string, stage: string): Map<number, number> {
  return new Map(
    fs
      .readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((r) => r.stage === stage && r.loss !== undefined)
      .map((r) => [r.step as number, r.loss as number]),
  );
}

async function maxWeightDiff(a: string, b: string): Promise<number> {
  const [x, y] = await Promise.all([readSafetensors(a), readSafetensors(b)]);
  assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort());
  let worst = 0;
  for (const [name, t] of x) {
    const u = y.get(name)!.data;
    for (let i = 0; i < t.data.length; i++) worst = Math.max(worst, Math.abs(t.data[i] - u[i]));
  }
  return worst;
}

function assertSameLosses(one: Map<number, number>, two: Map<number, number>, steps: number): void {
  assert.equal(one.size, steps);
  assert.deepEqual([...two.keys()], [...one.keys()]);
  for (const [step, loss] of one) assert.ok(Math.abs(loss - two.get(step)!) < 1e-4, `step ${step}: loss ${loss} vs ${two.get(step)}`);
}

// Final weights after 12 steps differ only by the order gradients are summed in. Measured max
// |dw| over seeds 7-15 (CHIMED_TEST_SEED): whole micro-batches per rank 0 to 1.5e-7; rows of
// one micro-batch per rank 3e-8 to 7.2e-6 (the GEMMs then sum fewer rows each, and AdamW's
// division by the gradient's RMS turns a rounding difference in a near-zero gradient into a
// step of up to lr). 5e-5 leaves margin; a rank on other data moves weights by ~1e-3 (lr 3e-3).
const WEIGHT_EPS = 5e-5;

// Over shared memory each rank takes one of the 2 micro-batches of 4; over TCP the global batch
// is one micro-batch of 8 whose rows the ranks split (4 each), so both ways of sharing are run.
for (const tcp of [false, true]) {
  const shape = tcp ? ['--batch-size', '8', '--grad-accum', '1'] : [];
  test(`-np 2 with 4 per rank trains as -np 1 with a global batch of 8 (${tcp ? 'TCP, rows of one micro-batch' : 'shared memory, whole micro-batches'})`, async (t) => {
    const dir = ptSetup();
    const steps = ['--max-steps', '12', '--save-every', '100', ...shape];
    const one = runCli([...ptArgs(dir, 'one', steps), '--threads', '1']);
    assert.equal(one.code, 0, one.stderr);
    const two = mpirun(2, ptArgs(dir, 'two', steps), { tcp });
    assert.equal(two.code, 0, two.stderr);
    // rank 0 alone prints and writes: one result line, one metrics record per step
    assert.equal(two.stdout.match(/pt done: 12 steps/g)?.length, 1, two.stdout);
    assertSameLosses(stepLosses(path.join(dir, 'one'), 'pt'), stepLosses(path.join(dir, 'two'), 'pt'), 12);
    const dw = await maxWeightDiff(
      path.join(dir, 'one/stages/pt/final/model.safetensors'),
      path.join(dir, 'two/stages/pt/final/model.safetensors'),
    );
    t.diagnostic(`max |weight difference| after 12 steps: ${dw}`);
    assert.ok(dw < WEIGHT_EPS, `final weights differ by ${dw}`);
    const engine = JSON.parse(fs.readFileSync(path.join(dir, 'two/stages/pt/engine.json'), 'utf8'));
    assert.equal(engine.ranks, 2);
  });
}

test('a LoRA SFT run resumes under another number of ranks (2 to 1, 1 to 2) with the losses of an uninterrupted run', async () => {
  const dir = tmpDir('chimed-mpi-');
  await untrainedChatModel(dir, {
    config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 256 },
    seed: '3',
    name: 'base',
  });
  const data = writeJsonl(path.join(dir, 'sft.jsonl'), qaSet().sft);
  const args = (out: string) => [
    'train',
    'sft',
    '--data',
    data,
    '--model',
    path.join(dir, 'base'),
    '--out',
    path.join(dir, out),
    '--lora',
    '--eval-fraction',
    '0',
    '--batch-size',
    '2',
    '--grad-accum',
    '4',
    '--lr',
    '3e-3',
    '--max-steps',
    '10',
    '--save-every',
    '5',
    '--seed',
    '5',
  ];
  const ref = runCli([...args('ref'), '--threads', '1']);
  assert.equal(ref.code, 0, ref.stderr);
  const two = mpirun(2, args('run'));
  assert.equal(two.code, 0, two.stderr);
  const expected = stepLosses(path.join(dir, 'ref'), 'sft');
  assertSameLosses(expected, stepLosses(path.join(dir, 'run'), 'sft'), 10);
  // each run resumed from its step-5 checkpoint as if it had stopped there, with the other
  // number of ranks: rank 0 reads the checkpoint and every rank must start from its weights
  for (const [run, resume] of [
    ['run', () => runCli([...args('run'), '--threads', '1'])],
    ['ref', () => mpirun(2, args('ref'))],
  ] as const) {
    const stage = path.join(dir, run, 'stages/sft');
    // (a stage stopped there has neither its final weights nor its done.json)
    fs.rmSync(path.join(stage, 'final'), { recursive: true });
    fs.rmSync(path.join(stage, 'done.json'));
    assert.ok(fs.existsSync(path.join(stage, 'checkpoint-5')));
    const resumed = resume();
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resumed at 5/);
    assertSameLosses(expected, stepLosses(path.join(dir, run), 'sft'), 10);
  }
});

test('chimed run under -np 2: rank 0 builds and writes, evaluation is split and gathered as one process scores it', () => {
  const dir = tmpDir('chimed-mpi-');
  fs.writeFileSync(path.join(dir, 'pt.txt'), medicalText(60));
  fs.writeFileSync(path.join(dir, 'held.txt'), medicalText(8));
  const mcq = ['A', 'B', 'C', 'D'].flatMap((answer, i) =>
    ['高血压', '糖尿病', '肺炎'].map((d, j) => ({
      id: `q${i}-${j}`,
      question: `${d}的常用药物是？`,
      options: { A: '氨氯地平', B: '二甲双胍', C: '阿莫西林', D: '布洛芬' },
      answer,
    })),
  );
  writeJsonl(path.join(dir, 'mcq.jsonl'), mcq);
  fs.writeFileSync(
    path.join(dir, 'run.yaml'),
    JSON.stringify({
      seed: 3,
      data: { sources: [{ path: 'pt.txt', stages: ['pt'] }] },
      tokenizer: { bytes: true },
      model: {
        config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 256 },
      },
      stages: [{ type: 'pt', block_size: 32, batch_size: 2, grad_accum: 2, max_steps: 4 }],
      eval: { files: { ppl: ['held.txt'], mcq: 'mcq.jsonl' }, mcq: { k_shot: 0 }, gen: false, ner: false, pref: false, scale: false },
    }),
  );
  const config = path.join(dir, 'run.yaml');
  const one = runCli(['run', config, '--out', path.join(dir, 'one')], { env: { OMP_NUM_THREADS: '1' } });
  assert.equal(one.code, 0, one.stderr);
  const two = mpirun(2, ['run', config, '--out', path.join(dir, 'two')]);
  assert.equal(two.code, 0, two.stderr);
  assert.equal(two.stdout.match(/^report: /gm)?.length, 1, two.stdout);
  for (const line of [/eval base: done/g, /pt: [\d,]+ training tokens/g])
    assert.equal(two.stderr.match(line)?.length, 1, `progress lines come from rank 0 alone: ${line}\n${two.stderr}`);
  // the base model is the same on both: each item's score must be exactly one process's, in its order
  const items = (run: string, stage: string) =>
    fs
      .readFileSync(path.join(dir, run, 'eval', `${stage}.items.jsonl`), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  assert.deepEqual(items('two', 'base'), items('one', 'base'));
  assertSameLosses(stepLosses(path.join(dir, 'one'), 'pt'), stepLosses(path.join(dir, 'two'), 'pt'), 4);
  // after training the weights differ by rounding only (the gradient sum's order)
  const [a, b] = [items('one', 'pt'), items('two', 'pt')];
  assert.deepEqual(
    b.map((x) => x.id),
    a.map((x) => x.id),
  );
  a.filter((x) => x.eval === 'ppl').forEach((x, i) =>
    assert.ok(Math.abs(x.nll - b[i].nll) <= 1e-4 * Math.abs(x.nll), `${x.id}: ${x.nll} vs ${b[i].nll}`),
  );
});

/** The pids of mpirun's rank processes, by OMPI_COMM_WORLD_RANK. */
function rankPids(mpirunPid: number): Map<number, number> {
  const out = new Map<number, number>();
  const children = fs.readFileSync(`/proc/${mpirunPid}/task/${mpirunPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  for (const pid of children.map(Number)) {
    try {
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const rank = env.find((e) => e.startsWith('OMPI_COMM_WORLD_RANK='));
      if (rank) out.set(Number(rank.split('=')[1]), pid);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

test('killing one rank ends every rank within 30 s, naming it, and the last checkpoint resumes', async () => {
  const dir = ptSetup();
  const args = ptArgs(dir, 'run', ['--max-steps', '60', '--save-every', '2']);
  const child = spawn('mpirun', mpirunArgs(2, args), { env: mpiEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stage = path.join(dir, 'run/stages/pt');
  // kill rank 1 once a checkpoint exists (polling the file system: nothing else announces it)
  let killedAt = 0;
  while (!killedAt) {
    await new Promise((r) => setTimeout(r, 20));
    if (child.exitCode !== null) assert.fail(`the run ended before a checkpoint was written:\n${output}`);
    if (!fs.existsSync(path.join(stage, 'checkpoint-2'))) continue;
    const pid = rankPids(child.pid!).get(1);
    if (pid === undefined) continue;
    process.kill(pid, 'SIGKILL');
    killedAt = Date.now();
  }
  const code = await exited;
  const seconds = (Date.now() - killedAt) / 1000;
  assert.notEqual(code, 0, output);
  assert.ok(seconds < 30, `mpirun took ${seconds} s to end the job`);
  assert.match(output, /rank 1/, output);
  assert.ok(!fs.existsSync(path.join(stage, 'final')));
  // the newest checkpoint verifies and a re-run (one process) resumes from it to the end
  const ckpts = fs.readdirSync(stage).filter((d) => /^checkpoint-\d+$/.test(d));
  const newest = ckpts.sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1])).at(-1)!;
  assert.deepEqual(await verifyChecksums(path.join(stage, newest)), []);
  const resumed = runCli([...args, '--threads', '1']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`resumed at ${newest.split('-')[1]}`));
});

test('an error on the ranks ends the job with MPI_Abort, naming the rank', () => {
  const dir = ptSetup();
  // 2 ranks cannot share a global batch of 3 sequences: every rank raises, and aborts the job
  const r = mpirun(2, ptArgs(dir, 'run', ['--max-steps', '4', '--grad-accum', '1', '--batch-size', '3']));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /rank [01] of 2 failed: pt: 2 ranks cannot share a global batch of 3 \(batch_size 3 x grad_accum 1\)/);
});

test('a build without MPI refuses to run as one of several ranks and writes nothing', () => {
  const dir = ptSetup();
  // CHIMED_NO_MPI=1 at run time makes the loader act as a build without MPI (engine/dist.ts)
  const r = mpirun(2, ptArgs(dir, 'run', ['--max-steps', '4']), { env: { CHIMED_NO_MPI: '1' } });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /started as one of 2 ranks \(mpirun -np 2\), but this chimed has no MPI: CHIMED_NO_MPI is set/);
  assert.ok(!fs.existsSync(path.join(dir, 'run')), 'nothing may be written');
  const version = runCli(['--version'], { env: { CHIMED_NO_MPI: '1' } });
  assert.match(version.stdout, /MPI: none \(CHIMED_NO_MPI is set/);
  assert.match(runCli(['--version']).stdout, /MPI: Open MPI v\d/);
});

test('the weight check finds the rank and the parameters that differ', () => {
  const w = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
  const same = weightsDivergence([weightSums(w), weightSums(w)], w.length);
  assert.equal(same.worst, 0);
  const drift = Float32Array.from(w);
  drift[10] *= 1 + 1e-7;
  assert.ok(weightsDivergence([weightSums(w), weightSums(drift)], w.length).worst <= WEIGHT_TOLERANCE);
  const off = Float32Array.from(w);
  off[700] += 0.5;
  const d = weightsDivergence([weightSums(w), weightSums(w), weightSums(off)], w.length);
  assert.ok(d.worst > WEIGHT_TOLERANCE);
  assert.equal(d.rank, 2);
  assert.ok(d.from <= 700 && 700 < d.to, `${d.from}..${d.to}`);
  const nan = Float32Array.from(w);
  nan[3] = NaN;
  // as the sums cross ranks: JSON, where NaN becomes null
  const sent = JSON.parse(JSON.stringify([weightSums(w), weightSums(nan)]));
  assert.ok(Number.isNaN(weightsDivergence(sent, w.length).worst));
});
