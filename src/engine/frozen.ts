/**
 * Frozen weights: a weight matrix kept in the dtype its checkpoint stores (bf16, f16) or
 * quantised to GGUF's q8_0, for the weights nothing trains (the base under LoRA, a DPO
 * reference, evaluation, serving, rejection sampling). They take 2 (1.06 for q8_0) bytes per
 * value instead of 4, which is what lets a 7B model fit a 24 GB machine. The kernels read them
 * directly (Kernels.gemmWeight, embeddingWeight), widening to the working precision as they go;
 * they have no gradient. The codecs here are the float64 reference's (plain TS); the native
 * addon converts whole checkpoints (native.ts convertWeight).
 */
import { dequantizeQ8_0, quantizeQ8_0, Q8_0_BLOCK } from '../io/gguf.js';
import { decodeBf16, decodeF16, encodeBf16, encodeF16, f32Bits } from '../io/half.js';

export type FrozenDtype = 'bf16' | 'f16' | 'q8_0';
/** How a stage keeps its frozen base weights: f32 (dense parameters) or one of the frozen dtypes. */
export type BaseDtype = 'f32' | FrozenDtype;
export const BASE_DTYPES: readonly BaseDtype[] = ['bf16', 'f16', 'q8_0', 'f32'];

/** Bytes of a [rows, cols] matrix stored as dtype; q8_0 needs rows of whole 32-value blocks. */
export function weightBytes(dtype: BaseDtype, rows: number, cols: number): number {
  if (dtype === 'q8_0') {
    if (cols % Q8_0_BLOCK !== 0) throw new RangeError(`q8_0 needs rows of a multiple of ${Q8_0_BLOCK} values, got ${cols}`);
    return rows * (cols / Q8_0_BLOCK) * 34;
  }
  return rows * cols * (dtype === 'f32' ? 4 : 2);
}

/** A weight matrix [rows, cols] in its stored dtype, row-major, little-endian bytes (GGUF's layout for q8_0). */
export class FrozenWeight {
  constructor(
    readonly dtype: FrozenDtype,
    readonly shape: readonly [number, number],
    readonly bytes: Uint8Array,
  ) {
    const want = weightBytes(dtype, shape[0], shape[1]);
    if (bytes.length !== want) throw new RangeError(`frozen ${dtype} [${shape}] needs ${want} bytes, got ${bytes.length}`);
  }

  get size(): number {
    return this.shape[0] * this.shape[1];
  }

  /** Rows [r0, r0 + n) as a frozen weight viewing the same bytes. */
  rows(r0: number, n: number): FrozenWeight {
    const rowBytes = weightBytes(this.dtype, 1, this.shape[1]);
    return new FrozenWeight(this.dtype, [n, this.shape[1]], this.bytes.subarray(r0 * rowBytes, (r0 + n) * rowBytes));
  }

  /** The values as float32 (reference and tests; the kernels never expand a whole weight). */
  toF32(): Float32Array {
    return decodeFrozen(this.dtype, this.bytes, this.size);
  }
}

/** Values of a frozen matrix as float32 (TS reference codec). */
export function decodeFrozen(dtype: FrozenDtype, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  if (dtype === 'q8_0') return dequantizeQ8_0(bytes, out);
  const half = new Uint16Array(bytes.slice().buffer, 0, n);
  (dtype === 'bf16' ? decodeBf16 : decodeF16)(half, f32Bits(out));
  return out;
}

/** float32 values encoded as a frozen matrix (TS reference codec: round to nearest even; q8_0 as llama.cpp). */
export function encodeFrozen(dtype: FrozenDtype, values: Float32Array, shape: readonly [number, number]): FrozenWeight {
  const bytes = new Uint8Array(weightBytes(dtype, shape[0], shape[1]));
  if (dtype === 'q8_0') quantizeQ8_0(values, bytes);
  else (dtype === 'bf16' ? encodeBf16 : encodeF16)(f32Bits(values), new Uint16Array(bytes.buffer));
  return new FrozenWeight(dtype, shape, bytes);
}

/**
 * Products of at most this many rows (decoding, one row per sequence) stream their weight once
 * without packing: the native kernels' GEMM_FEW_ROWS. A decoding step runs in one call
 * (Kernels.decodeStep) for at most this many sequences.
 */
export const FEW_ROWS = 8;

/**
 * Decoding over a q8_0 weight (y = x W^T with at most this many rows of x) multiplies x's rows
 * quantised to q8_0 blocks, as llama.cpp does: integer products, a quarter of the work of
 * widening (native/frozen-decode.cc): the products of FEW_ROWS.
 */
export const Q8_0_ACTIVATION_ROWS = FEW_ROWS;

/** Whether gemmWeight(transW, M, ...) over W quantises its activation rows (see Q8_0_ACTIVATION_ROWS). */
export const quantisesActivation = (W: FrozenWeight, transW: boolean, M: number): boolean =>
  W.dtype === 'q8_0' && transW && M <= Q8_0_ACTIVATION_ROWS;

/** Rows of whole 32-value blocks rounded to q8_0 (quantised and widened back): the activation such a product sees. */
export const roundQ8_0 = (x: Float32Array): Float32Array => dequantizeQ8_0(quantizeQ8_0(x));

/** Throws unless W is [N, K] (transW) or [K, N]: the shape a product names. */
export function expectWeightShape(kernel: string, W: FrozenWeight, transW: boolean, N: number, K: number): void {
  const [rows, cols] = transW ? [N, K] : [K, N];
  if (W.shape[0] !== rows || W.shape[1] !== cols)
    throw new RangeError(`${kernel}: W is [${W.shape}] but the product needs [${rows},${cols}] (transW ${transW}, N ${N}, K ${K})`);
}
