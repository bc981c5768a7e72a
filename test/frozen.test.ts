// Frozen weights (bf16, f16, q8_0): the native codecs against the TS reference ones bit for
// bit, and the native products that read them (gemmWeight, embeddingWeight) against the
// float64 reference on the same stored values, on every path (few rows, packed; both
// transpositions; 1 and 2 threads).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeFrozen, FrozenWeight, type FrozenDtype } from '../src/engine/frozen.js';
import { convertWeight, firstNonFiniteWeight, getThreads, nativeKernels as nk, setThreads } from '../src/engine/native.js';
import { referenceKernels as rk } from '../src/engine/reference.js';
import { Rng } from '../src/engine/rng.js';
import { assertClose } from './helpers.js';

const DTYPES: FrozenDtype[] = ['bf16', 'f16', 'q8_0'];
const rng = new Rng(7);
const randF32 = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * scale);

function nativeEncode(dtype: FrozenDtype, values: Float32Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(encodeFrozen(dtype, new Float32Array(rows * cols), [rows, cols]).bytes.length);
  convertWeight('f32', new Uint8Array(values.buffer, values.byteOffset, values.byteLength), rows, cols, dtype, out);
  return out;
}

function withThreads(n: number, fn: () => void): void {
  const before = getThreads();
  setThreads(n);
  try {
    fn();
  } finally {
    setThreads(before);
  }
}

describe('frozen weight codecs', () => {
  test('native encoding equals the TS reference bit for bit, specials included', () => {
    const rows = 3,
      cols = 64;
    const v = randF32(rows * cols, 4);
    // ties of bf16 / f16 rounding, subnormals, overflow, signed zero, NaN and infinities
    v.set([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 6e-8, -3e-5, 70000, -0, NaN, Infinity, -Infinity, 1e-40], 0);
    for (const dtype of DTYPES) {
      const vals = dtype === 'q8_0' ? v.map((x) => (Number.isFinite(x) ? x : 0)) : v;
      assert.deepEqual(nativeEncode(dtype, vals, rows, cols), encodeFrozen(dtype, vals, [rows, cols]).bytes, dtype);
    }
  });

  test('native decoding equals the TS reference', () => {
    for (const dtype of DTYPES) {
      const W = encodeFrozen(dtype, randF32(4 * 96), [4, 96]);
      const out = new Float32Array(W.size);
      convertWeight(dtype, W.bytes, 4, 96, 'f32', new Uint8Array(out.buffer));
      assert.deepEqual(out, W.toF32(), dtype);
    }
  });

  test('non-finite values are found where they are', () => {
    const v = randF32(2 * 64);
    assert.equal(firstNonFiniteWeight('f32', new Uint8Array(v.buffer), 2, 64), -1);
    v[77] = NaN;
    v[100] = Infinity;
    assert.equal(firstNonFiniteWeight('f32', new Uint8Array(v.buffer), 2, 64), 77);
    for (const dtype of ['bf16', 'f16'] as const)
      assert.equal(firstNonFiniteWeight(dtype, encodeFrozen(dtype, v, [2, 64]).bytes, 2, 64), 77);
    const q = encodeFrozen('q8_0', randF32(2 * 64), [2, 64]).bytes;
    q.set([0x00, 0x7c], 34 * 2); // third block's scale = +inf
    assert.equal(firstNonFiniteWeight('q8_0', q, 2, 64), 64);
  });

  test('a q8_0 matrix needs whole blocks, a byte length that fits, the shape the product names', () => {
    assert.throws(() => encodeFrozen('q8_0', new Float32Array(40), [1, 40]), /multiple of 32/);
    assert.throws(() => new FrozenWeight('bf16', [2, 3], new Uint8Array(10)), /needs 12 bytes, got 10/);
    const W = encodeFrozen('bf16', randF32(6), [2, 3]);
    assert.throws(
      () => nk.gemmWeight(true, 1, 3, 2, 1, new Float32Array(2), W, 0, new Float32Array(3)),
      /W is \[2,3\] but the product needs \[3,2\]/,
    );
  });
});

describe('products with frozen weights', () => {
  test('gemmWeight matches the float64 reference on every path', () => {
    for (const dtype of DTYPES)
      for (const transW of [true, false])
        for (const M of [1, 3, 5, 8, 9, 70])
          for (const threads of [1, 2]) {
            const N = transW ? 45 : 96,
              K = transW ? (dtype === 'q8_0' ? 160 : 179) : 37; // the weight's rows hold whole q8_0 blocks either way
            const W = encodeFrozen(dtype, randF32(N * K, 0.5), transW ? [N, K] : [K, N]);
            const A = randF32(M * K);
            const C0 = randF32(M * N);
            for (const beta of [0, 1]) {
              const C = C0.slice();
              withThreads(threads, () => nk.gemmWeight(transW, M, N, K, 0.75, A, W, beta, C));
              const want = Float64Array.from(C0);
              rk.gemmWeight(transW, M, N, K, 0.75, Float64Array.from(A), W, beta, want);
              assertClose(C, want, `${dtype} transW=${transW} M=${M} threads=${threads} beta=${beta}`, 1e-5, 2e-6 * K);
            }
          }
  });

  test('a decoding product split between threads matches, rows and columns left over included', () => {
    // big enough for the threaded few-rows kernel; N leaves rows over the groups of 4, K (bf16,
    // f16) columns over the 64-byte lines and the vector width
    const N = 3203;
    for (const dtype of DTYPES)
      for (const M of [1, 3]) {
        const K = dtype === 'q8_0' ? 160 : 179;
        const W = encodeFrozen(dtype, randF32(N * K, 0.5), [N, K]);
        const A = randF32(M * K);
        const C = new Float32Array(M * N);
        withThreads(2, () => nk.gemmWeight(true, M, N, K, 1, A, W, 0, C));
        const want = new Float64Array(M * N);
        rk.gemmWeight(true, M, N, K, 1, Float64Array.from(A), W, 0, want);
        assertClose(C, want, `${dtype} M=${M}`, 1e-5, 2e-6 * K);
      }
  });

  test('a large product takes the packed path and still matches', () => {
    const [M, N, K] = [300, 200, 416];
    for (const dtype of DTYPES) {
      const W = encodeFrozen(dtype, randF32(N * K, 0.1), [N, K]);
      const A = randF32(M * K);
      const C = new Float32Array(M * N);
      nk.gemmWeight(true, M, N, K, 1, A, W, 0, C);
      const want = new Float64Array(M * N);
      rk.gemmWeight(true, M, N, K, 1, Float64Array.from(A), W, 0, want);
      assertClose(C, want, dtype, 1e-5, 1e-5 * K);
    }
  });

  test('embeddingWeight returns the stored rows', () => {
    for (const dtype of DTYPES) {
      const W = encodeFrozen(dtype, randF32(50 * 64), [50, 64]);
      const ids = Int32Array.of(3, 49, 0, 3);
      const out = new Float32Array(ids.length * 64);
      nk.embeddingWeight(out, W, ids);
      const want = new Float64Array(out.length);
      rk.embeddingWeight(want, W, ids);
      assert.deepEqual(Array.from(out), Array.from(want), dtype);
      assert.throws(() => nk.embeddingWeight(out, W, Int32Array.of(50, 0, 0, 0)), /out of range/);
    }
  });
});
