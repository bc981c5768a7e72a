// IEEE 754 binary16 (F16) and bfloat16 (BF16) <-> float32 conversion, bit-exact.
// Written here rather than taken from npm because we convert whole tensors between typed
// arrays (bits in, bits out, NaN payloads kept) and need round-to-nearest-even on encode;
// the npm half-float packages convert one JS number at a time.
//
// All functions work on bit patterns held in Uint16Array / Uint32Array views, so a
// Float32Array is converted through `new Uint32Array(f32.buffer, f32.byteOffset, f32.length)`.

/** f16 bits -> f32 bits, exact (every f16 value is representable in f32). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN (payload kept)
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // normal: rebias 15 -> 127
  if (mant === 0) return sign >>> 0; // signed zero
  // Subnormal f16 (mant * 2^-24) is a normal f32: shift the leading 1 into the implicit bit.
  let m = mant;
  let e = 113; // biased f32 exponent of 2^-14, decremented per normalising shift
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/** f32 bits -> f16 bits with round-to-nearest-even; overflow gives inf, NaN stays NaN (quiet). */
export function f32BitsToF16Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const e = exp - 112; // f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is an f16 subnormal (or zero): value = full * 2^(exp-150) = m * 2^-24.
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const full = mant | 0x800000;
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    const rem = full & ((1 << shift) - 1);
    let m = full >>> shift;
    if (rem > half || (rem === half && (m & 1) === 1)) m++; // m may carry into the smallest normal: correct
    return sign | m;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent (up to inf), which is the right rounding.
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return h;
}

/** bf16 bits -> f32 bits (bf16 is the top half of an f32). */
export function bf16BitsToF32Bits(b: number): number {
  return (b << 16) >>> 0;
}

/** f32 bits -> bf16 bits with round-to-nearest-even; NaN stays NaN (quiet bit set). */
export function f32BitsToBf16Bits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

// 65,536 entries (256 KiB) turn f16 decoding of multi-GB checkpoints into one table lookup
// per element; built on first use.
let f16Table: Uint32Array | undefined;
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

function checkLengths(src: { length: number }, dst: { length: number }): void {
  if (src.length !== dst.length) {
    throw new Error(`half conversion: source has ${src.length} elements, destination ${dst.length}`);
  }
}

/** Decodes f16 bit patterns into float32 bit patterns (dst may view a Float32Array). */
export function decodeF16(src: Uint16Array, dst: Uint32Array): void {
  checkLengths(src, dst);
  const table = f16ToF32Table();
  for (let i = 0; i < src.length; i++) dst[i] = table[src[i]];
}

/** Decodes bf16 bit patterns into float32 bit patterns. */
export function decodeBf16(src: Uint16Array, dst: Uint32Array): void {
  checkLengths(src, dst);
  for (let i = 0; i < src.length; i++) dst[i] = src[i] << 16;
}

/** Encodes float32 bit patterns as f16 (round to nearest even). */
export function encodeF16(src: Uint32Array, dst: Uint16Array): void {
  checkLengths(src, dst);
  for (let i = 0; i < src.length; i++) dst[i] = f32BitsToF16Bits(src[i]);
}

/** Encodes float32 bit patterns as bf16 (round to nearest even). */
export function encodeBf16(src: Uint32Array, dst: Uint16Array): void {
  checkLengths(src, dst);
  for (let i = 0; i < src.length; i++) dst[i] = f32BitsToBf16Bits(src[i]);
}

/** Reinterprets a Float32Array's storage as its uint32 bit patterns (no copy). */
export function f32Bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}
