import { parse } from '../src/io/argv.js';
import { gemmBuiltin, getThreads, nativeInfo, nativeKernels as nk, setThreads } from '../src/engine/native.js';
import { Rng } from '../src/engine/rng.js';

const USAGE = `chimed bench kernels [--threads N] [--seq 256,1024,4096] [--heads 8] [--kv-heads 8] [--head-dim 64] [--gemm 1024x1024x1024,...] [--json]

Times the native kernels: GEMM in GFLOP/s through OpenBLAS (when linked) and through the
built-in blocked GEMM, for square and transformer-shaped products, and causal attention
forward and backward at each sequence length (batch 1). Each figure is the best of several
runs after a warm-up.`;

interface GemmShape {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  label: string;
}

// Square products, the three products of a linear layer on 4096 tokens (dim 512 -> 1536):
// forward x W^T, input gradient dy W, weight gradient dy^T x, and one decoding step's lm head.
const DEFAULT_GEMMS: GemmShape[] = [
  { M: 1024, N: 1024, K: 1024, transA: false, transB: false, label: 'square 1024' },
  { M: 2048, N: 2048, K: 2048, transA: false, transB: false, label: 'square 2048' },
  { M: 4096, N: 1536, K: 512, transA: false, transB: true, label: 'linear forward (NT)' },
  { M: 4096, N: 512, K: 1536, transA: false, transB: false, label: 'linear dx (NN)' },
  { M: 1536, N: 512, K: 4096, transA: true, transB: false, label: 'linear dW (TN)' },
  { M: 1, N: 32000, K: 512, transA: false, transB: true, label: 'decode lm head (NT)' },
];

/** Best wall time in ms of fn over runs that together take at least minMs (after one warm-up). */
function bestMs(fn: () => void, minMs = 300, maxRuns = 20): number {
  fn();
  let best = Infinity,
    total = 0;
  for (let run = 0; run < maxRuns && (run < 2 || total < minMs); run++) {
    const t0 = process.hrtime.bigint();
    fn();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    best = Math.min(best, ms);
    total += ms;
  }
  return best;
}

function randomArray(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() * 2 - 1;
  return a;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

function benchGemm(shape: GemmShape, rng: Rng) {
  const { M, N, K, transA, transB } = shape;
  const A = randomArray(M * K, rng),
    B = randomArray(K * N, rng),
    C = new Float32Array(M * N);
  const gflop = (2 * M * N * K) / 1e9;
  const blasMs = bestMs(() => nk.gemm(transA, transB, M, N, K, 1, A, B, 0, C));
  const builtinMs = bestMs(() => gemmBuiltin(transA, transB, M, N, K, 1, A, B, 0, C));
  return { ...shape, gemm_gflops: round(gflop / (blasMs / 1e3)), builtin_gflops: round(gflop / (builtinMs / 1e3)) };
}

function benchAttention(T: number, H: number, KVH: number, headDim: number, rng: Rng) {
  const dims = { B: 1, Tq: T, Tk: T, kvCap: T, H, KVH, headDim, scale: 1 / Math.sqrt(headDim) };
  const nq = T * H * headDim,
    nkv = T * KVH * headDim;
  const q = randomArray(nq, rng),
    k = randomArray(nkv, rng),
    v = randomArray(nkv, rng),
    dout = randomArray(nq, rng);
  const out = new Float32Array(nq),
    lse = new Float32Array(H * T);
  const dq = new Float32Array(nq),
    dk = new Float32Array(nkv),
    dv = new Float32Array(nkv);
  const minMs = T >= 4096 ? 0 : 300;
  const fwdMs = bestMs(() => nk.attentionForward(out, lse, q, k, v, dims, null), minMs, T >= 4096 ? 2 : 20);
  const bwdMs = bestMs(() => nk.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, dims, null), minMs, T >= 4096 ? 2 : 20);
  // visible (query, key) pairs; forward does 2 products of 2*hd flops per pair, backward 5
  const pairs = (H * T * (T + 1)) / 2;
  return {
    T,
    H,
    KVH,
    headDim,
    forward_ms: round(fwdMs),
    backward_ms: round(bwdMs),
    forward_gflops: round((4 * headDim * pairs) / 1e9 / (fwdMs / 1e3)),
    backward_gflops: round((10 * headDim * pairs) / 1e9 / (bwdMs / 1e3)),
  };
}

function parseGemmShapes(list: string[]): GemmShape[] {
  return list.map((s) => {
    const m = /^(\d+)x(\d+)x(\d+)(?::([NT])([NT]))?$/.exec(s);
    if (!m) throw new Error(`--gemm: expected MxNxK or MxNxK:TT (e.g. 4096x1536x512:NT), got "${s}"`);
    return { M: +m[1], N: +m[2], K: +m[3], transA: m[4] === 'T', transB: m[5] === 'T', label: s };
  });
}

/** `chimed bench kernels`: prints one JSON object (or a table) and returns it. */
export async function benchKernels(argv: string[]): Promise<Record<string, unknown> | null> {
  const a = parse(
    argv,
    {
      threads: { type: 'string' },
      seq: { type: 'string' },
      heads: { type: 'string' },
      'kv-heads': { type: 'string' },
      'head-dim': { type: 'string' },
      gemm: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (a.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  if (a.str('threads') !== undefined) setThreads(a.int('threads'));
  const seqs = a.list('seq').map(Number);
  const H = a.int('heads', 8),
    KVH = a.int('kv-heads', H),
    headDim = a.int('head-dim', 64);
  const rng = new Rng(1);
  const gemm = (a.str('gemm') ? parseGemmShapes(a.list('gemm')) : DEFAULT_GEMMS).map((s) => benchGemm(s, rng));
  const attention = (seqs.length ? seqs : [256, 1024, 4096]).map((T) => benchAttention(T, H, KVH, headDim, rng));
  const result = { bench: 'kernels', ...nativeInfo(), threads: getThreads(), gemm, attention };
  if (a.flag('json')) process.stdout.write(JSON.stringify(result) + '\n');
  else {
    const lines = [`blas ${result.blas}, ${result.threads} threads, ${result.simd}`];
    for (const g of gemm)
      lines.push(
        `gemm ${g.label.padEnd(22)} ${`${g.M}x${g.N}x${g.K}`.padEnd(16)} gemm ${g.gemm_gflops} GFLOP/s, builtin ${g.builtin_gflops} GFLOP/s`,
      );
    for (const t of attention)
      lines.push(
        `attention T=${t.T} H=${t.H} KVH=${t.KVH} hd=${t.headDim}: forward ${t.forward_ms} ms (${t.forward_gflops} GFLOP/s), backward ${t.backward_ms} ms (${t.backward_gflops} GFLOP/s)`,
      );
    process.stdout.write(lines.join('\n') + '\n');
  }
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) await benchKernels(process.argv.slice(2));
