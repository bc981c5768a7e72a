/**
 * The native kernels (float32) against the float64 reference, the reference's backward
 * kernels against central finite differences, plus determinism, argument validation and the
 * built-in GEMM against OpenBLAS.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AttentionDims } from '../src/engine/kernels.js';
import { gemmBuiltin, gemmOpenblas, getThreads, nativeInfo, nativeKernels as nk, setThreads } from '../src/engine/native.js';
import { referenceKernels as rk } from '../src/engine/reference.js';
import { Rng } from '../src/engine/rng.js';
import { assertClose } from './helpers.js';
import { gradCheck } from './numerics.js';

type F64 = Float64Array;

const rng = new Rng(20240607);
/** Uniform in [-scale, scale), already rounded to float32 so both implementations see the same values. */
function rand(n: number, scale = 1): F64 {
  return Float64Array.from({ length: n }, () => Math.fround((2 * rng.next() - 1) * scale));
}
function randInts(n: number, lo: number, hi: number): Int32Array {
  return Int32Array.from({ length: n }, () => lo + rng.int(hi - lo));
}
const f32 = (a: F64) => Float32Array.from(a);
const f64 = (a: Float32Array) => Float64Array.from(a);

function withThreads<T>(n: number, fn: () => T): T {
  const before = getThreads();
  setThreads(n);
  try {
    return fn();
  } finally {
    setThreads(before);
  }
}

const weightedSum = (y: F64, w: F64) => y.reduce((s, v, i) => s + v * w[i], 0);

// ---------------------------------------------------------------- GEMM

describe('gemm', () => {
  // gemm dispatches to one of these by shape class (test/gemm-choice.test.ts); every path is checked
  const paths: [string, typeof nk.gemm][] = [
    ['gemm', nk.gemm],
    ['gemmBuiltin', gemmBuiltin],
  ];
  if (nativeInfo().openblas) paths.push(['gemmOpenblas', gemmOpenblas]);
  // M <= 8 takes the few-rows path (with and without BLAS), larger M the packed one
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [7, 5, 3],
    [8, 40, 70],
    [3, 2000, 300],
    [33, 65, 17],
    [9, 100, 300],
    [130, 70, 513],
  ];
  for (const [M, N, K] of shapes)
    test(`${M}x${N}x${K}, all transposes, alpha/beta, every GEMM path`, () => {
      for (const transA of [false, true])
        for (const transB of [false, true])
          for (const [alpha, beta] of [
            [1, 0],
            [-0.5, 1],
            [2, 0.3],
          ]) {
            const A = rand(M * K),
              B = rand(K * N),
              C0 = rand(M * N);
            const expected = C0.slice();
            rk.gemm(transA, transB, M, N, K, alpha, A, B, beta, expected);
            for (const [name, fn] of paths) {
              // beta = 0 must overwrite C, NaN included
              const C = beta === 0 ? new Float32Array(M * N).fill(NaN) : f32(C0);
              fn(transA, transB, M, N, K, alpha, f32(A), f32(B), beta, C);
              assertClose(C, expected, `${name} tA=${transA} tB=${transB} a=${alpha} b=${beta}`, 1e-5, 2e-6 * K);
            }
          }
    });

  test('the paths agree with each other on a large product', () => {
    const M = 301,
      N = 257,
      K = 1100;
    const A = f32(rand(M * K)),
      B = f32(rand(N * K));
    const C1 = new Float32Array(M * N);
    gemmBuiltin(false, true, M, N, K, 1, A, B, 0, C1);
    for (const [name, fn] of paths) {
      const C2 = new Float32Array(M * N);
      fn(false, true, M, N, K, 1, A, B, 0, C2);
      assertClose(C2, C1, `${name} vs gemmBuiltin`, 1e-5, 1e-4);
    }
  });

  test('subarray views use their own offset', () => {
    const M = 5,
      N = 6,
      K = 7;
    const A = rand(M * K),
      B = rand(K * N);
    const expected = new Float64Array(M * N);
    rk.gemm(false, false, M, N, K, 1, A, B, 0, expected);
    const bufA = new Float32Array(M * K + 13),
      bufB = new Float32Array(K * N + 5),
      bufC = new Float32Array(M * N + 9).fill(7);
    bufA.set(A, 13);
    bufB.set(B, 5);
    nk.gemm(false, false, M, N, K, 1, bufA.subarray(13), bufB.subarray(5, 5 + K * N), 0, bufC.subarray(4, 4 + M * N));
    assertClose(bufC.subarray(4, 4 + M * N), expected, 'view C');
    assert.deepEqual([...bufC.subarray(0, 4), ...bufC.subarray(4 + M * N)], [7, 7, 7, 7, 7, 7, 7, 7, 7]);
  });

  test('K = 0 and alpha = 0 leave beta * C, on every path and both sides of the few-rows limit', () => {
    for (const [name, fn] of paths)
      for (const M of [3, 20]) {
        const C = f32(rand(M * 4));
        const expected = f64(C).map((c) => 0.5 * c);
        fn(false, false, M, 4, 0, 1, new Float32Array(0), new Float32Array(0), 0.5, C);
        assertClose(C, expected, `${name} M=${M} K=0`);
        fn(true, true, M, 4, 2, 0, new Float32Array(M * 2), new Float32Array(8), 2, C);
        assertClose(
          C,
          expected.map((c) => 2 * c),
          `${name} M=${M} alpha=0`,
        );
      }
  });
});

// ---------------------------------------------------------------- embedding, rmsnorm, rope

describe('embedding', () => {
  const vocab = 50,
    dim = 67;
  const table = rand(vocab * dim);
  const ids = Int32Array.from([3, 7, 3, 49, 0, 3, 12, 7]);

  test('forward copies rows', () => {
    const out = new Float32Array(ids.length * dim);
    nk.embeddingForward(out, f32(table), ids, dim);
    const expected = new Float64Array(ids.length * dim);
    rk.embeddingForward(expected, table, ids, dim);
    assert.deepEqual(f64(out), expected);
  });

  test('backward accumulates repeated ids', () => {
    const dout = rand(ids.length * dim),
      d0 = rand(vocab * dim);
    const expected = d0.slice();
    rk.embeddingBackward(expected, dout, ids, dim);
    const got = f32(d0);
    nk.embeddingBackward(got, f32(dout), ids, dim);
    assertClose(got, expected, 'dtable', 1e-6, 1e-6);
  });

  test('backward is identical for 1 and 2 threads (large enough to run in parallel)', () => {
    const n = 3000,
      D = 96,
      V = 40;
    const manyIds = randInts(n, 0, V),
      dout = f32(rand(n * D));
    const run = (threads: number) =>
      withThreads(threads, () => {
        const d = new Float32Array(V * D);
        nk.embeddingBackward(d, dout, manyIds, D);
        return d;
      });
    assert.deepEqual(run(1), run(2));
  });

  test('reference gradient matches finite differences', () => {
    const w = rand(ids.length * dim);
    const loss = () => {
      const out = new Float64Array(ids.length * dim);
      rk.embeddingForward(out, table, ids, dim);
      return weightedSum(out, w);
    };
    const grad = new Float64Array(vocab * dim);
    rk.embeddingBackward(grad, w, ids, dim);
    gradCheck('dtable', loss, table, grad, 400);
  });
});

describe('rmsnorm', () => {
  for (const [rows, dim] of [
    [5, 67],
    [300, 130],
  ])
    test(`native matches reference, rows=${rows} dim=${dim}`, () => {
      const x = rand(rows * dim, 2),
        w = rand(dim),
        eps = 1e-5;
      const out = new Float64Array(rows * dim),
        rstd = new Float64Array(rows);
      rk.rmsnormForward(out, rstd, x, w, rows, dim, eps);
      const o32 = new Float32Array(rows * dim),
        r32 = new Float32Array(rows);
      nk.rmsnormForward(o32, r32, f32(x), f32(w), rows, dim, eps);
      assertClose(o32, out, 'out');
      assertClose(r32, rstd, 'rstd');

      const dout = rand(rows * dim),
        dx0 = rand(rows * dim),
        dw0 = rand(dim);
      const dx = dx0.slice(),
        dw = dw0.slice();
      rk.rmsnormBackward(dx, dw, dout, x, w, rstd, rows, dim);
      const dx32 = f32(dx0),
        dw32 = f32(dw0);
      nk.rmsnormBackward(dx32, dw32, f32(dout), f32(x), f32(w), r32, rows, dim);
      assertClose(dx32, dx, 'dx', 1e-4, 1e-5);
      assertClose(dw32, dw, 'dw', 1e-4, 1e-4);
    });

  test('dw is identical for 1 and 2 threads', () => {
    const rows = 400,
      dim = 128;
    const args = [f32(rand(rows * dim)), f32(rand(rows * dim)), f32(rand(dim)), f32(rand(rows, 1).map((v) => 1 + Math.abs(v)))] as const;
    const run = (threads: number) =>
      withThreads(threads, () => {
        const dx = new Float32Array(rows * dim),
          dw = new Float32Array(dim);
        nk.rmsnormBackward(dx, dw, args[0], args[1], args[2], args[3], rows, dim);
        return [dx, dw];
      });
    assert.deepEqual(run(1), run(2));
  });

  test('reference gradients match finite differences', () => {
    const rows = 3,
      dim = 11,
      eps = 1e-5;
    const x = rand(rows * dim, 2),
      w = rand(dim),
      wl = rand(rows * dim);
    const forward = () => {
      const out = new Float64Array(rows * dim),
        rstd = new Float64Array(rows);
      rk.rmsnormForward(out, rstd, x, w, rows, dim, eps);
      return { out, rstd };
    };
    const { rstd } = forward();
    const dx = new Float64Array(rows * dim),
      dw = new Float64Array(dim);
    rk.rmsnormBackward(dx, dw, wl, x, w, rstd, rows, dim);
    const loss = () => weightedSum(forward().out, wl);
    gradCheck('dx', loss, x, dx, 33);
    gradCheck('dw', loss, w, dw, 11);
  });
});

describe('addRmsnorm (residual add + RMSNorm)', () => {
  for (const [rows, dim, withDsum] of [
    [5, 67, true],
    [300, 130, true],
    [40, 64, false],
  ] as const)
    test(`native matches reference, rows=${rows} dim=${dim}${withDsum ? '' : ', no dsum'}`, () => {
      const x = rand(rows * dim, 2),
        y = rand(rows * dim),
        w = rand(dim),
        eps = 1e-5,
        n = rows * dim;
      const sum = new Float64Array(n),
        out = new Float64Array(n),
        rstd = new Float64Array(rows);
      rk.addRmsnormForward(sum, out, rstd, x, y, w, rows, dim, eps);
      const s32 = new Float32Array(n),
        o32 = new Float32Array(n),
        r32 = new Float32Array(rows);
      nk.addRmsnormForward(s32, o32, r32, f32(x), f32(y), f32(w), rows, dim, eps);
      assertClose(s32, sum, 'sum');
      assertClose(o32, out, 'out');
      assertClose(r32, rstd, 'rstd');

      const dsum = withDsum ? rand(n) : null,
        dout = rand(n),
        dx0 = rand(n),
        dy0 = rand(n),
        dw0 = rand(dim);
      const [dx, dy, dw] = [dx0.slice(), dy0.slice(), dw0.slice()];
      rk.addRmsnormBackward(dx, dy, dw, dsum, dout, sum, w, rstd, rows, dim);
      const [dx32, dy32, dw32] = [f32(dx0), f32(dy0), f32(dw0)];
      nk.addRmsnormBackward(dx32, dy32, dw32, dsum && f32(dsum), f32(dout), s32, f32(w), r32, rows, dim);
      assertClose(dx32, dx, 'dx', 1e-4, 1e-5);
      assertClose(dy32, dy, 'dy', 1e-4, 1e-5);
      assertClose(dw32, dw, 'dw', 1e-4, 1e-4);
    });

  test('dw is identical for 1 and 2 threads', () => {
    const rows = 400,
      dim = 128,
      n = rows * dim;
    const [dsum, dout, sum, w] = [f32(rand(n)), f32(rand(n)), f32(rand(n)), f32(rand(dim))];
    const rstd = f32(rand(rows, 1).map((v) => 1 + Math.abs(v)));
    const run = (threads: number) =>
      withThreads(threads, () => {
        const [dx, dy, dw] = [new Float32Array(n), new Float32Array(n), new Float32Array(dim)];
        nk.addRmsnormBackward(dx, dy, dw, dsum, dout, sum, w, rstd, rows, dim);
        return [dx, dy, dw];
      });
    assert.deepEqual(run(1), run(2));
  });

  test('reference gradients match finite differences (through both outputs)', () => {
    const rows = 3,
      dim = 11,
      n = rows * dim,
      eps = 1e-5;
    const x = rand(n, 2),
      y = rand(n),
      w = rand(dim),
      wSum = rand(n),
      wOut = rand(n);
    const forward = () => {
      const sum = new Float64Array(n),
        out = new Float64Array(n),
        rstd = new Float64Array(rows);
      rk.addRmsnormForward(sum, out, rstd, x, y, w, rows, dim, eps);
      return { sum, out, rstd };
    };
    const { sum, rstd } = forward();
    const [dx, dy, dw] = [new Float64Array(n), new Float64Array(n), new Float64Array(dim)];
    rk.addRmsnormBackward(dx, dy, dw, wSum, wOut, sum, w, rstd, rows, dim);
    const loss = () => {
      const f = forward();
      return weightedSum(f.sum, wSum) + weightedSum(f.out, wOut);
    };
    gradCheck('dx', loss, x, dx, n);
    gradCheck('dy', loss, y, dy, n);
    gradCheck('dw', loss, w, dw, dim);
  });
});

/** Plain RoPE frequencies theta^(-2i/hd) (scaled variants are tested in test/rope.test.ts). */
const plainFreq = (hd: number, theta: number) => Float64Array.from({ length: hd / 2 }, (_, i) => theta ** ((-2 * i) / hd));

describe('rope', () => {
  const cases: [string, number, number, Float64Array, number, Int32Array][] = [
    ['small head, theta 1e4', 3, 8, plainFreq(8, 1e4), 1, randInts(5, 0, 64)],
    ['hd 64, theta 1e6, large positions', 4, 64, plainFreq(64, 1e6), 1, randInts(9, 0, 40000)],
    [
      'scaled frequencies and cos/sin scale (YaRN-like)',
      2,
      32,
      plainFreq(32, 5e5).map((f, i) => (i > 8 ? f / 4 : f)),
      1.1386,
      randInts(7, 0, 9000),
    ],
    ['negative and huge positions (uncached path)', 2, 16, plainFreq(16, 1e4), 1, Int32Array.from([-3, 5, 2_000_000, 0])],
  ];
  for (const [label, heads, hd, freq, scale, pos] of cases)
    test(`native matches reference: ${label}`, () => {
      const n = pos.length * heads * hd;
      const x = rand(n),
        expected = new Float64Array(n);
      rk.ropeForward(expected, x, pos, heads, hd, freq, scale);
      const out = new Float32Array(n);
      nk.ropeForward(out, f32(x), pos, heads, hd, freq, scale);
      assertClose(out, expected, 'out', 1e-5, 2e-6);
      const inPlace = f32(x);
      nk.ropeForward(inPlace, inPlace, pos, heads, hd, freq, scale);
      assert.deepEqual(inPlace, out, 'out may alias x');

      const dout = rand(n),
        dx0 = rand(n);
      const dx = dx0.slice();
      rk.ropeBackward(dx, dout, pos, heads, hd, freq, scale);
      const dx32 = f32(dx0);
      nk.ropeBackward(dx32, f32(dout), pos, heads, hd, freq, scale);
      assertClose(dx32, dx, 'dx', 1e-5, 4e-6);
    });

  test('the cached table follows changed frequencies (dynamic NTK recomputes them per step)', () => {
    const pos = Int32Array.from([0, 3, 9]),
      heads = 1,
      hd = 8,
      n = pos.length * heads * hd,
      x = f32(rand(n));
    const run = (freq: Float64Array) => {
      const out = new Float32Array(n);
      nk.ropeForward(out, x, pos, heads, hd, freq, 1);
      return out;
    };
    const a = run(plainFreq(hd, 1e4)),
      b = run(plainFreq(hd, 3e4));
    assert.notDeepEqual(a, b);
    assert.deepEqual(run(plainFreq(hd, 1e4)), a);
  });

  test('reference gradient matches finite differences', () => {
    const pos = Int32Array.from([0, 1, 17, 300]),
      heads = 2,
      hd = 6,
      n = pos.length * heads * hd;
    const x = rand(n),
      w = rand(n),
      freq = plainFreq(hd, 10000).map((f) => f / 3);
    const loss = () => {
      const out = new Float64Array(n);
      rk.ropeForward(out, x, pos, heads, hd, freq, 1.2);
      return weightedSum(out, w);
    };
    const dx = new Float64Array(n);
    rk.ropeBackward(dx, w, pos, heads, hd, freq, 1.2);
    gradCheck('dx', loss, x, dx, n);
  });
});

describe('qkvRope (split of a fused projection + RoPE)', () => {
  const cases: [string, number, number, number, Float64Array, number, Int32Array][] = [
    ['GQA, small head', 4, 2, 8, plainFreq(8, 1e4), 1, randInts(6, 0, 64)],
    ['MHA, hd 64, scaled', 2, 2, 64, plainFreq(64, 1e6), 1.1386, randInts(70, 0, 40000)],
    ['uncached positions', 2, 1, 16, plainFreq(16, 1e4), 1, Int32Array.from([-3, 5, 2_000_000, 0])],
  ];
  for (const [label, H, KVH, hd, freq, scale, pos] of cases)
    test(`native matches reference: ${label}`, () => {
      const rows = pos.length,
        nq = rows * H * hd,
        nkv = rows * KVH * hd;
      const qkv = rand(rows * (H + 2 * KVH) * hd);
      const [q, k, v] = [new Float64Array(nq), new Float64Array(nkv), new Float64Array(nkv)];
      rk.qkvRopeForward(q, k, v, qkv, pos, H, KVH, hd, freq, scale);
      const [q32, k32, v32] = [new Float32Array(nq), new Float32Array(nkv), new Float32Array(nkv)];
      nk.qkvRopeForward(q32, k32, v32, f32(qkv), pos, H, KVH, hd, freq, scale);
      assertClose(q32, q, 'q', 1e-5, 2e-6);
      assertClose(k32, k, 'k', 1e-5, 2e-6);
      assertClose(v32, v, 'v', 0, 0);
      // the same as the unfused kernels it replaces: rope of q's columns
      const qRope = new Float64Array(nq),
        qCols = new Float64Array(nq);
      rk.sliceColumnsForward(qCols, qkv, rows, (H + 2 * KVH) * hd, 0, H * hd);
      rk.ropeForward(qRope, qCols, pos, H, hd, freq, scale);
      assertClose(q, qRope, 'q = rope(slice)', 0, 1e-15);

      const [dq, dk, dv, d0] = [rand(nq), rand(nkv), rand(nkv), rand(qkv.length)];
      const d = d0.slice();
      rk.qkvRopeBackward(d, dq, dk, dv, pos, H, KVH, hd, freq, scale);
      const d32 = f32(d0);
      nk.qkvRopeBackward(d32, f32(dq), f32(dk), f32(dv), pos, H, KVH, hd, freq, scale);
      assertClose(d32, d, 'dqkv', 1e-5, 4e-6);
    });

  test('reference gradient matches finite differences', () => {
    const pos = Int32Array.from([0, 1, 17, 300]),
      H = 4,
      KVH = 2,
      hd = 6,
      rows = pos.length;
    const qkv = rand(rows * (H + 2 * KVH) * hd),
      freq = plainFreq(hd, 10000).map((f) => f / 3);
    const [wq, wk, wv] = [rand(rows * H * hd), rand(rows * KVH * hd), rand(rows * KVH * hd)];
    const loss = () => {
      const [q, k, v] = [new Float64Array(wq.length), new Float64Array(wk.length), new Float64Array(wv.length)];
      rk.qkvRopeForward(q, k, v, qkv, pos, H, KVH, hd, freq, 1.2);
      return weightedSum(q, wq) + weightedSum(k, wk) + weightedSum(v, wv);
    };
    const d = new Float64Array(qkv.length);
    rk.qkvRopeBackward(d, wq, wk, wv, pos, H, KVH, hd, freq, 1.2);
    gradCheck('dqkv', loss, qkv, d, qkv.length);
  });
});

// ---------------------------------------------------------------- bias, column slices, row normalisation

describe('bias', () => {
  for (const [rows, dim] of [
    [3, 7],
    [500, 130],
  ])
    test(`native matches reference, rows=${rows} dim=${dim}`, () => {
      const y0 = rand(rows * dim),
        b = rand(dim),
        dy = rand(rows * dim),
        db0 = rand(dim);
      const y = y0.slice(),
        db = db0.slice();
      rk.biasForward(y, b, rows, dim);
      rk.biasBackward(db, dy, rows, dim);
      const y32 = f32(y0),
        db32 = f32(db0);
      nk.biasForward(y32, f32(b), rows, dim);
      nk.biasBackward(db32, f32(dy), rows, dim);
      assertClose(y32, y, 'y', 1e-6, 1e-7);
      assertClose(db32, db, 'db', 1e-5, 1e-5);
    });

  test('db is identical for 1 and 2 threads', () => {
    const rows = 600,
      dim = 96,
      dy = f32(rand(rows * dim));
    const run = (threads: number) =>
      withThreads(threads, () => {
        const db = new Float32Array(dim);
        nk.biasBackward(db, dy, rows, dim);
        return db;
      });
    assert.deepEqual(run(1), run(2));
  });

  test('reference gradient matches finite differences', () => {
    const rows = 4,
      dim = 5,
      x = rand(rows * dim),
      b = rand(dim),
      w = rand(rows * dim);
    const loss = () => {
      const y = x.slice();
      rk.biasForward(y, b, rows, dim);
      return weightedSum(y, w);
    };
    const db = new Float64Array(dim);
    rk.biasBackward(db, w, rows, dim);
    gradCheck('db', loss, b, db, dim);
  });
});

describe('sliceColumns', () => {
  test('native matches reference; backward adds into the slice only', () => {
    const rows = 300,
      cols = 150,
      start = 40,
      width = 70;
    const x = rand(rows * cols),
      dout = rand(rows * width),
      dx0 = rand(rows * cols);
    const out = new Float64Array(rows * width),
      dx = dx0.slice();
    rk.sliceColumnsForward(out, x, rows, cols, start, width);
    rk.sliceColumnsBackward(dx, dout, rows, cols, start, width);
    const o32 = new Float32Array(rows * width),
      dx32 = f32(dx0);
    nk.sliceColumnsForward(o32, f32(x), rows, cols, start, width);
    nk.sliceColumnsBackward(dx32, f32(dout), rows, cols, start, width);
    assert.deepEqual(f64(o32), out);
    assertClose(dx32, dx, 'dx', 1e-6, 1e-7);
    assert.equal(dx[5], dx0[5], 'columns outside the slice are untouched');
    assert.equal(out[width + 2], x[cols + start + 2]);
  });

  test('reference gradient matches finite differences', () => {
    const rows = 3,
      cols = 9,
      start = 3,
      width = 4,
      x = rand(rows * cols),
      w = rand(rows * width);
    const loss = () => {
      const y = new Float64Array(rows * width);
      rk.sliceColumnsForward(y, x, rows, cols, start, width);
      return weightedSum(y, w);
    };
    const dx = new Float64Array(rows * cols);
    rk.sliceColumnsBackward(dx, w, rows, cols, start, width);
    gradCheck('dx', loss, x, dx, rows * cols);
  });
});

describe('normalizeRows', () => {
  test('native matches reference, with a row below eps', () => {
    const rows = 400,
      dim = 100,
      eps = 1e-12;
    const w = rand(rows * dim);
    w.fill(0, 7 * dim, 8 * dim);
    w[7 * dim + 3] = 1e-14;
    const out = new Float64Array(rows * dim),
      norm = new Float64Array(rows);
    rk.normalizeRowsForward(out, norm, w, rows, dim, eps);
    const o32 = new Float32Array(rows * dim),
      n32 = new Float32Array(rows);
    nk.normalizeRowsForward(o32, n32, f32(w), rows, dim, eps);
    assertClose(o32, out, 'out', 1e-5, 1e-6);
    assertClose(n32, norm, 'norm', 1e-6, 1e-14);
    const dout = rand(rows * dim),
      dw0 = rand(rows * dim);
    const dw = dw0.slice();
    rk.normalizeRowsBackward(dw, dout, out, norm, rows, dim, eps);
    const dw32 = f32(dw0);
    nk.normalizeRowsBackward(dw32, f32(dout), o32, n32, rows, dim, eps);
    for (let r = 0; r < rows; r++)
      if (r !== 7) assertClose(dw32.subarray(r * dim, (r + 1) * dim), dw.subarray(r * dim, (r + 1) * dim), `dw row ${r}`, 1e-4, 1e-5);
    let unit = 0;
    for (let c = 0; c < dim; c++) unit += out[dim + c] ** 2;
    assert.ok(Math.abs(unit - 1) < 1e-12, 'rows have unit length');
  });

  test('reference gradient matches finite differences', () => {
    const rows = 3,
      dim = 6,
      w = rand(rows * dim),
      lw = rand(rows * dim);
    const forward = () => {
      const out = new Float64Array(rows * dim),
        norm = new Float64Array(rows);
      rk.normalizeRowsForward(out, norm, w, rows, dim, 1e-12);
      return { out, norm };
    };
    const { out, norm } = forward();
    const dw = new Float64Array(rows * dim);
    rk.normalizeRowsBackward(dw, lw, out, norm, rows, dim, 1e-12);
    gradCheck('dw', () => weightedSum(forward().out, lw), w, dw, rows * dim);
  });
});

// ---------------------------------------------------------------- attention

interface AttentionCase {
  label: string;
  dims: AttentionDims;
  keyStart: Int32Array | null;
}

function dims(B: number, Tq: number, Tk: number, kvCap: number, H: number, KVH: number, headDim: number): AttentionDims {
  return { B, Tq, Tk, kvCap, H, KVH, headDim, scale: 1 / Math.sqrt(headDim) };
}

const attentionCases: AttentionCase[] = [
  { label: 'MHA, hd 8 (narrower than a tile)', dims: dims(2, 37, 37, 37, 3, 3, 8), keyStart: null },
  { label: 'GQA 2, hd 16', dims: dims(2, 37, 37, 37, 4, 2, 16), keyStart: null },
  { label: 'GQA 4, hd 64, T crosses key blocks', dims: dims(1, 150, 150, 150, 8, 2, 64), keyStart: null },
  { label: 'hd 80 (partial tile), GQA 1', dims: dims(1, 70, 70, 70, 2, 2, 80), keyStart: null },
  { label: 'KV cache Tq < Tk < kvCap, GQA 4', dims: dims(2, 9, 75, 96, 4, 1, 32), keyStart: null },
  { label: 'decode Tq = 1 (per-row path), GQA 2', dims: dims(2, 1, 70, 80, 4, 2, 64), keyStart: Int32Array.from([0, 13]) },
  { label: 'short prefill Tq = 3 (per-row path)', dims: dims(1, 3, 20, 24, 4, 4, 16), keyStart: null },
  { label: 'keyStart left padding incl. fully masked rows', dims: dims(3, 45, 45, 45, 4, 2, 16), keyStart: Int32Array.from([0, 5, 40]) },
  { label: 'keyStart = Tk (nothing visible)', dims: dims(2, 20, 20, 20, 2, 1, 8), keyStart: Int32Array.from([20, 3]) },
  { label: 'KV cache with keyStart, hd 128', dims: dims(2, 17, 90, 100, 4, 2, 128), keyStart: Int32Array.from([7, 70]) },
  {
    label: 'head-major KV cache, decode Tq = 1, GQA 2',
    dims: { ...dims(2, 1, 70, 80, 4, 2, 64), kvHeadMajor: true },
    keyStart: Int32Array.from([0, 13]),
  },
  {
    label: 'head-major KV cache, Tq 9 < Tk 75 < kvCap 96 (blocked path)',
    dims: { ...dims(2, 9, 75, 96, 4, 1, 32), kvHeadMajor: true },
    keyStart: null,
  },
];

function attentionInputs(d: AttentionDims) {
  const nq = d.B * d.Tq * d.H * d.headDim,
    nkv = d.B * d.kvCap * d.KVH * d.headDim;
  return { q: rand(nq, 1.5), k: rand(nkv, 1.5), v: rand(nkv), dout: rand(nq), dq0: rand(nq), dk0: rand(nkv), dv0: rand(nkv) };
}

function referenceAttention(d: AttentionDims, keyStart: Int32Array | null, x: ReturnType<typeof attentionInputs>) {
  const out = new Float64Array(x.q.length),
    lse = new Float64Array(d.B * d.H * d.Tq);
  rk.attentionForward(out, lse, x.q, x.k, x.v, d, keyStart);
  const dq = x.dq0.slice(),
    dk = x.dk0.slice(),
    dv = x.dv0.slice();
  rk.attentionBackward(dq, dk, dv, x.dout, x.q, x.k, x.v, out, lse, d, keyStart);
  return { out, lse, dq, dk, dv };
}

function nativeAttention(d: AttentionDims, keyStart: Int32Array | null, x: ReturnType<typeof attentionInputs>) {
  const q = f32(x.q),
    k = f32(x.k),
    v = f32(x.v);
  const out = new Float32Array(x.q.length),
    lse = new Float32Array(d.B * d.H * d.Tq);
  nk.attentionForward(out, lse, q, k, v, d, keyStart);
  const dq = f32(x.dq0),
    dk = f32(x.dk0),
    dv = f32(x.dv0);
  nk.attentionBackward(dq, dk, dv, f32(x.dout), q, k, v, out, lse, d, keyStart);
  return { out, lse, dq, dk, dv };
}

describe('attention', () => {
  for (const c of attentionCases)
    test(`native matches reference: ${c.label}`, () => {
      const x = attentionInputs(c.dims);
      const ref = referenceAttention(c.dims, c.keyStart, x);
      const got = nativeAttention(c.dims, c.keyStart, x);
      assertClose(got.out, ref.out, 'out', 1e-4, 1e-5);
      assertClose(got.lse, ref.lse, 'lse', 1e-5, 1e-5);
      assertClose(got.dq, ref.dq, 'dq', 1e-4, 2e-5);
      assertClose(got.dk, ref.dk, 'dk', 1e-4, 2e-5);
      assertClose(got.dv, ref.dv, 'dv', 1e-4, 2e-5);
    });

  test('a head-major KV cache gives what the same cache row-major gives', () => {
    for (const Tq of [1, 9]) {
      const d = dims(2, Tq, 40, 48, 4, 2, 16),
        keyStart = Int32Array.from([3, 0]);
      const x = attentionInputs(d);
      const headMajor = (a: Float64Array) => {
        const t = new Float64Array(a.length);
        for (let b = 0; b < d.B; b++)
          for (let j = 0; j < d.kvCap; j++)
            for (let h = 0; h < d.KVH; h++)
              for (let c = 0; c < d.headDim; c++)
                t[((b * d.KVH + h) * d.kvCap + j) * d.headDim + c] = a[((b * d.kvCap + j) * d.KVH + h) * d.headDim + c];
        return t;
      };
      const rowMajor = nativeAttention(d, keyStart, x);
      const transposed = nativeAttention({ ...d, kvHeadMajor: true }, keyStart, { ...x, k: headMajor(x.k), v: headMajor(x.v) });
      assert.deepEqual(transposed.out, rowMajor.out, `out, Tq ${Tq}`);
      assert.deepEqual(transposed.lse, rowMajor.lse, `lse, Tq ${Tq}`);
    }
  });

  test('fully masked queries give zero output and lse = -Infinity', () => {
    const d = dims(1, 6, 6, 6, 2, 1, 8),
      keyStart = Int32Array.from([4]);
    const x = attentionInputs(d);
    const got = nativeAttention(d, keyStart, x);
    for (let h = 0; h < 2; h++)
      for (let i = 0; i < 4; i++) {
        assert.equal(got.lse[h * 6 + i], -Infinity);
        assert.ok(got.out.subarray((i * 2 + h) * 8, (i * 2 + h + 1) * 8).every((v) => v === 0));
      }
  });

  test('backward is deterministic, also across thread counts', () => {
    const d = dims(2, 96, 96, 96, 4, 2, 32);
    const x = attentionInputs(d);
    const a = nativeAttention(d, null, x),
      b = nativeAttention(d, null, x);
    const c = withThreads(1, () => nativeAttention(d, null, x));
    for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
      assert.deepEqual(a[key], b[key], `${key} run twice`);
      assert.deepEqual(a[key], c[key], `${key} 1 thread vs default`);
    }
  });

  test('T = 2048 agrees with the reference on slices (first and last queries)', () => {
    const T = 2048,
      H = 4,
      KVH = 2,
      hd = 64,
      S = 6,
      d = dims(1, T, T, T, H, KVH, hd);
    const x = attentionInputs(d);
    const qRows = (a: F64, from: number, to: number) => a.slice(from * H * hd, to * H * hd);
    const kvRows = (a: F64, from: number, to: number) => a.slice(from * KVH * hd, to * KVH * hd);
    const zeros = (n: number) => new Float64Array(n);
    // dout is zero except on the last S queries, so dk and dv depend on those queries only
    const dout = zeros(x.q.length);
    dout.set(qRows(x.dout, T - S, T), (T - S) * H * hd);
    const got = nativeAttention(d, null, { ...x, dout, dq0: zeros(x.q.length), dk0: zeros(x.k.length), dv0: zeros(x.v.length) });

    // the last S queries are a KV-cache call with Tq = S over all T keys
    const tail = referenceAttention(dims(1, S, T, T, H, KVH, hd), null, {
      ...x,
      q: qRows(x.q, T - S, T),
      dout: qRows(dout, T - S, T),
      dq0: zeros(S * H * hd),
      dk0: zeros(x.k.length),
      dv0: zeros(x.v.length),
    });
    assertClose(qRows(f64(got.out), T - S, T), tail.out, 'out (last queries)', 1e-4, 1e-5);
    assertClose(qRows(f64(got.dq), T - S, T), tail.dq, 'dq (last queries)', 1e-4, 1e-5);
    assertClose(got.dk, tail.dk, 'dk', 1e-4, 1e-5);
    assertClose(got.dv, tail.dv, 'dv', 1e-4, 1e-5);
    const lseTail = Float64Array.from({ length: H * S }, (_, n) => got.lse[Math.floor(n / S) * T + T - S + (n % S)]);
    assertClose(lseTail, tail.lse, 'lse (last queries)');

    // the first S queries are a prompt of length S
    const head = referenceAttention(dims(1, S, S, S, H, KVH, hd), null, {
      q: qRows(x.q, 0, S),
      k: kvRows(x.k, 0, S),
      v: kvRows(x.v, 0, S),
      dout: zeros(S * H * hd),
      dq0: zeros(S * H * hd),
      dk0: zeros(S * KVH * hd),
      dv0: zeros(S * KVH * hd),
    });
    assertClose(qRows(f64(got.out), 0, S), head.out, 'out (first queries)', 1e-4, 1e-5);
  });

  test('T = 4096, H = 8, hd = 64 runs without materialising scores', () => {
    const T = 4096,
      d = dims(1, T, T, T, 8, 8, 64),
      n = T * 8 * 64;
    const q = f32(rand(n)),
      k = f32(rand(n)),
      v = f32(rand(n)),
      dout = f32(rand(n));
    const out = new Float32Array(n),
      lse = new Float32Array(8 * T),
      dq = new Float32Array(n),
      dk = new Float32Array(n),
      dv = new Float32Array(n);
    for (const a of [out, lse, dq, dk, dv]) a.fill(0); // fault the output pages in before measuring
    const before = process.memoryUsage().rss;
    nk.attentionForward(out, lse, q, k, v, d, null);
    nk.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d, null);
    const grownMiB = (process.memoryUsage().rss - before) / 2 ** 20;
    // one head's [T, T] score matrix alone would be 64 MiB; the kernels need packed copies of K
    // and V (16 MiB for the forward, 3 MiB per thread for the backward)
    assert.ok(grownMiB < 40, `resident memory grew by ${grownMiB.toFixed(1)} MiB`);
    assert.ok([out, lse, dq, dk, dv].every((a) => a.every(Number.isFinite)));
  });

  const gradCases: AttentionCase[] = [
    { label: 'GQA 2', dims: { ...dims(2, 6, 6, 6, 4, 2, 4), scale: 0.5 }, keyStart: null },
    { label: 'KV cache, GQA 4, kvCap > Tk', dims: { ...dims(1, 3, 7, 9, 4, 1, 4), scale: 0.5 }, keyStart: null },
    {
      label: 'head-major KV cache, GQA 2, kvCap > Tk',
      dims: { ...dims(1, 3, 7, 9, 4, 2, 4), scale: 0.5, kvHeadMajor: true },
      keyStart: null,
    },
    { label: 'keyStart with fully masked queries', dims: { ...dims(2, 6, 6, 6, 2, 1, 4), scale: 0.5 }, keyStart: Int32Array.from([0, 3]) },
  ];
  for (const { label, dims: d, keyStart } of gradCases)
    test(`reference gradients match finite differences: ${label}`, () => {
      const x = attentionInputs(d);
      const forward = () => {
        const out = new Float64Array(x.q.length),
          lse = new Float64Array(d.B * d.H * d.Tq);
        rk.attentionForward(out, lse, x.q, x.k, x.v, d, keyStart);
        return { out, lse };
      };
      const { out, lse } = forward();
      const dq = new Float64Array(x.q.length),
        dk = new Float64Array(x.k.length),
        dv = new Float64Array(x.v.length);
      rk.attentionBackward(dq, dk, dv, x.dout, x.q, x.k, x.v, out, lse, d, keyStart);
      const loss = () => weightedSum(forward().out, x.dout);
      gradCheck('dq', loss, x.q, dq, 48);
      gradCheck('dk', loss, x.k, dk, 48);
      gradCheck('dv', loss, x.v, dv, 48);
    });
});

// ---------------------------------------------------------------- swiglu, cross-entropy

describe('swiglu', () => {
  test('native matches reference, including saturated gates', () => {
    const n = 40000;
    const gate = rand(n, 8),
      up = rand(n);
    gate.set([30, -30, 100, -100, 0]);
    const out = new Float64Array(n);
    rk.swigluForward(out, gate, up);
    const o32 = new Float32Array(n);
    nk.swigluForward(o32, f32(gate), f32(up));
    assertClose(o32, out, 'out', 1e-5, 1e-6);

    const dout = rand(n),
      dg0 = rand(n),
      du0 = rand(n);
    const dg = dg0.slice(),
      du = du0.slice();
    rk.swigluBackward(dg, du, dout, gate, up);
    const dg32 = f32(dg0),
      du32 = f32(du0);
    nk.swigluBackward(dg32, du32, f32(dout), f32(gate), f32(up));
    assertClose(dg32, dg, 'dgate', 1e-5, 1e-6);
    assertClose(du32, du, 'dup', 1e-5, 1e-6);
  });

  test('reference gradients match finite differences', () => {
    const n = 30,
      gate = rand(n, 4),
      up = rand(n),
      w = rand(n);
    const loss = () => {
      const out = new Float64Array(n);
      rk.swigluForward(out, gate, up);
      return weightedSum(out, w);
    };
    const dg = new Float64Array(n),
      du = new Float64Array(n);
    rk.swigluBackward(dg, du, w, gate, up);
    gradCheck('dgate', loss, gate, dg, n);
    gradCheck('dup', loss, up, du, n);
  });
});

describe('swigluPacked (gate | up of a fused projection)', () => {
  test('native matches reference and the flat kernel on the two halves', () => {
    const rows = 37,
      width = 1411;
    const gu = rand(rows * 2 * width, 8);
    gu.set([30, -30, 100, -100, 0]);
    const out = new Float64Array(rows * width);
    rk.swigluPackedForward(out, gu, rows, width);
    const o32 = new Float32Array(rows * width);
    nk.swigluPackedForward(o32, f32(gu), rows, width);
    assertClose(o32, out, 'out', 1e-5, 1e-6);
    const r = 5,
      flat = new Float64Array(width);
    rk.swigluForward(flat, gu.subarray(2 * r * width, (2 * r + 1) * width), gu.subarray((2 * r + 1) * width, (2 * r + 2) * width));
    assert.deepEqual(out.subarray(r * width, (r + 1) * width), flat);

    const dout = rand(rows * width),
      d0 = rand(rows * 2 * width);
    const d = d0.slice();
    rk.swigluPackedBackward(d, dout, gu, rows, width);
    const d32 = f32(d0);
    nk.swigluPackedBackward(d32, f32(dout), f32(gu), rows, width);
    assertClose(d32, d, 'dgu', 1e-5, 1e-6);
  });

  test('reference gradient matches finite differences', () => {
    const rows = 3,
      width = 7,
      gu = rand(rows * 2 * width, 4),
      w = rand(rows * width);
    const loss = () => {
      const out = new Float64Array(rows * width);
      rk.swigluPackedForward(out, gu, rows, width);
      return weightedSum(out, w);
    };
    const d = new Float64Array(gu.length);
    rk.swigluPackedBackward(d, w, gu, rows, width);
    gradCheck('dgu', loss, gu, d, gu.length);
  });
});

describe('cross-entropy', () => {
  /** Columns [c0, c0 + cols) of a row-major [rows, V] matrix, contiguous. */
  const columns = (x: F64, rows: number, V: number, c0: number, cols: number) => {
    const out = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) out.set(x.subarray(r * V + c0, r * V + c0 + cols), r * cols);
    return out;
  };
  const chunkStarts = (V: number, cols: number) => Array.from({ length: Math.ceil(V / cols) }, (_, i) => i * cols);
  /** Forward over the vocabulary a chunk at a time on the reference: lse, and logp = tlogit - lse (0 when ignored). */
  const referenceForward = (logits: F64, targets: Int32Array, V: number, cols: number) => {
    const rows = targets.length,
      lse = new Float64Array(rows).fill(-Infinity),
      tlogit = new Float64Array(rows);
    for (const c0 of chunkStarts(V, cols)) {
      const w = Math.min(cols, V - c0);
      rk.crossEntropyForward(lse, tlogit, columns(logits, rows, V, c0, w), targets, V, c0, w);
    }
    return { lse, logp: tlogit.map((x, r) => (targets[r] < 0 ? 0 : x - lse[r])) };
  };

  for (const [rows, V, cols, scale] of [
    [7, 33, 33, 3],
    [5, 1000, 300, 4],
    [4, 32000, 32000, 12],
  ])
    // one partial sum block; chunks with a short last one, partial blocks; whole blocks
    test(`native matches reference, rows=${rows} V=${V} in chunks of ${cols}, ignored rows, aliasing backward`, () => {
      const logits = rand(rows * V, scale);
      logits[5] = 50; // a dominant logit
      const targets = randInts(rows, 0, V);
      targets[1] = -100;
      targets[rows - 1] = -1;
      targets[0] = V - 1; // in the short last chunk
      const { lse, logp } = referenceForward(logits, targets, V, cols);
      for (let r = 0; r < rows; r++) {
        // the merged chunks against one log-sum-exp over the whole row
        const row = logits.subarray(r * V, (r + 1) * V),
          m = Math.max(...row);
        assertClose([lse[r]], [m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0))], `reference lse[${r}]`, 1e-14, 1e-14);
      }
      const lse32 = new Float32Array(rows).fill(-Infinity),
        tlogit32 = new Float32Array(rows);
      for (const c0 of chunkStarts(V, cols)) {
        const w = Math.min(cols, V - c0);
        nk.crossEntropyForward(lse32, tlogit32, f32(columns(logits, rows, V, c0, w)), targets, V, c0, w);
      }
      assertClose(lse32, lse, 'lse', 1e-6, 1e-5);
      assertClose(
        tlogit32.map((x, r) => (targets[r] < 0 ? 0 : x - lse32[r])),
        logp,
        'logp',
        1e-5,
        2e-5,
      );

      const dlogp = rand(rows);
      for (const c0 of chunkStarts(V, cols)) {
        const w = Math.min(cols, V - c0);
        const chunk = columns(logits, rows, V, c0, w),
          dlogits = rand(rows * w); // garbage: backward writes
        rk.crossEntropyBackward(dlogits, chunk, lse, targets, dlogp, V, c0, w);
        const chunk32 = f32(chunk);
        nk.crossEntropyBackward(chunk32, chunk32, lse32, targets, f32(dlogp), V, c0, w); // in place
        assertClose(chunk32, dlogits, `dlogits from ${c0}`, 1e-4, 1e-6);
        assert.ok(
          chunk32.subarray(w, 2 * w).every((x) => x === 0),
          'ignored row gets zero gradient',
        );
      }
    });

  test('reference gradient over chunks matches finite differences', () => {
    const rows = 4,
      V = 9,
      cols = 4,
      logits = rand(rows * V, 3),
      targets = Int32Array.from([2, -100, 8, 4]),
      c = rand(rows);
    const { lse } = referenceForward(logits, targets, V, cols);
    const grad = new Float64Array(rows * V);
    for (const c0 of chunkStarts(V, cols)) {
      const w = Math.min(cols, V - c0),
        dchunk = new Float64Array(rows * w);
      rk.crossEntropyBackward(dchunk, columns(logits, rows, V, c0, w), lse, targets, c, V, c0, w);
      for (let r = 0; r < rows; r++) grad.set(dchunk.subarray(r * w, (r + 1) * w), r * V + c0);
    }
    gradCheck('dlogits', () => weightedSum(referenceForward(logits, targets, V, cols).logp, c), logits, grad, rows * V);
  });
});

// ---------------------------------------------------------------- optimizer and vector ops

describe('adamw and vector ops', () => {
  test('adamw matches reference over several steps', () => {
    const n = 50001;
    const p = rand(n),
      m = new Float64Array(n),
      v = new Float64Array(n);
    const p32 = f32(p),
      m32 = new Float32Array(n),
      v32 = new Float32Array(n);
    for (let step = 1; step <= 4; step++) {
      const g = rand(n, 0.1 * step),
        gradScale = step % 2 ? 1 : 0.3;
      rk.adamw(p, g, m, v, 1e-3, 0.9, 0.95, 1e-8, 0.1, step, gradScale);
      nk.adamw(p32, f32(g), m32, v32, 1e-3, 0.9, 0.95, 1e-8, 0.1, step, gradScale);
    }
    assertClose(m32, m, 'm', 1e-5, 1e-7);
    assertClose(v32, v, 'v', 1e-5, 1e-9);
    assertClose(p32, p, 'p', 1e-5, 1e-6);
  });

  test('sumSquares: double accumulation, same result for 1 and 2 threads', () => {
    const x = f32(rand(200003, 3));
    const expected = rk.sumSquares(f64(x));
    const one = withThreads(1, () => nk.sumSquares(x));
    const two = withThreads(2, () => nk.sumSquares(x));
    assert.equal(one, two);
    assert.ok(Math.abs(one - expected) <= 1e-12 * expected, `${one} vs ${expected}`);
    assert.equal(nk.sumSquares(new Float32Array(0)), 0);
  });

  test('axpy, add (with aliasing)', () => {
    const n = 40007,
      a = rand(n),
      b = rand(n);
    const ry = b.slice(),
      ny = f32(b);
    rk.axpy(ry, a, 0.25);
    nk.axpy(ny, f32(a), 0.25);
    assertClose(ny, ry, 'axpy', 1e-6, 1e-7);
    const rs = new Float64Array(n),
      ns = f32(a);
    rk.add(rs, a, b);
    nk.add(ns, ns, f32(b));
    assertClose(ns, rs, 'add', 1e-6, 1e-7);
  });
});

// ---------------------------------------------------------------- validation and info

describe('validation', () => {
  const f = (n: number) => new Float32Array(n);
  const cases: [string, () => void, RegExp, ErrorConstructor][] = [
    [
      'float64 operand',
      () => nk.gemm(false, false, 2, 2, 2, 1, new Float64Array(4) as never, f(4), 0, f(4)),
      /gemm: A must be a Float32Array, got Float64Array/,
      TypeError,
    ],
    ['wrong C length', () => nk.gemm(false, false, 2, 3, 2, 1, f(4), f(6), 0, f(5)), /gemm: C has length 5, expected M\*N = 6/, RangeError],
    ['non-integer size', () => nk.gemm(false, false, 2.5, 2, 2, 1, f(5), f(4), 0, f(5)), /gemm: M must be an integer/, RangeError],
    [
      'undefined arguments',
      () => (nk.gemm as unknown as () => void).call(null),
      /gemm: transA must be a boolean, got undefined/,
      TypeError,
    ],
    [
      'id out of range',
      () => nk.embeddingForward(f(6), f(9), Int32Array.from([0, 3]), 3),
      /embeddingForward: ids\[1\] = 3 is out of range \[0, 3\)/,
      RangeError,
    ],
    [
      'ids not Int32Array',
      () => nk.embeddingBackward(f(9), f(6), [0, 1] as never, 3),
      /embeddingBackward: ids must be a Int32Array/,
      TypeError,
    ],
    [
      'odd headDim',
      () => nk.ropeForward(f(6), f(6), Int32Array.from([0]), 2, 3, new Float64Array(1), 1),
      /ropeForward: headDim must be even/,
      RangeError,
    ],
    [
      'invFreq length',
      () => nk.ropeForward(f(8), f(8), Int32Array.from([0]), 2, 4, new Float64Array(3), 1),
      /ropeForward: invFreq has length 3, expected headDim\/2 = 2/,
      RangeError,
    ],
    [
      'qkvRope packed width',
      () => nk.qkvRopeForward(f(8), f(4), f(4), f(15), Int32Array.from([0]), 2, 1, 4, new Float64Array(2), 1),
      /qkvRopeForward: qkv has length 15, expected pos.length\*\(H\+2\*KVH\)\*headDim = 16/,
      RangeError,
    ],
    [
      'swigluPacked halves',
      () => nk.swigluPackedForward(f(6), f(10), 2, 3),
      /swigluPackedForward: gu has length 10, expected rows\*2\*width = 12/,
      RangeError,
    ],
    [
      'addRmsnorm y length',
      () => nk.addRmsnormForward(f(6), f(6), f(2), f(6), f(5), f(3), 2, 3, 1e-5),
      /addRmsnormForward: y has length 5, expected rows\*dim = 6/,
      RangeError,
    ],
    [
      'invFreq type',
      () => nk.ropeBackward(f(8), f(8), Int32Array.from([0]), 2, 4, f(2) as never, 1),
      /ropeBackward: invFreq must be a Float64Array/,
      TypeError,
    ],
    [
      'slice past the end',
      () => nk.sliceColumnsForward(f(4), f(10), 2, 5, 3, 3),
      /sliceColumnsForward: start \+ width \(6\) exceeds cols \(5\)/,
      RangeError,
    ],
    ['bias length', () => nk.biasForward(f(6), f(2), 2, 3), /biasForward: b has length 2, expected dim = 3/, RangeError],
    ['normalize eps', () => nk.normalizeRowsForward(f(6), f(2), f(6), 2, 3, 0), /normalizeRowsForward: eps must be > 0/, RangeError],
    [
      'H % KVH',
      () => nk.attentionForward(f(12), f(3), f(12), f(8), f(8), dims(1, 1, 1, 1, 3, 2, 4), null),
      /attentionForward: dims.H \(3\) must be a multiple of dims.KVH \(2\)/,
      RangeError,
    ],
    [
      'Tq > Tk',
      () => nk.attentionForward(f(8), f(2), f(8), f(4), f(4), dims(1, 2, 1, 1, 1, 1, 4), null),
      /dims.Tq \(2\) must be <= dims.Tk \(1\)/,
      RangeError,
    ],
    [
      'Tk > kvCap',
      () => nk.attentionForward(f(4), f(1), f(4), f(4), f(4), dims(1, 1, 2, 1, 1, 1, 4), null),
      /dims.Tk \(2\) must be <= dims.kvCap \(1\)/,
      RangeError,
    ],
    [
      'keyStart range',
      () => nk.attentionForward(f(4), f(1), f(4), f(4), f(4), dims(1, 1, 1, 1, 1, 1, 4), Int32Array.from([2])),
      /attentionForward: keyStart\[0\] = 2 is out of range/,
      RangeError,
    ],
    [
      'k length',
      () => nk.attentionBackward(f(4), f(3), f(4), f(4), f(4), f(3), f(4), f(4), f(1), dims(1, 1, 1, 1, 1, 1, 4), null),
      /attentionBackward: dk has length 3/,
      RangeError,
    ],
    [
      'dims type',
      () => nk.attentionForward(f(4), f(1), f(4), f(4), f(4), null as never, null),
      /attentionForward: dims must be an object/,
      TypeError,
    ],
    [
      'target >= V',
      () => nk.crossEntropyForward(f(2), f(2), f(6), Int32Array.from([0, 3]), 3, 0, 3),
      /crossEntropyForward: targets\[1\] = 3 is out of range/,
      RangeError,
    ],
    [
      'chunk past V',
      () => nk.crossEntropyBackward(f(6), f(6), f(2), Int32Array.from([0, 1]), f(2), 4, 2, 3),
      /crossEntropyBackward: start \+ cols \(5\) exceeds V \(4\)/,
      RangeError,
    ],
    [
      'adamw step 0',
      () => nk.adamw(f(2), f(2), f(2), f(2), 1e-3, 0.9, 0.99, 1e-8, 0, 0, 1),
      /adamw: step must be an integer >= 1/,
      RangeError,
    ],
    [
      'adamw lengths',
      () => nk.adamw(f(2), f(3), f(2), f(2), 1e-3, 0.9, 0.99, 1e-8, 0, 1, 1),
      /adamw: g has length 3 but p has length 2/,
      RangeError,
    ],
    ['swiglu lengths', () => nk.swigluForward(f(2), f(3), f(2)), /swigluForward: gate has length 3/, RangeError],
    [
      'rmsnorm w length',
      () => nk.rmsnormForward(f(6), f(2), f(6), f(2), 2, 3, 1e-5),
      /rmsnormForward: w has length 2, expected dim = 3/,
      RangeError,
    ],
    ['non-finite scalar', () => nk.axpy(f(2), f(2), NaN), /axpy: alpha must be finite/, RangeError],
    ['setThreads(0)', () => setThreads(0), /setThreads: n must be an integer >= 1/, RangeError],
    [
      'reference checks too',
      () => rk.gemm(false, false, 2, 2, 2, 1, new Float64Array(3), new Float64Array(4), 0, new Float64Array(4)),
      /gemm: A has length 3/,
      RangeError,
    ],
    [
      'reference ids',
      () => rk.embeddingForward(new Float64Array(2), new Float64Array(4), Int32Array.from([2]), 2),
      /embeddingForward: ids\[0\] = 2/,
      RangeError,
    ],
  ];
  for (const [label, fn, message, type] of cases)
    test(label, () => assert.throws(fn, (e: Error) => e instanceof type && message.test(e.message)));
});

describe('native info and threads', () => {
  test('info reports the GEMM, threads and SIMD of the build', () => {
    const info = nativeInfo();
    assert.ok(info.openblas === null || /OpenBLAS/.test(info.openblas), String(info.openblas));
    assert.equal(info.threads, getThreads());
    assert.ok(info.simd.length > 0);
    withThreads(1, () => assert.equal(nativeInfo().threads, 1));
  });
});
