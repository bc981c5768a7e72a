/**
 * Loads the native addon (build/Release/chimed_native.node: C++17, OpenMP, OpenBLAS when the
 * build found it) on first use, so importing the engine never fails; a missing build fails the
 * first kernel call with instructions. native.ts wraps it as the kernel contract.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kernels } from './kernels.js';

type F = Float32Array;
type GemmFn = Kernels<F>['gemm'];

export type GemmBackend = 'builtin' | 'openblas';
/** Backend per GEMM shape class, e.g. {"NT-large": "builtin", ...}: every class of the addon. */
export type GemmBackends = Record<string, GemmBackend>;

export interface NativeInfo {
  /** OpenBLAS's build description when the addon links it ("OpenBLAS 0.3.21 DYNAMIC_ARCH ..."), else null. */
  openblas: string | null;
  /** Threads the kernels run on (OpenMP team size). */
  threads: number;
  /** Instruction sets the addon was compiled for, e.g. "avx512f avx512bw avx512vl avx2 fma avx". */
  simd: string;
}

/** The addon's exports: the kernel contract (same argument order) plus GEMM dispatch and thread control. */
export interface Addon extends Omit<Kernels<F>, 'name' | 'alloc' | 'gemmWeight' | 'embeddingWeight' | 'decodeStep'> {
  decodeStep: NonNullable<Kernels<F>['decodeStep']>;
  gemmBuiltin: GemmFn;
  /** Throws when the build has no OpenBLAS. */
  gemmOpenblas: GemmFn;
  /** The shape class a product belongs to ("NT-large", ...), "few-rows" for M <= 8 (same kernel on both paths). */
  gemmClassOf(transA: boolean, transB: boolean, M: number, N: number, K: number): string;
  getGemmBackends(): GemmBackends;
  setGemmBackends(backends: GemmBackends): void;
  /** Best CPU ms (all threads) of each class's representative products per backend over `rounds` interleaved rounds (null: no OpenBLAS). */
  gemmMeasure(rounds: number): Record<string, Record<GemmBackend, number | null>>;
  gemmWeight(
    transW: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: F,
    dtype: string,
    bytes: Uint8Array,
    beta: number,
    C: F,
  ): void;
  embeddingWeight(out: F, dtype: string, bytes: Uint8Array, rows: number, cols: number, ids: Int32Array): void;
  convertWeight(dtype: string, bytes: Uint8Array, rows: number, cols: number, to: string, out: Uint8Array): void;
  firstNonFiniteWeight(dtype: string, bytes: Uint8Array, rows: number, cols: number): number;
  mapFile(file: string, offset: number, length: number): ArrayBuffer;
  setThreads(n: number): void;
  getThreads(): number;
  info(): NativeInfo;
}

/** The folder holding package.json, found by walking up from this file (src/ or dist/src/). */
export function packageRoot(): string {
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

function applyThreadPolicy(env: NodeJS.ProcessEnv): void {
  if (env.OMP_WAIT_POLICY === undefined && env.GOMP_SPINCOUNT === undefined) env.GOMP_SPINCOUNT = GOMP_SPINCOUNT_DEFAULT;
  env.OPENBLAS_NUM_THREADS ??= '1';
}

let loaded: { addon: Addon; file: string } | undefined;

function load(): { addon: Addon; file: string } {
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
    loaded = { addon: createRequire(import.meta.url)(file) as Addon, file };
  } catch (e) {
    throw new Error(
      `chimed: cannot load the native addon ${file}: ${(e as Error).message}. Rebuild it in ${root} with \`npm run install\` (node-gyp rebuild).`,
    );
  }
  return loaded;
}

export function addon(): Addon {
  return load().addon;
}

/** Path of the loaded addon binary (its content identifies the build). */
export function addonFile(): string {
  return load().file;
}
