/**
 * The native kernels (build/Release/chimed_native.node, loaded on first use by addon.ts) behind
 * the kernel contract of kernels.ts. GEMM runs on the built-in blocked GEMM or OpenBLAS per shape
 * class, as gemm-choice.ts decides on the first call.
 */
import { constants as bufferConstants } from 'node:buffer';
import { addon, type NativeInfo } from './addon.js';
import { ensureGemmChoice } from './gemm-choice.js';
import { expectWeightShape, type BaseDtype, type FrozenWeight } from './frozen.js';
import type { AttentionDims, Kernels } from './kernels.js';

export type { NativeInfo } from './addon.js';
export { GOMP_SPINCOUNT_DEFAULT } from './addon.js';

type F = Float32Array;
type GemmFn = Kernels<F>['gemm'];

export const nativeKernels: Kernels<F> = {
  name: 'native',
  alloc: (n) => new Float32Array(n),
  gemm: (transA, transB, M, N, K, alpha, A, B, beta, C) => {
    ensureGemmChoice();
    addon().gemm(transA, transB, M, N, K, alpha, A, B, beta, C);
  },
  gemmWeight: (transW, M, N, K, alpha, A, W, beta, C) => {
    expectWeightShape('gemmWeight', W, transW, N, K);
    addon().gemmWeight(transW, M, N, K, alpha, A, W.dtype, W.bytes, beta, C);
  },
  decodeStep: (plan, ids, pos, keyStart, length, invFreq, ropeScale, logits) =>
    addon().decodeStep(plan, ids, pos, keyStart, length, invFreq, ropeScale, logits),
  embeddingWeight: (out, W, ids) => addon().embeddingWeight(out, W.dtype, W.bytes, W.shape[0], W.shape[1], ids),
  embeddingForward: (out, table, ids, dim) => addon().embeddingForward(out, table, ids, dim),
  embeddingBackward: (dtable, dout, ids, dim) => addon().embeddingBackward(dtable, dout, ids, dim),
  rmsnormForward: (out, rstd, x, w, rows, dim, eps) => addon().rmsnormForward(out, rstd, x, w, rows, dim, eps),
  rmsnormBackward: (dx, dw, dout, x, w, rstd, rows, dim) => addon().rmsnormBackward(dx, dw, dout, x, w, rstd, rows, dim),
  addRmsnormForward: (sum, out, rstd, x, y, w, rows, dim, eps) => addon().addRmsnormForward(sum, out, rstd, x, y, w, rows, dim, eps),
  addRmsnormBackward: (dx, dy, dw, dsum, dout, sum, w, rstd, rows, dim) =>
    addon().addRmsnormBackward(dx, dy, dw, dsum, dout, sum, w, rstd, rows, dim),
  ropeForward: (out, x, pos, heads, headDim, invFreq, scale) => addon().ropeForward(out, x, pos, heads, headDim, invFreq, scale),
  ropeBackward: (dx, dout, pos, heads, headDim, invFreq, scale) => addon().ropeBackward(dx, dout, pos, heads, headDim, invFreq, scale),
  qkvRopeForward: (q, k, v, qkv, pos, H, KVH, headDim, invFreq, scale) =>
    addon().qkvRopeForward(q, k, v, qkv, pos, H, KVH, headDim, invFreq, scale),
  qkvRopeBackward: (dqkv, dq, dk, dv, pos, H, KVH, headDim, invFreq, scale) =>
    addon().qkvRopeBackward(dqkv, dq, dk, dv, pos, H, KVH, headDim, invFreq, scale),
  biasForward: (y, b, rows, dim) => addon().biasForward(y, b, rows, dim),
  biasBackward: (db, dy, rows, dim) => addon().biasBackward(db, dy, rows, dim),
  sliceColumnsForward: (out, x, rows, cols, start, width) => addon().sliceColumnsForward(out, x, rows, cols, start, width),
  sliceColumnsBackward: (dx, dout, rows, cols, start, width) => addon().sliceColumnsBackward(dx, dout, rows, cols, start, width),
  normalizeRowsForward: (out, norm, w, rows, dim, eps) => addon().normalizeRowsForward(out, norm, w, rows, dim, eps),
  normalizeRowsBackward: (dw, dout, out, norm, rows, dim, eps) => addon().normalizeRowsBackward(dw, dout, out, norm, rows, dim, eps),
  attentionForward: (out, lse, q, k, v, dims: AttentionDims, keyStart) => addon().attentionForward(out, lse, q, k, v, dims, keyStart),
  attentionBackward: (dq, dk, dv, dout, q, k, v, out, lse, dims: AttentionDims, keyStart) =>
    addon().attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, dims, keyStart),
  swigluForward: (out, gate, up) => addon().swigluForward(out, gate, up),
  swigluBackward: (dgate, dup, dout, gate, up) => addon().swigluBackward(dgate, dup, dout, gate, up),
  swigluPackedForward: (out, gu, rows, width) => addon().swigluPackedForward(out, gu, rows, width),
  swigluPackedBackward: (dgu, dout, gu, rows, width) => addon().swigluPackedBackward(dgu, dout, gu, rows, width),
  crossEntropyForward: (lse, tlogit, logits, targets, V, start, cols) =>
    addon().crossEntropyForward(lse, tlogit, logits, targets, V, start, cols),
  crossEntropyBackward: (dlogits, logits, lse, targets, dlogp, V, start, cols) =>
    addon().crossEntropyBackward(dlogits, logits, lse, targets, dlogp, V, start, cols),
  adamw: (p, g, m, v, lr, beta1, beta2, eps, weightDecay, step, gradScale) =>
    addon().adamw(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step, gradScale),
  sumSquares: (x) => addon().sumSquares(x),
  axpy: (y, x, alpha) => addon().axpy(y, x, alpha),
  add: (out, a, b) => addon().add(out, a, b),
};

/** The built-in blocked GEMM, whatever the dispatch; same contract as Kernels.gemm (tests, benchmarks). */
export const gemmBuiltin: GemmFn = (transA, transB, M, N, K, alpha, A, B, beta, C) =>
  addon().gemmBuiltin(transA, transB, M, N, K, alpha, A, B, beta, C);

/** OpenBLAS's sgemm split over the same thread team, whatever the dispatch; throws when the build has no OpenBLAS. */
export const gemmOpenblas: GemmFn = (transA, transB, M, N, K, alpha, A, B, beta, C) =>
  addon().gemmOpenblas(transA, transB, M, N, K, alpha, A, B, beta, C);

/** The GEMM shape class of a product ("NT-large", ...; "few-rows" for M <= 8, which both paths run alike). */
export function gemmClassOf(transA: boolean, transB: boolean, M: number, N: number, K: number): string {
  return addon().gemmClassOf(transA, transB, M, N, K);
}

/** Sets the number of threads of every native kernel (OpenMP; OpenBLAS runs single-threaded inside each block). */
export function setThreads(n: number): void {
  addon().setThreads(n);
}

export function getThreads(): number {
  return addon().getThreads();
}

export function nativeInfo(): NativeInfo {
  return addon().info();
}

/** A [rows, cols] matrix's bytes in one dtype converted to another, row by row on all threads (checkpoints, merging). */
export function convertWeight(dtype: BaseDtype, bytes: Uint8Array, rows: number, cols: number, to: BaseDtype, out: Uint8Array): void {
  addon().convertWeight(dtype, bytes, rows, cols, to, out);
}

/** Index of the first NaN or infinite value of a stored matrix (q8_0: of a block with such a scale), or -1. */
export function firstNonFiniteWeight(dtype: BaseDtype, bytes: Uint8Array, rows: number, cols: number): number {
  return addon().firstNonFiniteWeight(dtype, bytes, rows, cols);
}

/**
 * Bytes [offset, offset + length) of a file through a private (copy-on-write) memory map: pages
 * are read on first touch, never copied into the heap. length is at most MAX_MAPPED_BYTES.
 */
export function mapFile(file: string, offset: number, length: number): ArrayBuffer {
  if (length > MAX_MAPPED_BYTES)
    throw new RangeError(`mapFile: ${length} bytes of ${file} in one buffer, more than Node's ${MAX_MAPPED_BYTES}`);
  return addon().mapFile(file, offset, length);
}

/** The longest buffer Node makes (4 GiB in Node 20): a larger file is mapped in windows. */
export const MAX_MAPPED_BYTES = bufferConstants.MAX_LENGTH;

/** A frozen weight as float32 through the native converter (export, merging). */
export function frozenToF32(W: FrozenWeight): Float32Array {
  const out = new Float32Array(W.size);
  convertWeight(W.dtype, W.bytes, W.shape[0], W.shape[1], 'f32', new Uint8Array(out.buffer));
  return out;
}
