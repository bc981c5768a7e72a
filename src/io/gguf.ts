// Writing and reading GGUF v3, llama.cpp's model file format (ggml/include/gguf.h):
//   "GGUF" | u32 version | u64 tensor count | u64 KV count | KV pairs | tensor infos |
//   padding to general.alignment | tensor data, each tensor starting at an aligned offset.
// All integers little-endian; strings are u64 byte length + UTF-8 bytes (no terminator).
//
// Written here because no maintained npm package writes GGUF: the ones on npm (including
// the reader inside node-llama-cpp) only read it, and the Python `gguf` package is the only
// maintained writer. Ours streams tensors to disk one at a time (converting or quantising
// in small slices) and swaps the file in atomically, like our safetensors writer.
//
// API:
//   writeGguf(file, metadata, tensors)  streamed, atomic; F32, F16 and Q8_0 tensors
//   readGguf(file)                      header, metadata and tensor infos (no tensor data)
//   readGgufTensor(file, header, name)  one tensor, dequantised to float32 (for tests / tools)
//   quantizeQ8_0 / dequantizeQ8_0       ggml's reference Q8_0 blocks, bit for bit
import { closeSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { writeFileAtomic } from './atomic.js';
import { decodeF16, encodeF16, f16BitsToF32Bits, f32Bits, f32BitsToF16Bits } from './half.js';

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const VERSION = 3;
export const DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL. */
const MAX_NAME_BYTES = 63;
const MAX_DIMS = 4;

/** GGUF metadata value types (enum gguf_type). */
const VALUE_TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
type ValueTypeName = keyof typeof VALUE_TYPE;
const VALUE_TYPE_NAME = Object.fromEntries(Object.entries(VALUE_TYPE).map(([k, v]) => [v, k])) as Record<number, ValueTypeName>;

export type GgufNumberType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'u64' | 'i64' | 'f32' | 'f64';
export type GgufItemType = GgufNumberType | 'bool' | 'string';

/** One metadata value; 64-bit integers are JS numbers and must be safe integers. */
export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: GgufNumberType; value: readonly number[] }
  | { type: 'array'; itemType: 'bool'; value: readonly boolean[] }
  | { type: 'array'; itemType: 'string'; value: readonly string[] };

export type GgufMetadata = Map<string, GgufValue>;

/** Shorthands for building metadata. */
export const kv = {
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  u64: (value: number): GgufValue => ({ type: 'u64', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  strings: (value: readonly string[]): GgufValue => ({ type: 'array', itemType: 'string', value }),
  i32s: (value: readonly number[]): GgufValue => ({ type: 'array', itemType: 'i32', value }),
  f32s: (value: readonly number[]): GgufValue => ({ type: 'array', itemType: 'f32', value }),
};

/** Tensor storage types we write and read, with their ggml_type ids. */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8 } as const;
export type GgmlDtype = keyof typeof GGML_TYPE;
const GGML_TYPE_NAME = Object.fromEntries(Object.entries(GGML_TYPE).map(([k, v]) => [v, k])) as Record<number, GgmlDtype>;

/** Q8_0: blocks of 32 values along a row, each an f16 scale and 32 int8 (34 bytes). */
export const Q8_0_BLOCK = 32;
const Q8_0_BYTES = 2 + Q8_0_BLOCK;

export interface GgufTensorToWrite {
  name: string;
  /** Row-major shape as in numpy / HF ([out, in] for a weight); GGUF stores it reversed. */
  shape: readonly number[];
  /** The values (float32), or a function producing them when the tensor is written, so a transformed copy lives only while it is written. */
  data: Float32Array | (() => Float32Array);
  dtype: GgmlDtype;
}

export interface GgufTensorInfo {
  name: string;
  /** Row-major shape (GGUF's ne reversed). */
  shape: number[];
  dtype: GgmlDtype;
  /** Offset from the start of the data section. */
  offset: number;
  bytes: number;
}

export interface GgufHeader {
  version: number;
  metadata: GgufMetadata;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute file offset of the data section. */
  dataStart: number;
}

class GgufError extends Error {}

function fail(file: string, problem: string): never {
  throw new GgufError(`${file}: ${problem}`);
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes a tensor of this row-major shape takes in this storage type. */
export function tensorBytes(shape: readonly number[], dtype: GgmlDtype): number {
  const n = numel(shape);
  if (dtype === 'F32') return n * 4;
  if (dtype === 'F16') return n * 2;
  return (n / Q8_0_BLOCK) * Q8_0_BYTES;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** ggml requires the alignment to be a u32 power of two. */
function isAlignment(v: GgufValue): boolean {
  return v.type === 'u32' && v.value > 0 && (v.value & (v.value - 1)) === 0;
}

// ---------------------------------------------------------------- Q8_0

/**
 * ggml's quantize_row_q8_0_ref: per block d = max|x| / 127 (float32), q = roundf(x / d)
 * (half away from zero), d stored as f16. Math.fround keeps every step in float32 so the
 * bytes equal llama.cpp's own quantiser's.
 */
export function quantizeQ8_0(x: Float32Array, out: Uint8Array = new Uint8Array((x.length / Q8_0_BLOCK) * Q8_0_BYTES)): Uint8Array {
  if (x.length % Q8_0_BLOCK !== 0) throw new GgufError(`Q8_0: ${x.length} values are not a whole number of ${Q8_0_BLOCK}-value blocks`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0, o = 0; b < x.length; b += Q8_0_BLOCK, o += Q8_0_BYTES) {
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(x[b + j]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    view.setUint16(o, f32BitsToF16Bits(f32Bits(Float32Array.of(d))[0]), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = Math.fround(x[b + j] * id);
      view.setInt8(o + 2 + j, Math.sign(v) * Math.round(Math.abs(v)));
    }
  }
  return out;
}

export function dequantizeQ8_0(
  bytes: Uint8Array,
  out: Float32Array = new Float32Array((bytes.length / Q8_0_BYTES) * Q8_0_BLOCK),
): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bits = new Uint32Array(1);
  const d32 = new Float32Array(bits.buffer);
  for (let o = 0, i = 0; o < bytes.length; o += Q8_0_BYTES, i += Q8_0_BLOCK) {
    bits[0] = f16BitsToF32Bits(view.getUint16(o, true));
    const d = d32[0];
    for (let j = 0; j < Q8_0_BLOCK; j++) out[i + j] = view.getInt8(o + 2 + j) * d;
  }
  return out;
}

// ---------------------------------------------------------------- writing

/** Grows a byte buffer as the header is serialised. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  u8(v: number) {
    this.reserve(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  i8(v: number) {
    this.reserve(1);
    this.buf.writeInt8(v, this.length);
    this.length += 1;
  }
  u16(v: number) {
    this.reserve(2);
    this.buf.writeUInt16LE(v, this.length);
    this.length += 2;
  }
  i16(v: number) {
    this.reserve(2);
    this.buf.writeInt16LE(v, this.length);
    this.length += 2;
  }
  u32(v: number) {
    this.reserve(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number) {
    this.reserve(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number) {
    this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  i64(v: number) {
    this.reserve(8);
    this.buf.writeBigInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  f32(v: number) {
    this.reserve(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  f64(v: number) {
    this.reserve(8);
    this.buf.writeDoubleLE(v, this.length);
    this.length += 8;
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.reserve(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  pad(to: number) {
    const n = alignUp(this.length, to) - this.length;
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

const INT_RANGE: Record<GgufNumberType, [number, number] | null> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
  u64: [0, Number.MAX_SAFE_INTEGER],
  i64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  f32: null,
  f64: null,
};

function writeItem(w: ByteWriter, type: GgufItemType, v: unknown, where: string): void {
  if (type === 'string') {
    if (typeof v !== 'string') throw new GgufError(`${where}: expected a string`);
    w.str(v);
    return;
  }
  if (type === 'bool') {
    if (typeof v !== 'boolean') throw new GgufError(`${where}: expected a boolean`);
    w.u8(v ? 1 : 0);
    return;
  }
  if (typeof v !== 'number') throw new GgufError(`${where}: expected a number`);
  const range = INT_RANGE[type];
  if (range && (!Number.isInteger(v) || v < range[0] || v > range[1])) throw new GgufError(`${where}: ${v} is not a ${type} integer`);
  w[type](v);
}

function writeValue(w: ByteWriter, key: string, v: GgufValue): void {
  w.u32(VALUE_TYPE[v.type]);
  if (v.type !== 'array') {
    writeItem(w, v.type, v.value, `metadata ${key}`);
    return;
  }
  w.u32(VALUE_TYPE[v.itemType]);
  w.u64(v.value.length);
  for (let i = 0; i < v.value.length; i++) writeItem(w, v.itemType, v.value[i], `metadata ${key}[${i}]`);
}

interface Planned {
  t: GgufTensorToWrite;
  offset: number;
  bytes: number;
}

function plan(file: string, tensors: readonly GgufTensorToWrite[], alignment: number): Planned[] {
  const names = new Set<string>();
  let offset = 0;
  return tensors.map((t) => {
    const where = `tensor ${JSON.stringify(t.name)}`;
    const nameBytes = Buffer.byteLength(t.name, 'utf8');
    if (nameBytes === 0 || nameBytes > MAX_NAME_BYTES) fail(file, `${where}: names must be 1-${MAX_NAME_BYTES} bytes (ggml's limit)`);
    if (names.has(t.name)) fail(file, `${where}: duplicate tensor name`);
    names.add(t.name);
    if (!Object.hasOwn(GGML_TYPE, t.dtype)) fail(file, `${where}: unsupported type ${JSON.stringify(t.dtype)} (F32, F16, Q8_0)`);
    if (t.shape.length < 1 || t.shape.length > MAX_DIMS || !t.shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
      fail(file, `${where}: shape [${t.shape}] must have 1-${MAX_DIMS} positive dimensions`);
    }
    const cols = t.shape[t.shape.length - 1];
    if (t.dtype === 'Q8_0' && cols % Q8_0_BLOCK !== 0)
      fail(file, `${where}: Q8_0 needs rows of a multiple of ${Q8_0_BLOCK} values, rows here have ${cols}`);
    if (t.data instanceof Float32Array && t.data.length !== numel(t.shape))
      fail(file, `${where}: ${t.data.length} values for shape [${t.shape}]`);
    const p = { t, offset, bytes: tensorBytes(t.shape, t.dtype) };
    offset = alignUp(offset + p.bytes, alignment);
    return p;
  });
}

function encodeHeader(file: string, metadata: GgufMetadata, planned: Planned[], alignment: number): Uint8Array {
  const w = new ByteWriter();
  w.u32(MAGIC);
  w.u32(VERSION);
  w.u64(planned.length);
  w.u64(metadata.size);
  for (const [key, v] of metadata) {
    if (!key) fail(file, 'empty metadata key');
    w.str(key);
    writeValue(w, key, v);
  }
  for (const { t, offset } of planned) {
    w.str(t.name);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]);
    w.u32(GGML_TYPE[t.dtype]);
    w.u64(offset);
  }
  w.pad(alignment);
  return w.bytes();
}

// Converted tensors are encoded in slices of this many values (a multiple of the Q8_0 block).
const SLICE = 1 << 20;

function* tensorChunks(file: string, planned: Planned[], alignment: number): Generator<Uint8Array> {
  const zeros = new Uint8Array(alignment);
  let f16: Uint16Array | undefined, q8: Uint8Array | undefined;
  for (const { t, bytes } of planned) {
    const data = typeof t.data === 'function' ? t.data() : t.data;
    if (data.length !== numel(t.shape)) fail(file, `tensor ${JSON.stringify(t.name)}: ${data.length} values for shape [${t.shape}]`);
    if (t.dtype === 'F32') {
      yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } else {
      for (let i = 0; i < data.length; i += SLICE) {
        const part = data.subarray(i, Math.min(data.length, i + SLICE));
        if (t.dtype === 'F16') {
          f16 ??= new Uint16Array(SLICE);
          encodeF16(f32Bits(part), f16.subarray(0, part.length));
          yield new Uint8Array(f16.buffer, 0, part.length * 2);
        } else {
          q8 ??= new Uint8Array((SLICE / Q8_0_BLOCK) * Q8_0_BYTES);
          yield quantizeQ8_0(part, q8.subarray(0, (part.length / Q8_0_BLOCK) * Q8_0_BYTES));
        }
      }
    }
    const pad = alignUp(bytes, alignment) - bytes;
    if (pad) yield zeros.subarray(0, pad);
  }
}

/**
 * Writes a GGUF v3 file atomically. `general.alignment` (u32) in the metadata sets the
 * alignment; when absent it is added with the default 32 so readers never have to guess.
 * Only the header and one conversion slice are held in memory besides the caller's tensors.
 */
export async function writeGguf(file: string, metadata: GgufMetadata, tensors: readonly GgufTensorToWrite[]): Promise<void> {
  if (endianness() !== 'LE') throw new GgufError('GGUF writing requires a little-endian host');
  const meta = new Map(metadata);
  const a = meta.get('general.alignment');
  if (a === undefined) meta.set('general.alignment', kv.u32(DEFAULT_ALIGNMENT));
  else if (!isAlignment(a)) fail(file, 'general.alignment must be a u32 power of two');
  const alignment = (meta.get('general.alignment') as { value: number }).value;
  const planned = plan(file, tensors, alignment);
  const header = encodeHeader(file, meta, planned, alignment);
  await writeFileAtomic(
    file,
    (function* () {
      yield header;
      yield* tensorChunks(file, planned, alignment);
    })(),
  );
}

// ---------------------------------------------------------------- reading

/** Sequential reads over a file descriptor with a growing window, so large headers need not be read whole up front. */
class ByteReader {
  private buf = Buffer.alloc(0);
  private start = 0; // file offset of buf[0]
  pos = 0; // absolute file offset

  constructor(
    private readonly fd: number,
    private readonly file: string,
  ) {}

  private need(n: number): number {
    const at = this.pos - this.start;
    if (at + n <= this.buf.length) return at;
    const size = Math.max(n, 1 << 20);
    const next = Buffer.alloc(size);
    const got = readSync(this.fd, next, 0, size, this.pos);
    if (got < n) fail(this.file, `unexpected end of file at byte ${this.pos + got} (truncated?)`);
    this.buf = next.subarray(0, got);
    this.start = this.pos;
    return 0;
  }

  private take<T>(n: number, read: (at: number) => T): T {
    const at = this.need(n);
    this.pos += n;
    return read(at);
  }

  u8() {
    return this.take(1, (i) => this.buf.readUInt8(i));
  }
  i8() {
    return this.take(1, (i) => this.buf.readInt8(i));
  }
  u16() {
    return this.take(2, (i) => this.buf.readUInt16LE(i));
  }
  i16() {
    return this.take(2, (i) => this.buf.readInt16LE(i));
  }
  u32() {
    return this.take(4, (i) => this.buf.readUInt32LE(i));
  }
  i32() {
    return this.take(4, (i) => this.buf.readInt32LE(i));
  }
  f32() {
    return this.take(4, (i) => this.buf.readFloatLE(i));
  }
  f64() {
    return this.take(8, (i) => this.buf.readDoubleLE(i));
  }
  u64(what: string) {
    return this.safe(
      this.take(8, (i) => this.buf.readBigUInt64LE(i)),
      what,
    );
  }
  i64(what: string) {
    return this.safe(
      this.take(8, (i) => this.buf.readBigInt64LE(i)),
      what,
    );
  }
  str(what: string) {
    const n = this.u64(`${what} length`);
    return this.take(n, (i) => this.buf.toString('utf8', i, i + n));
  }

  private safe(v: bigint, what: string): number {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      fail(this.file, `${what} ${v} at byte ${this.pos - 8} is too large`);
    return Number(v);
  }
}

function readItem(r: ByteReader, type: GgufItemType, what: string): number | boolean | string {
  switch (type) {
    case 'string':
      return r.str(what);
    case 'bool':
      return r.u8() !== 0;
    case 'u64':
      return r.u64(what);
    case 'i64':
      return r.i64(what);
    default:
      return r[type]();
  }
}

function readValue(r: ByteReader, file: string, key: string): GgufValue {
  const code = r.u32();
  const type = VALUE_TYPE_NAME[code];
  if (type === undefined) fail(file, `metadata ${key}: unknown value type ${code}`);
  if (type !== 'array') return { type, value: readItem(r, type, `metadata ${key}`) } as GgufValue;
  const itemCode = r.u32();
  const itemType = VALUE_TYPE_NAME[itemCode];
  if (itemType === undefined || itemType === 'array') fail(file, `metadata ${key}: unsupported array item type ${itemCode}`);
  const n = r.u64(`metadata ${key} array length`);
  const value: (number | boolean | string)[] = [];
  for (let i = 0; i < n; i++) value.push(readItem(r, itemType, `metadata ${key}[${i}]`));
  return { type: 'array', itemType, value } as GgufValue;
}

/** Reads the header, metadata and tensor infos of a GGUF v2/v3 file, checking the layout. */
export function readGguf(file: string): GgufHeader {
  const fd = openSync(file, 'r');
  try {
    const r = new ByteReader(fd, file);
    const magic = r.u32();
    if (magic !== MAGIC) fail(file, 'not a GGUF file (bad magic)');
    const version = r.u32();
    if (version !== 2 && version !== 3) fail(file, `GGUF version ${version} is not supported (2 or 3)`);
    const nTensors = r.u64('tensor count');
    const nKv = r.u64('metadata count');
    const metadata: GgufMetadata = new Map();
    for (let i = 0; i < nKv; i++) {
      const key = r.str(`metadata key ${i}`);
      if (metadata.has(key)) fail(file, `duplicate metadata key ${key}`);
      metadata.set(key, readValue(r, file, key));
    }
    const a = metadata.get('general.alignment');
    if (a !== undefined && !isAlignment(a)) fail(file, 'general.alignment must be a u32 power of two');
    const alignment = a ? (a.value as number) : DEFAULT_ALIGNMENT;
    const tensors: GgufTensorInfo[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = r.str(`tensor ${i} name`);
      const nDims = r.u32();
      if (nDims < 1 || nDims > MAX_DIMS) fail(file, `tensor ${name}: ${nDims} dimensions`);
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) ne.push(r.u64(`tensor ${name} dimension`));
      const code = r.u32();
      const dtype = GGML_TYPE_NAME[code];
      if (dtype === undefined) fail(file, `tensor ${name}: ggml type ${code} is not one we read (F32, F16, Q8_0)`);
      const offset = r.u64(`tensor ${name} offset`);
      if (offset % alignment !== 0) fail(file, `tensor ${name}: offset ${offset} is not aligned to ${alignment}`);
      if (dtype === 'Q8_0' && ne[0] % Q8_0_BLOCK !== 0) fail(file, `tensor ${name}: Q8_0 row of ${ne[0]} values`);
      const shape = ne.reverse();
      tensors.push({ name, shape, dtype, offset, bytes: tensorBytes(shape, dtype) });
    }
    const dataStart = alignUp(r.pos, alignment);
    return { version, metadata, tensors, alignment, dataStart };
  } finally {
    closeSync(fd);
  }
}

/** One tensor's values as float32 (F16 and Q8_0 decoded). */
export function readGgufTensor(file: string, header: GgufHeader, name: string): Float32Array {
  const t = header.tensors.find((x) => x.name === name);
  if (!t) fail(file, `no tensor ${name}`);
  const raw = new Uint8Array(t.bytes);
  const fd = openSync(file, 'r');
  try {
    const got = readSync(fd, raw, 0, t.bytes, header.dataStart + t.offset);
    if (got !== t.bytes) fail(file, `tensor ${name}: file ends inside its data`);
  } finally {
    closeSync(fd);
  }
  const out = new Float32Array(numel(t.shape));
  if (t.dtype === 'F32') out.set(new Float32Array(raw.buffer, 0, out.length));
  else if (t.dtype === 'F16') decodeF16(new Uint16Array(raw.buffer, 0, out.length), f32Bits(out));
  else dequantizeQ8_0(raw, out);
  return out;
}
