/**
 * The native kernels (build/Release/chimed_native.node: C++17, OpenMP, OpenBLAS when present)
 * behind the kernel contract of kernels.ts. The addon is loaded on first use, so importing this
 * module never fails; a missing build fails the first kernel call with instructions.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AttentionDims, Kernels } from './kernels.js';

type F = Float32Array;

export interface NativeInfo {
  /** Which GEMM `gemm` uses: OpenBLAS's cblas_sgemm, or the built-in blocked GEMM. */
  blas: 'openblas' | 'builtin';
  /** Threads the kernels run on (OpenMP team size). */
  threads: number;
  /** Instruction sets the addon was compiled for, e.g. "avx512f avx512bw avx512vl avx2 fma avx". */
  simd: string;
}

type GemmFn = Kernels<F>['gemm'];

/** The addon's exports: the kernel contract (same argument order) plus thread control. */
interface Addon extends Omit<Kernels<F>, 'name' | 'alloc'> {
  gemmBuiltin: GemmFn;
  setThreads(n: number): void;
  getThreads(): number;
  info(): NativeInfo;
}

/** The folder holding package.json, found by walking up from this file (src/ or dist/src/). */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`chimed: cannot find package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

/**
 * How idle kernel threads wait, set in the environment before the addon (and with it libgomp
 * and OpenBLAS, which read it once as they load) is loaded. libgomp's default spins about
 * 300,000 times at every barrier before sleeping; with another process on the same cores the
 * spinning thread holds a core the other team needs, and small-op workloads (MCQ scoring,
 * decoding) slow down tenfold. GOMP_SPINCOUNT_DEFAULT keeps a short spin, which costs the solo
 * speed nothing measurable (bench contention). OpenBLAS runs single-threaded inside our own
 * OpenMP blocks, so its own thread pool is never started. A value the user set is kept.
 */
export const GOMP_SPINCOUNT_DEFAULT = '10000';

export function applyThreadPolicy(env: NodeJS.ProcessEnv): void {
  if (env.OMP_WAIT_POLICY === undefined && env.GOMP_SPINCOUNT === undefined) env.GOMP_SPINCOUNT = GOMP_SPINCOUNT_DEFAULT;
  env.OPENBLAS_NUM_THREADS ??= '1';
}

let loaded: Addon | undefined;

function addon(): Addon {
  if (loaded) return loaded;
  const root = packageRoot();
  const file = path.join(root, 'build', 'Release', 'chimed_native.node');
  if (!existsSync(file)) {
    throw new Error(
      `chimed: the native addon ${file} is missing. Build it in ${root} with \`npm ci\` or \`npm run install\` (node-gyp rebuild).`,
    );
  }
  applyThreadPolicy(process.env);
  try {
    loaded = createRequire(import.meta.url)(file) as Addon;
  } catch (e) {
    throw new Error(
      `chimed: cannot load the native addon ${file}: ${(e as Error).message}. Rebuild it in ${root} with \`npm run install\` (node-gyp rebuild).`,
    );
  }
  return loaded;
}

export const nativeKernels: Kernels<F> = {
  name: 'native',
  alloc: (n) => new Float32Array(n),
  gemm: (transA, transB, M, N, K, alpha, A, B, beta, C) => addon().gemm(transA, transB, M, N, K, alpha, A, B, beta, C),
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
  crossEntropyForward: (logp, lse, logits, targets, V) => addon().crossEntropyForward(logp, lse, logits, targets, V),
  crossEntropyBackward: (dlogits, logits, lse, targets, dlogp, V) => addon().crossEntropyBackward(dlogits, logits, lse, targets, dlogp, V),
  adamw: (p, g, m, v, lr, beta1, beta2, eps, weightDecay, step) => addon().adamw(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step),
  sumSquares: (x) => addon().sumSquares(x),
  scale: (x, s) => addon().scale(x, s),
  axpy: (y, x, alpha) => addon().axpy(y, x, alpha),
  add: (out, a, b) => addon().add(out, a, b),
};

/**
 * The built-in blocked GEMM, whatever `gemm` uses. Same contract as Kernels.gemm; exposed so
 * tests and benchmarks can compare it with OpenBLAS in one build.
 */
export const gemmBuiltin: GemmFn = (transA, transB, M, N, K, alpha, A, B, beta, C) =>
  addon().gemmBuiltin(transA, transB, M, N, K, alpha, A, B, beta, C);

/** Sets the number of threads of every native kernel (OpenMP, and OpenBLAS when linked). */
export function setThreads(n: number): void {
  addon().setThreads(n);
}

export function getThreads(): number {
  return addon().getThreads();
}

export function nativeInfo(): NativeInfo {
  return addon().info();
}
