/**
 * The native kernels (build/Release/chimed_native.node, loaded on first use by addon.ts) behind
 * the kernel contract of kernels.ts. GEMM runs on the built-in blocked GEMM or OpenBLAS per shape
 * class, as gemm-choice.ts decides on the first call.
 */
import { addon, type NativeInfo } from './addon.js';
import { ensureGemmChoice } from './gemm-choice.js';
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
  embeddingForward: (out, table, ids, dim) => addon().embeddingForward(out, table, ids, dim),
  embeddingBackward: (dtable, dout, ids, dim) => addon().embeddingBackward(dtable, dout, ids, dim),
  rmsnormForward: (out, rstd, x, w, rows, dim, eps) => addon().rmsnormForward(out, rstd, x, w, rows, dim, eps),
  rmsnormBackward: (dx, dw, dout, x, w, rstd, rows, dim) => addon().rmsnormBackward(dx, dw, dout, x, w, rstd, rows, dim),
  ropeForward: (out, x, pos, heads, headDim, invFreq, scale) => addon().ropeForward(out, x, pos, heads, headDim, invFreq, scale),
  ropeBackward: (dx, dout, pos, heads, headDim, invFreq, scale) => addon().ropeBackward(dx, dout, pos, heads, headDim, invFreq, scale),
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
  crossEntropyForward: (lse, tlogit, logits, targets, V, start, cols) =>
    addon().crossEntropyForward(lse, tlogit, logits, targets, V, start, cols),
  crossEntropyBackward: (dlogits, logits, lse, targets, dlogp, V, start, cols) =>
    addon().crossEntropyBackward(dlogits, logits, lse, targets, dlogp, V, start, cols),
  adamw: (p, g, m, v, lr, beta1, beta2, eps, weightDecay, step) => addon().adamw(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step),
  sumSquares: (x) => addon().sumSquares(x),
  scale: (x, s) => addon().scale(x, s),
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
