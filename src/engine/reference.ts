/**
 * The float64 reference implementation of the kernel contract: plain loops written for
 * clarity, not speed. It is the specification the native kernels are tested against, and a
 * whole model can run on it for finite-difference gradient checks, so it follows the contract
 * to the letter: backward kernels accumulate (crossEntropyBackward writes), ignored rows,
 * keyStart, kvCap and GQA behave exactly as in src/engine/kernels.ts.
 *
 * One convention the contract leaves open: an attention query that sees no key at all (its
 * position is before keyStart) gets a zero output and lse = -Infinity, and no gradient.
 */
import { expectWeightShape, quantisesActivation, roundQ8_0 } from './frozen.js';
import type { AttentionDims, Kernels } from './kernels.js';

type F = Float64Array;

function fail(kernel: string, message: string): never {
  throw new RangeError(`${kernel}: ${message}`);
}

function expectType(kernel: string, name: string, a: unknown, type: typeof Float64Array | typeof Int32Array): void {
  if (!(a instanceof type)) throw new TypeError(`${kernel}: ${name} must be a ${type.name}`);
}

function expectLength(kernel: string, name: string, a: F | Int32Array, n: number, formula: string): void {
  if (a.length !== n) fail(kernel, `${name} has length ${a.length}, expected ${formula} = ${n}`);
}

function expectSize(kernel: string, name: string, n: number, min = 0): void {
  if (!Number.isSafeInteger(n) || n < min) fail(kernel, `${name} must be an integer >= ${min}, got ${n}`);
}

function checkEmbedding(kernel: string, rowsName: string, rowsArr: F, table: F, ids: Int32Array, dim: number): void {
  expectSize(kernel, 'dim', dim, 1);
  if (table.length % dim !== 0) fail(kernel, `table has length ${table.length}, not a multiple of dim = ${dim}`);
  expectLength(kernel, rowsName, rowsArr, ids.length * dim, 'ids.length*dim');
  expectIndices(kernel, 'ids', ids, 0, table.length / dim);
}

function expectIndices(kernel: string, name: string, ids: Int32Array, lo: number, hi: number): void {
  ids.forEach((id, i) => {
    if (id < lo || id >= hi) fail(kernel, `${name}[${i}] = ${id} is out of range [${lo}, ${hi})`);
  });
}

function checkDims(kernel: string, d: AttentionDims, keyStart: Int32Array | null): void {
  for (const key of ['B', 'Tq', 'Tk', 'kvCap', 'H', 'KVH', 'headDim'] as const) expectSize(kernel, `dims.${key}`, d[key], 1);
  if (!Number.isFinite(d.scale)) fail(kernel, `dims.scale must be finite, got ${d.scale}`);
  if (d.Tq > d.Tk) fail(kernel, `dims.Tq (${d.Tq}) must be <= dims.Tk (${d.Tk})`);
  if (d.Tk > d.kvCap) fail(kernel, `dims.Tk (${d.Tk}) must be <= dims.kvCap (${d.kvCap})`);
  if (d.H % d.KVH !== 0) fail(kernel, `dims.H (${d.H}) must be a multiple of dims.KVH (${d.KVH})`);
  if (d.kvHeadMajor !== undefined && typeof d.kvHeadMajor !== 'boolean')
    fail(kernel, `dims.kvHeadMajor must be a boolean or absent, got ${d.kvHeadMajor}`);
  if (keyStart) {
    expectType(kernel, 'keyStart', keyStart, Int32Array);
    expectLength(kernel, 'keyStart', keyStart, d.B, 'dims.B');
    expectIndices(kernel, 'keyStart', keyStart, 0, d.Tk + 1);
  }
}

/** Index helpers for the attention layouts: q/out [B,Tq,H,hd], k/v [B,kvCap,KVH,hd] (or [B,KVH,kvCap,hd]), lse [B,H,Tq]. */
function attentionLayout(d: AttentionDims) {
  const hd = d.headDim;
  return {
    q: (b: number, i: number, h: number) => ((b * d.Tq + i) * d.H + h) * hd,
    kv: (b: number, j: number, kvh: number) => (d.kvHeadMajor ? (b * d.KVH + kvh) * d.kvCap + j : (b * d.kvCap + j) * d.KVH + kvh) * hd,
    lse: (b: number, h: number, i: number) => (b * d.H + h) * d.Tq + i,
    kvHead: (h: number) => Math.floor(h / (d.H / d.KVH)),
    /** Visible keys of query i in batch b: [first, last], empty when first > last. */
    keys: (b: number, i: number, keyStart: Int32Array | null) => ({ first: keyStart ? keyStart[b] : 0, last: d.Tk - d.Tq + i }),
  };
}

function dot(a: F, aOff: number, b: F, bOff: number, n: number): number {
  let s = 0;
  for (let c = 0; c < n; c++) s += a[aOff + c] * b[bOff + c];
  return s;
}

/** scale * cos/sin of the RoPE angles of one position: pos * invFreq[i]. */
function ropeAngles(pos: number, invFreq: Float64Array, scale: number): { cos: number[]; sin: number[] } {
  const cos: number[] = [];
  const sin: number[] = [];
  for (const f of invFreq) {
    cos.push(scale * Math.cos(pos * f));
    sin.push(scale * Math.sin(pos * f));
  }
  return { cos, sin };
}

function checkRope(
  kernel: string,
  dst: F,
  src: F,
  pos: Int32Array,
  heads: number,
  headDim: number,
  invFreq: Float64Array,
  scale: number,
): void {
  expectType(kernel, 'pos', pos, Int32Array);
  expectType(kernel, 'invFreq', invFreq, Float64Array);
  expectSize(kernel, 'heads', heads, 1);
  expectSize(kernel, 'headDim', headDim, 2);
  if (headDim % 2 !== 0) fail(kernel, `headDim must be even, got ${headDim}`);
  expectLength(kernel, 'invFreq', invFreq, headDim / 2, 'headDim/2');
  if (!invFreq.every(Number.isFinite)) fail(kernel, 'invFreq must be finite');
  if (!Number.isFinite(scale)) fail(kernel, `scale must be finite, got ${scale}`);
  expectLength(kernel, 'x', src, pos.length * heads * headDim, 'pos.length*heads*headDim');
  expectLength(kernel, 'out', dst, pos.length * heads * headDim, 'pos.length*heads*headDim');
}

function checkRows(kernel: string, arrays: [string, F][], rows: number, dim: number): void {
  expectSize(kernel, 'rows', rows);
  expectSize(kernel, 'dim', dim, 1);
  for (const [name, a] of arrays) expectLength(kernel, name, a, rows * dim, 'rows*dim');
}

function checkSlice(
  kernel: string,
  wideName: string,
  wide: F,
  narrowName: string,
  narrow: F,
  rows: number,
  cols: number,
  start: number,
  width: number,
): void {
  expectSize(kernel, 'rows', rows);
  expectSize(kernel, 'cols', cols, 1);
  expectSize(kernel, 'start', start);
  expectSize(kernel, 'width', width, 1);
  if (start + width > cols) fail(kernel, `start + width (${start + width}) exceeds cols (${cols})`);
  expectLength(kernel, wideName, wide, rows * cols, 'rows*cols');
  expectLength(kernel, narrowName, narrow, rows * width, 'rows*width');
}

/** Column ranges [start, width] of q, k and v in a fused [rows, (H + 2 KVH) headDim] projection, after checking the lengths. */
function qkvParts(kernel: string, packed: F, q: F, k: F, v: F, rows: number, H: number, KVH: number, headDim: number) {
  for (const [name, n] of [
    ['H', H],
    ['KVH', KVH],
  ] as const)
    expectSize(kernel, name, n, 1);
  const qD = H * headDim,
    kvD = KVH * headDim,
    cols = qD + 2 * kvD;
  expectLength(kernel, 'qkv', packed, rows * cols, 'pos.length*(H+2*KVH)*headDim');
  expectLength(kernel, 'q', q, rows * qD, 'pos.length*H*headDim');
  expectLength(kernel, 'k', k, rows * kvD, 'pos.length*KVH*headDim');
  expectLength(kernel, 'v', v, rows * kvD, 'pos.length*KVH*headDim');
  return { cols, q: [0, qD] as [number, number], k: [qD, kvD] as [number, number], v: [qD + kvD, kvD] as [number, number] };
}

function checkPacked(kernel: string, gu: F, half: F, rows: number, width: number): void {
  expectSize(kernel, 'rows', rows);
  expectSize(kernel, 'width', width, 1);
  expectLength(kernel, 'gu', gu, rows * 2 * width, 'rows*2*width');
  expectLength(kernel, 'out', half, rows * width, 'rows*width');
}

/** The gate and up halves of row r of a fused [rows, 2 width] projection. */
function packedHalves(gu: F, r: number, width: number): [F, F] {
  return [gu.subarray(2 * r * width, (2 * r + 1) * width), gu.subarray((2 * r + 1) * width, (2 * r + 2) * width)];
}

/** log sum_j exp(x[off + j]) over j < n. */
function logSumExp(x: F, off: number, n: number): number {
  let m = -Infinity;
  for (let j = 0; j < n; j++) m = Math.max(m, x[off + j]);
  let s = 0;
  for (let j = 0; j < n; j++) s += Math.exp(x[off + j] - m);
  return m + Math.log(s);
}

/** log(exp(a) + exp(b)), exact when either is -Infinity. */
function logAddExp(a: number, b: number): number {
  const m = Math.max(a, b);
  return m === -Infinity ? m : m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** Shared checks of the cross-entropy kernels: a [rows, cols] chunk of V columns from start, targets < V. */
function checkCrossEntropy(kernel: string, logits: F, lse: F, targets: Int32Array, V: number, start: number, cols: number): void {
  expectType(kernel, 'targets', targets, Int32Array);
  expectSize(kernel, 'V', V, 1);
  expectSize(kernel, 'start', start);
  expectSize(kernel, 'cols', cols, 1);
  if (start + cols > V) fail(kernel, `start + cols (${start + cols}) exceeds V (${V})`);
  expectLength(kernel, 'logits', logits, targets.length * cols, 'targets.length*cols');
  expectLength(kernel, 'lse', lse, targets.length, 'targets.length');
  expectIndices(kernel, 'targets', targets, -(2 ** 31), V);
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export const referenceKernels: Kernels<Float64Array> = {
  name: 'reference',
  alloc: (n) => new Float64Array(n),

  gemm(transA, transB, M, N, K, alpha, A, B, beta, C) {
    for (const [name, n] of [
      ['M', M],
      ['N', N],
      ['K', K],
    ] as const)
      expectSize('gemm', name, n);
    expectLength('gemm', 'A', A, M * K, 'M*K');
    expectLength('gemm', 'B', B, K * N, 'K*N');
    expectLength('gemm', 'C', C, M * N, 'M*N');
    const a = (i: number, p: number) => (transA ? A[p * M + i] : A[i * K + p]);
    const b = (p: number, j: number) => (transB ? B[j * K + p] : B[p * N + j]);
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let p = 0; p < K; p++) s += a(i, p) * b(p, j);
        // beta = 0 overwrites without reading C (BLAS convention)
        C[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * C[i * N + j]);
      }
  },

  // A frozen weight's values exactly as stored, then the float64 product; A as it is, except
  // that decoding over q8_0 rounds its rows to q8_0 blocks first, as the native kernel does.
  gemmWeight(transW, M, N, K, alpha, A, W, beta, C) {
    expectWeightShape('gemmWeight', W, transW, N, K);
    const a = quantisesActivation(W, transW, M) ? Float64Array.from(roundQ8_0(Float32Array.from(A))) : A;
    this.gemm(false, transW, M, N, K, alpha, a, Float64Array.from(W.toF32()), beta, C);
  },

  embeddingWeight(out, W, ids) {
    this.embeddingForward(out, Float64Array.from(W.toF32()), ids, W.shape[1]);
  },

  embeddingForward(out, table, ids, dim) {
    checkEmbedding('embeddingForward', 'out', out, table, ids, dim);
    ids.forEach((id, i) => out.set(table.subarray(id * dim, (id + 1) * dim), i * dim));
  },

  embeddingBackward(dtable, dout, ids, dim) {
    checkEmbedding('embeddingBackward', 'dout', dout, dtable, ids, dim);
    ids.forEach((id, i) => {
      for (let c = 0; c < dim; c++) dtable[id * dim + c] += dout[i * dim + c];
    });
  },

  rmsnormForward(out, rstd, x, w, rows, dim, eps) {
    expectLength('rmsnormForward', 'x', x, rows * dim, 'rows*dim');
    expectLength('rmsnormForward', 'out', out, rows * dim, 'rows*dim');
    expectLength('rmsnormForward', 'rstd', rstd, rows, 'rows');
    expectLength('rmsnormForward', 'w', w, dim, 'dim');
    for (let r = 0; r < rows; r++) {
      const s = 1 / Math.sqrt(dot(x, r * dim, x, r * dim, dim) / dim + eps);
      rstd[r] = s;
      for (let c = 0; c < dim; c++) out[r * dim + c] = x[r * dim + c] * s * w[c];
    }
  },

  rmsnormBackward(dx, dw, dout, x, w, rstd, rows, dim) {
    for (const [name, a] of [
      ['dx', dx],
      ['dout', dout],
      ['x', x],
    ] as const)
      expectLength('rmsnormBackward', name, a, rows * dim, 'rows*dim');
    expectLength('rmsnormBackward', 'dw', dw, dim, 'dim');
    expectLength('rmsnormBackward', 'w', w, dim, 'dim');
    expectLength('rmsnormBackward', 'rstd', rstd, rows, 'rows');
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      const s = rstd[r];
      let gwx = 0; // sum_c dout_c w_c x_c
      for (let c = 0; c < dim; c++) gwx += dout[o + c] * w[c] * x[o + c];
      for (let c = 0; c < dim; c++) {
        dx[o + c] += s * w[c] * dout[o + c] - (x[o + c] * s * s * s * gwx) / dim;
        dw[c] += dout[o + c] * x[o + c] * s;
      }
    }
  },

  // The fused kernels are specified as the unfused ones they replace, composed.
  addRmsnormForward(sum, out, rstd, x, y, w, rows, dim, eps) {
    checkRows(
      'addRmsnormForward',
      [
        ['sum', sum],
        ['x', x],
        ['y', y],
      ],
      rows,
      dim,
    );
    referenceKernels.add(sum, x, y);
    referenceKernels.rmsnormForward(out, rstd, sum, w, rows, dim, eps);
  },

  addRmsnormBackward(dx, dy, dw, dsum, dout, sum, w, rstd, rows, dim) {
    checkRows('addRmsnormBackward', [['dx', dx], ['dy', dy], ...(dsum ? [['dsum', dsum] as [string, F]] : [])], rows, dim);
    const g = dsum ? Float64Array.from(dsum) : new Float64Array(rows * dim);
    referenceKernels.rmsnormBackward(g, dw, dout, sum, w, rstd, rows, dim);
    referenceKernels.axpy(dx, g, 1);
    referenceKernels.axpy(dy, g, 1);
  },

  ropeForward(out, x, pos, heads, headDim, invFreq, scale) {
    checkRope('ropeForward', out, x, pos, heads, headDim, invFreq, scale);
    const half = headDim / 2;
    pos.forEach((p, r) => {
      const { cos, sin } = ropeAngles(p, invFreq, scale);
      for (let h = 0; h < heads; h++) {
        const o = (r * heads + h) * headDim;
        for (let i = 0; i < half; i++) {
          const a = x[o + i];
          const b = x[o + i + half];
          out[o + i] = a * cos[i] - b * sin[i];
          out[o + i + half] = b * cos[i] + a * sin[i];
        }
      }
    });
  },

  ropeBackward(dx, dout, pos, heads, headDim, invFreq, scale) {
    checkRope('ropeBackward', dx, dout, pos, heads, headDim, invFreq, scale);
    const half = headDim / 2;
    pos.forEach((p, r) => {
      const { cos, sin } = ropeAngles(p, invFreq, scale);
      for (let h = 0; h < heads; h++) {
        const o = (r * heads + h) * headDim;
        for (let i = 0; i < half; i++) {
          const ga = dout[o + i];
          const gb = dout[o + i + half];
          dx[o + i] += ga * cos[i] + gb * sin[i];
          dx[o + i + half] += gb * cos[i] - ga * sin[i];
        }
      }
    });
  },

  qkvRopeForward(q, k, v, qkv, pos, H, KVH, headDim, invFreq, scale) {
    const parts = qkvParts('qkvRopeForward', qkv, q, k, v, pos.length, H, KVH, headDim);
    const slice = (out: F, [start, width]: [number, number]) =>
      referenceKernels.sliceColumnsForward(out, qkv, pos.length, parts.cols, start, width);
    slice(q, parts.q);
    slice(k, parts.k);
    slice(v, parts.v);
    referenceKernels.ropeForward(q, q, pos, H, headDim, invFreq, scale);
    referenceKernels.ropeForward(k, k, pos, KVH, headDim, invFreq, scale);
  },

  qkvRopeBackward(dqkv, dq, dk, dv, pos, H, KVH, headDim, invFreq, scale) {
    const parts = qkvParts('qkvRopeBackward', dqkv, dq, dk, dv, pos.length, H, KVH, headDim);
    const unslice = (d: F, [start, width]: [number, number]) =>
      referenceKernels.sliceColumnsBackward(dqkv, d, pos.length, parts.cols, start, width);
    const rq = new Float64Array(dq.length),
      rk = new Float64Array(dk.length);
    referenceKernels.ropeBackward(rq, dq, pos, H, headDim, invFreq, scale);
    referenceKernels.ropeBackward(rk, dk, pos, KVH, headDim, invFreq, scale);
    unslice(rq, parts.q);
    unslice(rk, parts.k);
    unslice(dv, parts.v);
  },

  biasForward(y, b, rows, dim) {
    checkRows('biasForward', [['y', y]], rows, dim);
    expectLength('biasForward', 'b', b, dim, 'dim');
    for (let r = 0; r < rows; r++) for (let c = 0; c < dim; c++) y[r * dim + c] += b[c];
  },

  biasBackward(db, dy, rows, dim) {
    checkRows('biasBackward', [['dy', dy]], rows, dim);
    expectLength('biasBackward', 'db', db, dim, 'dim');
    for (let r = 0; r < rows; r++) for (let c = 0; c < dim; c++) db[c] += dy[r * dim + c];
  },

  sliceColumnsForward(out, x, rows, cols, start, width) {
    checkSlice('sliceColumnsForward', 'x', x, 'out', out, rows, cols, start, width);
    for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) out[r * width + c] = x[r * cols + start + c];
  },

  sliceColumnsBackward(dx, dout, rows, cols, start, width) {
    checkSlice('sliceColumnsBackward', 'dx', dx, 'dout', dout, rows, cols, start, width);
    for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) dx[r * cols + start + c] += dout[r * width + c];
  },

  normalizeRowsForward(out, norm, w, rows, dim, eps) {
    checkRows(
      'normalizeRowsForward',
      [
        ['out', out],
        ['w', w],
      ],
      rows,
      dim,
    );
    expectLength('normalizeRowsForward', 'norm', norm, rows, 'rows');
    if (!(eps > 0)) fail('normalizeRowsForward', 'eps must be > 0');
    for (let r = 0; r < rows; r++) {
      const n = Math.max(Math.sqrt(dot(w, r * dim, w, r * dim, dim)), eps);
      norm[r] = n;
      for (let c = 0; c < dim; c++) out[r * dim + c] = w[r * dim + c] / n;
    }
  },

  normalizeRowsBackward(dw, dout, out, norm, rows, dim, eps) {
    checkRows(
      'normalizeRowsBackward',
      [
        ['dw', dw],
        ['dout', dout],
        ['out', out],
      ],
      rows,
      dim,
    );
    expectLength('normalizeRowsBackward', 'norm', norm, rows, 'rows');
    if (!(eps > 0)) fail('normalizeRowsBackward', 'eps must be > 0');
    for (let r = 0; r < rows; r++) {
      // d(w / |w|) = (I - u u^T) / |w|; below eps the divisor is the constant eps
      const proj = norm[r] > eps ? dot(out, r * dim, dout, r * dim, dim) : 0;
      for (let c = 0; c < dim; c++) dw[r * dim + c] += (dout[r * dim + c] - out[r * dim + c] * proj) / norm[r];
    }
  },

  attentionForward(out, lse, q, k, v, d, keyStart) {
    const kernel = 'attentionForward';
    checkDims(kernel, d, keyStart);
    const hd = d.headDim;
    expectLength(kernel, 'q', q, d.B * d.Tq * d.H * hd, 'B*Tq*H*headDim');
    expectLength(kernel, 'out', out, d.B * d.Tq * d.H * hd, 'B*Tq*H*headDim');
    expectLength(kernel, 'k', k, d.B * d.kvCap * d.KVH * hd, 'B*kvCap*KVH*headDim');
    expectLength(kernel, 'v', v, d.B * d.kvCap * d.KVH * hd, 'B*kvCap*KVH*headDim');
    expectLength(kernel, 'lse', lse, d.B * d.H * d.Tq, 'B*H*Tq');
    const L = attentionLayout(d);
    for (let b = 0; b < d.B; b++)
      for (let h = 0; h < d.H; h++)
        for (let i = 0; i < d.Tq; i++) {
          const qo = L.q(b, i, h);
          const kvh = L.kvHead(h);
          const { first, last } = L.keys(b, i, keyStart);
          out.fill(0, qo, qo + hd);
          if (first > last) {
            lse[L.lse(b, h, i)] = -Infinity;
            continue;
          }
          const scores: number[] = [];
          for (let j = first; j <= last; j++) scores.push(d.scale * dot(q, qo, k, L.kv(b, j, kvh), hd));
          const m = scores.reduce((a, x) => Math.max(a, x), -Infinity);
          const l = m + Math.log(scores.reduce((s, x) => s + Math.exp(x - m), 0));
          lse[L.lse(b, h, i)] = l;
          scores.forEach((s, n) => {
            const p = Math.exp(s - l);
            const vo = L.kv(b, first + n, kvh);
            for (let c = 0; c < hd; c++) out[qo + c] += p * v[vo + c];
          });
        }
  },

  attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d, keyStart) {
    const kernel = 'attentionBackward';
    checkDims(kernel, d, keyStart);
    const hd = d.headDim;
    for (const [name, a] of [
      ['dq', dq],
      ['dout', dout],
      ['q', q],
      ['out', out],
    ] as const)
      expectLength(kernel, name, a, d.B * d.Tq * d.H * hd, 'B*Tq*H*headDim');
    for (const [name, a] of [
      ['dk', dk],
      ['dv', dv],
      ['k', k],
      ['v', v],
    ] as const)
      expectLength(kernel, name, a, d.B * d.kvCap * d.KVH * hd, 'B*kvCap*KVH*headDim');
    expectLength(kernel, 'lse', lse, d.B * d.H * d.Tq, 'B*H*Tq');
    const L = attentionLayout(d);
    for (let b = 0; b < d.B; b++)
      for (let h = 0; h < d.H; h++)
        for (let i = 0; i < d.Tq; i++) {
          const qo = L.q(b, i, h);
          const kvh = L.kvHead(h);
          const l = lse[L.lse(b, h, i)];
          // FlashAttention-2: probabilities recomputed from lse, D = dout . out
          const D = dot(dout, qo, out, qo, hd);
          const { first, last } = L.keys(b, i, keyStart);
          for (let j = first; j <= last; j++) {
            const ko = L.kv(b, j, kvh);
            const p = Math.exp(d.scale * dot(q, qo, k, ko, hd) - l);
            const ds = p * (dot(dout, qo, v, ko, hd) - D);
            for (let c = 0; c < hd; c++) {
              dq[qo + c] += d.scale * ds * k[ko + c];
              dk[ko + c] += d.scale * ds * q[qo + c];
              dv[ko + c] += p * dout[qo + c];
            }
          }
        }
  },

  swigluForward(out, gate, up) {
    expectLength('swigluForward', 'gate', gate, out.length, 'out.length');
    expectLength('swigluForward', 'up', up, out.length, 'out.length');
    for (let i = 0; i < out.length; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
  },

  swigluBackward(dgate, dup, dout, gate, up) {
    for (const [name, a] of [
      ['dgate', dgate],
      ['dup', dup],
      ['gate', gate],
      ['up', up],
    ] as const)
      expectLength('swigluBackward', name, a, dout.length, 'dout.length');
    for (let i = 0; i < dout.length; i++) {
      const g = gate[i];
      const s = sigmoid(g);
      dgate[i] += dout[i] * up[i] * s * (1 + g * (1 - s));
      dup[i] += dout[i] * g * s;
    }
  },

  swigluPackedForward(out, gu, rows, width) {
    checkPacked('swigluPackedForward', gu, out, rows, width);
    for (let r = 0; r < rows; r++) {
      const [gate, up] = packedHalves(gu, r, width);
      referenceKernels.swigluForward(out.subarray(r * width, (r + 1) * width), gate, up);
    }
  },

  swigluPackedBackward(dgu, dout, gu, rows, width) {
    checkPacked('swigluPackedBackward', gu, dout, rows, width);
    expectLength('swigluPackedBackward', 'dgu', dgu, rows * 2 * width, 'rows*2*width');
    for (let r = 0; r < rows; r++) {
      const [gate, up] = packedHalves(gu, r, width),
        [dgate, dup] = packedHalves(dgu, r, width);
      referenceKernels.swigluBackward(dgate, dup, dout.subarray(r * width, (r + 1) * width), gate, up);
    }
  },

  crossEntropyForward(lse, tlogit, logits, targets, V, start, cols) {
    checkCrossEntropy('crossEntropyForward', logits, lse, targets, V, start, cols);
    expectLength('crossEntropyForward', 'tlogit', tlogit, targets.length, 'targets.length');
    targets.forEach((t, r) => {
      const chunk = logSumExp(logits, r * cols, cols);
      lse[r] = logAddExp(lse[r], chunk);
      if (t >= start && t < start + cols) tlogit[r] = logits[r * cols + t - start];
    });
  },

  crossEntropyBackward(dlogits, logits, lse, targets, dlogp, V, start, cols) {
    checkCrossEntropy('crossEntropyBackward', logits, lse, targets, V, start, cols);
    expectLength('crossEntropyBackward', 'dlogits', dlogits, targets.length * cols, 'targets.length*cols');
    expectLength('crossEntropyBackward', 'dlogp', dlogp, targets.length, 'targets.length');
    targets.forEach((t, r) => {
      const o = r * cols;
      for (let j = 0; j < cols; j++) {
        // dlogits may alias logits: logits[o + j] is read before it is overwritten
        dlogits[o + j] = t < 0 ? 0 : dlogp[r] * ((start + j === t ? 1 : 0) - Math.exp(logits[o + j] - lse[r]));
      }
    });
  },

  adamw(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step, gradScale) {
    for (const [name, a] of [
      ['g', g],
      ['m', m],
      ['v', v],
    ] as const)
      expectLength('adamw', name, a, p.length, 'p.length');
    expectSize('adamw', 'step', step, 1);
    const bc1 = 1 - Math.pow(beta1, step);
    const bc2 = 1 - Math.pow(beta2, step);
    if (!Number.isFinite(gradScale)) fail('adamw', `gradScale must be finite, got ${gradScale}`);
    for (let i = 0; i < p.length; i++) {
      const gi = gradScale * g[i];
      m[i] = beta1 * m[i] + (1 - beta1) * gi;
      v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
      p[i] -= lr * weightDecay * p[i] + (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + eps);
    }
  },

  sumSquares(x) {
    let s = 0;
    for (let i = 0; i < x.length; i++) s += x[i] * x[i];
    return s;
  },

  axpy(y, x, alpha) {
    expectLength('axpy', 'x', x, y.length, 'y.length');
    for (let i = 0; i < y.length; i++) y[i] += alpha * x[i];
  },

  add(out, a, b) {
    expectLength('add', 'a', a, out.length, 'out.length');
    expectLength('add', 'b', b, out.length, 'out.length');
    for (let i = 0; i < out.length; i++) out[i] = a[i] + b[i];
  },
};

/**
 * The fused output projection + log-softmax at the targets (linear-logprobs.ts) written out
 * whole in float64, as the specification its chunked computation is tested against: the full
 * [N, V] logits = x W^T, logp[r] = logits[r, t] - logsumexp(logits[r]) for t = targets[r]
 * (0 where t < 0), and for an upstream gradient dlogp the input gradients
 * dx = dLogits W and dW = dLogits^T x, dLogits[r, j] = dlogp[r] ([j = t] - softmax(logits[r])[j]).
 */
export function linearLogprobsReference(x: F, W: F, targets: Int32Array, dlogp: F): { logp: F; dx: F; dW: F } {
  const N = targets.length,
    D = x.length / N,
    V = W.length / D;
  if (!Number.isInteger(D) || !Number.isInteger(V))
    fail('linearLogprobsReference', `x (${x.length}) and W (${W.length}) do not share a row width`);
  expectLength('linearLogprobsReference', 'dlogp', dlogp, N, 'targets.length');
  expectIndices('linearLogprobsReference', 'targets', targets, -(2 ** 31), V);
  const logp = new Float64Array(N),
    dx = new Float64Array(N * D),
    dW = new Float64Array(V * D),
    logits = new Float64Array(V);
  targets.forEach((t, r) => {
    for (let j = 0; j < V; j++) logits[j] = dot(x, r * D, W, j * D, D);
    if (t < 0) return;
    const lse = logSumExp(logits, 0, V);
    logp[r] = logits[t] - lse;
    for (let j = 0; j < V; j++) {
      const g = dlogp[r] * ((j === t ? 1 : 0) - Math.exp(logits[j] - lse));
      for (let c = 0; c < D; c++) {
        dx[r * D + c] += g * W[j * D + c];
        dW[j * D + c] += g * x[r * D + c];
      }
    }
  });
  return { logp, dx, dW };
}
