/**
 * GEMM dispatch: the shape classes, the choice between the built-in GEMM and OpenBLAS
 * (environment, per-machine cache, measurement), pinning, and the trainer recording the choice
 * and restoring it on resume so that a resumed run is bit-identical.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  chooseBackends,
  decideGemmChoice,
  engineRecord,
  gemmCachePath,
  gemmChoice,
  gemmMachine,
  restoreEngineRecord,
  setGemmChoice,
  type GemmBackends,
  type GemmMachine,
  type GemmMeasurement,
} from '../src/engine/gemm-choice.js';
import { gemmBuiltin, gemmClassOf, gemmOpenblas, getThreads, nativeInfo, nativeKernels, setThreads } from '../src/engine/native.js';
import { weightedSum } from '../src/engine/ops.js';
import { referenceKernels } from '../src/engine/reference.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { parseModelConfig } from '../src/model/config.js';
import { Llama, sequentialPositions } from '../src/model/llama.js';
import { MetricsLog } from '../src/train/metrics.js';
import { Trainer, trainerDefaults, type TrainTask } from '../src/train/trainer.js';
import { tmpDir } from './helpers.js';

const haveBlas = nativeInfo().openblas !== null;
const classes = Object.keys(gemmChoice().backends);
const all = (backend: 'builtin' | 'openblas'): GemmBackends => Object.fromEntries(classes.map((c) => [c, backend]));
/** The table a build can run that differs most from the built-in-only one. */
const other: GemmBackends = all(haveBlas ? 'openblas' : 'builtin');

function randomF32(n: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
}

describe('shape classes', () => {
  test('transposition, narrow / shallow / small / large, few rows', () => {
    assert.equal(gemmClassOf(false, false, 2048, 2048, 2048), 'NN-large');
    assert.equal(gemmClassOf(false, true, 4096, 1536, 512), 'NT-large');
    assert.equal(gemmClassOf(true, false, 1536, 512, 4096), 'TN-large');
    assert.equal(gemmClassOf(true, true, 100, 100, 100), 'TT-small');
    assert.equal(gemmClassOf(false, true, 32, 1536, 512), 'NT-small');
    assert.equal(gemmClassOf(false, true, 4096, 16, 512), 'NT-narrow');
    assert.equal(gemmClassOf(false, false, 4096, 512, 8), 'NN-shallow');
    assert.equal(gemmClassOf(false, true, 8, 32000, 512), 'few-rows');
    assert.equal(classes.length, 16);
  });
});

describe('dispatch', () => {
  // large, small, narrow and shallow products, each transposition
  const shapes: [number, number, number][] = [
    [300, 260, 520],
    [40, 70, 90],
    [200, 20, 300],
    [150, 300, 24],
  ];
  for (const backend of ['builtin', 'openblas'] as const)
    test(`pinned to ${backend}: gemm is exactly that path${backend === 'openblas' && !haveBlas ? ' (this build has no OpenBLAS: refused)' : ''}`, () => {
      if (backend === 'openblas' && !haveBlas) {
        assert.throws(() => setGemmChoice(all('openblas')), /has no OpenBLAS/);
        assert.throws(
          () => gemmOpenblas(false, false, 1, 1, 1, 1, new Float32Array(1), new Float32Array(1), 0, new Float32Array(1)),
          /no OpenBLAS/,
        );
        return;
      }
      const direct = backend === 'builtin' ? gemmBuiltin : gemmOpenblas;
      const rng = new Rng(3);
      setGemmChoice(all(backend));
      try {
        assert.equal(gemmChoice().source, 'set');
        for (const [M, N, K] of shapes)
          for (const tA of [false, true])
            for (const tB of [false, true]) {
              const A = randomF32(M * K, rng),
                B = randomF32(K * N, rng),
                C0 = randomF32(M * N, rng);
              const viaGemm = C0.slice(),
                viaPath = C0.slice();
              nativeKernels.gemm(tA, tB, M, N, K, 0.7, A, B, 0.5, viaGemm);
              direct(tA, tB, M, N, K, 0.7, A, B, 0.5, viaPath);
              assert.deepEqual(viaGemm, viaPath, `${M}x${N}x${K} tA=${tA} tB=${tB} (${gemmClassOf(tA, tB, M, N, K)})`);
            }
      } finally {
        setGemmChoice(null);
      }
    });

  test('the two paths really differ in rounding on a long product (so the tests above can tell them apart)', () => {
    if (!haveBlas)
      return assert.throws(() => gemmOpenblas(false, false, 1, 1, 1, 1, new Float32Array(1), new Float32Array(1), 0, new Float32Array(1)));
    const rng = new Rng(4),
      M = 64,
      N = 64,
      K = 3000;
    const A = randomF32(M * K, rng),
      B = randomF32(K * N, rng),
      C1 = new Float32Array(M * N),
      C2 = new Float32Array(M * N);
    gemmBuiltin(false, false, M, N, K, 1, A, B, 0, C1);
    gemmOpenblas(false, false, M, N, K, 1, A, B, 0, C2);
    assert.notDeepEqual(C1, C2);
  });

  test('setGemmChoice refuses incomplete or invalid tables and changes nothing', () => {
    const before = gemmChoice().backends;
    const { 'NT-large': _, ...missing } = all('builtin');
    assert.throws(() => setGemmChoice(missing), /backends\["NT-large"\] must be "builtin" or "openblas", got undefined/);
    assert.throws(
      () => setGemmChoice({ ...all('builtin'), 'NN-small': 'mkl' as never }),
      /backends\["NN-small"\] must be "builtin" or "openblas", got string/,
    );
    assert.deepEqual(gemmChoice().backends, before);
  });

  test('each thread count gets its own choice; the pinned table holds for all', () => {
    const threads = getThreads();
    try {
      setThreads(1);
      assert.equal(gemmChoice().machine.threads, 1);
      setGemmChoice(other);
      setThreads(2);
      assert.deepEqual(gemmChoice().backends, other);
      assert.equal(gemmChoice().machine.threads, 2);
    } finally {
      setGemmChoice(null);
      setThreads(threads);
    }
  });
});

describe('deciding', () => {
  const machine = (over: Partial<GemmMachine> = {}): GemmMachine => ({
    cpu: 'Test CPU (family 1 model 2)',
    threads: 2,
    simd: 'avx2 fma',
    openblas: 'OpenBLAS 0.3.21 Haswell',
    addon: '0123456789abcdef',
    ...over,
  });
  const names = ['NN-large', 'NT-narrow', 'TN-small'];
  // OpenBLAS clearly faster on NT-narrow, marginally (within the noise margin) on TN-small
  const timings: GemmMeasurement = {
    'NN-large': { builtin: 1.0, openblas: 1.7 },
    'NT-narrow': { builtin: 0.6, openblas: 0.4 },
    'TN-small': { builtin: 0.1, openblas: 0.099 },
  };
  const expected = { 'NN-large': 'builtin', 'NT-narrow': 'openblas', 'TN-small': 'builtin' };
  function counting() {
    let calls = 0;
    return {
      measure: () => {
        calls++;
        return timings;
      },
      calls: () => calls,
    };
  }

  test('the faster path per class, OpenBLAS only when clearly faster', () => {
    assert.deepEqual(chooseBackends(timings), expected);
    assert.deepEqual(chooseBackends({ x: { builtin: 1, openblas: null } }), { x: 'builtin' });
  });

  test('measured once per machine, then read from the cache; another thread count or build is measured anew', () => {
    const file = path.join(tmpDir(), 'sub', 'gemm.json');
    const m = counting();
    const first = decideGemmChoice({ env: undefined, cacheFile: file, machine: machine(), classes: names, measure: m.measure });
    assert.equal(first.source, 'measured');
    assert.deepEqual(first.backends, expected);
    const again = decideGemmChoice({ env: 'auto', cacheFile: file, machine: machine(), classes: names, measure: m.measure });
    assert.equal(again.source, 'cache');
    assert.deepEqual(again.backends, expected);
    assert.deepEqual(again.measuredMs, timings);
    assert.equal(m.calls(), 1);
    decideGemmChoice({ env: undefined, cacheFile: file, machine: machine({ threads: 1 }), classes: names, measure: m.measure });
    decideGemmChoice({
      env: undefined,
      cacheFile: file,
      machine: machine({ addon: 'fedcba9876543210' }),
      classes: names,
      measure: m.measure,
    });
    assert.equal(m.calls(), 3);
    const cache = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(Object.keys(cache.entries).length, 3);
    const entry = Object.values(cache.entries)[0] as { machine: GemmMachine; backends: GemmBackends };
    assert.equal(entry.machine.cpu, 'Test CPU (family 1 model 2)');
    assert.deepEqual(entry.backends, expected);
  });

  test('a corrupt or outdated cache is measured again and rewritten; no cache file with "off"', () => {
    const file = path.join(tmpDir(), 'gemm.json');
    fs.writeFileSync(file, '{"version": 1, "entries": {');
    const m = counting();
    assert.equal(
      decideGemmChoice({ env: undefined, cacheFile: file, machine: machine(), classes: names, measure: m.measure }).source,
      'measured',
    );
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).version, 1);
    // an entry missing a class the addon now has
    assert.equal(
      decideGemmChoice({ env: undefined, cacheFile: file, machine: machine(), classes: [...names, 'TT-large'], measure: m.measure }).source,
      'measured',
    );
    assert.equal(m.calls(), 2);
    assert.equal(gemmCachePath({ CHIMED_GEMM_CACHE: 'off' }), null);
    assert.equal(gemmCachePath({ CHIMED_GEMM_CACHE: 'x/g.json' }), path.resolve('x/g.json'));
    assert.equal(gemmCachePath({ XDG_CACHE_HOME: '/c' }), '/c/chimed/gemm.json');
  });

  test('CHIMED_GEMM forces a path; no OpenBLAS means built-in; bad values are refused', () => {
    const m = counting();
    const forced = decideGemmChoice({ env: 'openblas', cacheFile: null, machine: machine(), classes: names, measure: m.measure });
    assert.deepEqual(forced, {
      backends: { 'NN-large': 'openblas', 'NT-narrow': 'openblas', 'TN-small': 'openblas' },
      source: 'env',
      machine: machine(),
    });
    assert.equal(
      decideGemmChoice({ env: ' Builtin ', cacheFile: null, machine: machine(), classes: names, measure: m.measure }).backends['NT-narrow'],
      'builtin',
    );
    const noBlas = decideGemmChoice({
      env: undefined,
      cacheFile: null,
      machine: machine({ openblas: null }),
      classes: names,
      measure: m.measure,
    });
    assert.equal(noBlas.source, 'builtin-only');
    assert.equal(m.calls(), 0);
    assert.throws(
      () =>
        decideGemmChoice({ env: 'openblas', cacheFile: null, machine: machine({ openblas: null }), classes: names, measure: m.measure }),
      /CHIMED_GEMM=openblas, but this build of the addon has no OpenBLAS/,
    );
    assert.throws(
      () => decideGemmChoice({ env: 'mkl', cacheFile: null, machine: machine(), classes: names, measure: m.measure }),
      /CHIMED_GEMM must be auto, builtin or openblas, got "mkl"/,
    );
  });

  test('this machine: the key names CPU, threads, SIMD, OpenBLAS and the addon build', () => {
    const m = gemmMachine();
    assert.ok(m.cpu.length > 0 && m.threads === getThreads() && m.simd.length > 0 && /^[0-9a-f]{16}$/.test(m.addon));
    assert.equal(m.openblas, nativeInfo().openblas);
  });
});

// ---------------------------------------------------------------- trainer records and restores

const config = parseModelConfig(
  {
    vocab_size: 96,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
  },
  'test',
);

/** A tiny language-model task on fixed random batches; notes the GEMM choice in force at each step. */
function lmTask(seen: GemmBackends[]): TrainTask<Float32Array> {
  const model = Llama.random(nativeKernels, config, 5);
  const B = 2,
    T = 24;
  return {
    params: model.params,
    batchSize: B,
    microStep(ctx, index, gradScale) {
      seen.push(gemmChoice().backends);
      const rng = new Rng(100 + index);
      const ids = Int32Array.from({ length: B * T }, () => rng.int(config.vocab_size));
      const targets = Int32Array.from({ length: B * T }, () => rng.int(config.vocab_size));
      const loss = weightedSum(
        ctx,
        model.logprobs(ctx, { ids, pos: sequentialPositions(B, T), B, T }, targets),
        new Float32Array(B * T).fill(-gradScale / (B * T)),
      );
      const value = loss.data[0] / gradScale;
      ctx.backward(loss);
      return { loss: value, tokens: B * T };
    },
    saveWeights: async (dir) => {
      fs.mkdirSync(dir, { recursive: true });
      await writeSafetensors(path.join(dir, 'model.safetensors'), [
        { name: 'params', shape: [model.params.size], data: model.params.data },
      ]);
    },
  };
}

async function train(dir: string, maxSteps: number, saveEvery: number, seen: GemmBackends[] = []) {
  const metrics = new MetricsLog(path.join(dir, 'metrics.jsonl'));
  const trainer = new Trainer<Float32Array>(
    'pt',
    path.join(dir, 'stages/pt'),
    {
      ...trainerDefaults,
      warmupRatio: 0.05,
      schedule: 'cosine',
      weightDecay: 0.01,
      clipNorm: 1,
      gradAccum: 1,
      evalEvery: 0,
      seed: 42,
      lr: 3e-3,
      maxSteps,
      saveEvery,
      logEvery: 1,
    },
    metrics,
  );
  const result = await trainer.train(lmTask(seen), new Context(nativeKernels));
  return { result, losses: metrics.read('pt').map((r) => r.loss as number) };
}

describe('trainer', () => {
  test('records the GEMM choice (engine.json, trainer_state.json) and restores it on resume: bit-identical losses', async () => {
    const uninterrupted = await train(tmpDir(), 6, 0);
    const dir = tmpDir();
    await train(dir, 6, 3);
    // keep checkpoint-3 only, as if the run had been killed after it
    const stageDir = path.join(dir, 'stages/pt');
    fs.rmSync(path.join(stageDir, 'final'), { recursive: true });
    const engine = JSON.parse(fs.readFileSync(path.join(stageDir, 'engine.json'), 'utf8'));
    assert.equal(engine.kernels, 'native');
    assert.equal(engine.threads, getThreads());
    assert.deepEqual(engine.gemm, gemmChoice().backends);
    const state = JSON.parse(fs.readFileSync(path.join(stageDir, 'checkpoint-3/trainer_state.json'), 'utf8'));
    assert.deepEqual(state.engine, engine);
    const metrics = new MetricsLog(path.join(dir, 'metrics.jsonl'));
    await metrics.truncate('pt', 3);

    // this process now prefers another table; the resumed stage must use the recorded one
    const recorded = engine.gemm as GemmBackends;
    setGemmChoice(other);
    try {
      const seen: GemmBackends[] = [];
      const resumed = await train(dir, 6, 3, seen);
      assert.equal(resumed.result.resumedFrom, 3);
      assert.ok(
        seen.length === 3 && seen.every((b) => JSON.stringify(b) === JSON.stringify(recorded)),
        'resumed steps use the recorded choice',
      );
      assert.deepEqual(resumed.losses, uninterrupted.losses);
      assert.deepEqual(gemmChoice().backends, other, 'the pin is undone when the stage ends');
    } finally {
      setGemmChoice(null);
    }
  });

  test('a record that cannot be restored is reported, not applied', () => {
    assert.deepEqual(restoreEngineRecord(referenceKernels, { gemm: {} }), [], 'the float64 reference has no native state');
    assert.equal(engineRecord(referenceKernels), null);
    assert.match(restoreEngineRecord(nativeKernels, { gemm: { 'NN-big': 'builtin' } }).join(), /missing or names other shape classes/);
    const problems = restoreEngineRecord(nativeKernels, { threads: getThreads() + 1, gemm: all('builtin') });
    try {
      assert.match(problems.join(), new RegExp(`ran on ${getThreads() + 1} threads, this run has ${getThreads()}`));
      assert.equal(gemmChoice().source, 'set');
    } finally {
      setGemmChoice(null);
    }
  });
});
