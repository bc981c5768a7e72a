// Reading and writing the safetensors format (https://huggingface.co/docs/safetensors):
// [u64 little-endian header length N][N bytes of JSON header][tensor bytes].
// Written here because no npm package reads sharded F16/BF16 checkpoints straight into
// Float32Array with one copy, validates offsets with errors that name the file and tensor,
// and writes multi-GB files atomically without concatenating them in memory.
//
// API:
//   readSafetensorsHeader(file)  -> { metadata, tensors (offset order), dataStart }, no data read
//   readSafetensors(file)        -> Map name -> { dtype, shape, data: Float32Array }
//   readCheckpointTensors(dir)   -> the same Map for model.safetensors or a sharded checkpoint
//   writeSafetensors(file, tensors, metadata?) -> HF-compatible file, written atomically
// The `__metadata__` string map is returned by readSafetensorsHeader, which reads only the
// header, so reading metadata never costs a pass over the tensors.
import { endianness } from 'node:os';
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './atomic.js';
import { MAX_MAPPED_BYTES, mapFile } from '../engine/native.js';
import { decodeBf16, decodeF16, encodeBf16, encodeF16, f32Bits } from './half.js';

/** Element sizes of the dtypes the format defines; the file's dtype strings must be one of these. */
const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

export type SafetensorsDtype = keyof typeof DTYPE_BYTES;
/** The dtypes this project converts to and from Float32Array. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';
const FLOAT_DTYPES: readonly FloatDtype[] = ['F32', 'F16', 'BF16'];

/** A tensor as read: `dtype` is what the file stored, `data` is always float32. */
export interface TensorEntry {
  dtype: FloatDtype;
  shape: number[];
  data: Float32Array;
}

/** One header entry; `dataOffsets` are relative to the start of the data section. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** The `__metadata__` map ({} when the file has none). */
  metadata: Record<string, string>;
  /** Tensors sorted by data offset. */
  tensors: TensorInfo[];
  /** Absolute file offset of the data section (8 + header length). */
  dataStart: number;
}

/** A tensor as the file stores it: `bytes` (little-endian) view the memory-mapped file (mapSafetensors). */
export interface StoredTensor {
  dtype: FloatDtype;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * A tensor to write: float32 `data` with `dtype` (default F32) the on-disk type, rounded to
 * nearest even; or `stored`, bytes already in `dtype` (a frozen bf16 / f16 weight), written as they are.
 */
export type TensorToWrite =
  | { name: string; shape: readonly number[]; data: Float32Array; dtype?: FloatDtype }
  | { name: string; shape: readonly number[]; stored: Uint8Array; dtype: FloatDtype };

// Same limit as the reference implementation: a larger "header" means a corrupt file.
const MAX_HEADER_BYTES = 100_000_000;
// Converted (F16/BF16) tensors are processed in slices of this many elements so the scratch
// buffer stays small however large the tensor is.
const CONVERT_CHUNK = 1 << 22;
// fs read calls are capped near 2 GiB; larger tensors are read in slices.
const MAX_READ_BYTES = 1 << 30;
const METADATA_KEY = '__metadata__';

function fail(file: string, problem: string): never {
  throw new Error(`${file}: ${problem}`);
}

// Typed-array views read and write host byte order; the format is little-endian.
function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error('safetensors I/O requires a little-endian host');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * The keys of the top-level JSON object in source order. JSON.parse silently keeps the last
 * of duplicate keys, which would hide a tensor; this scan lets us report the duplicate.
 * The text has already been parsed successfully, so it is well-formed.
 */
function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(json.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') {
      depth--;
    } else if (c === ',' && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

function parseTensorInfo(file: string, name: string, v: unknown): TensorInfo {
  const where = `tensor "${name}"`;
  if (!isRecord(v)) fail(file, `${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = v;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    fail(file, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isSize)) {
    fail(file, `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSize) || offsets[0] > offsets[1]) {
    fail(file, `${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with begin <= end`);
  }
  const info: TensorInfo = {
    name,
    dtype: dtype as SafetensorsDtype,
    shape: shape as number[],
    dataOffsets: [offsets[0] as number, offsets[1] as number],
  };
  const want = elementCount(info.shape) * DTYPE_BYTES[info.dtype];
  const have = info.dataOffsets[1] - info.dataOffsets[0];
  if (want !== have) {
    fail(file, `${where}: data_offsets [${info.dataOffsets}] span ${have} bytes but shape [${info.shape}] of ${info.dtype} needs ${want}`);
  }
  return info;
}

function parseMetadata(file: string, v: unknown): Record<string, string> {
  if (!isRecord(v) || !Object.values(v).every((x) => typeof x === 'string')) {
    fail(file, `${METADATA_KEY} must be an object of string values`);
  }
  return v as Record<string, string>;
}

/** Checks that tensors tile the data section exactly: no overlap, gap or trailing bytes. */
function checkLayout(file: string, tensors: TensorInfo[], dataBytes: number): void {
  let end = 0;
  let prev: TensorInfo | undefined;
  for (const t of tensors) {
    const [b, e] = t.dataOffsets;
    if (e > dataBytes) {
      fail(
        file,
        `tensor "${t.name}": data_offsets [${b},${e}] run past the end of the data section ` +
          `(${dataBytes} bytes); the file is truncated or corrupt`,
      );
    }
    if (b !== end) {
      const after = prev ? `tensor "${prev.name}" ends at ${end}` : 'data starts at 0';
      fail(file, `tensor "${t.name}": data_offsets [${b},${e}] ${b < end ? 'overlap' : 'leave a gap'}: ${after}`);
    }
    end = e;
    prev = t;
  }
  if (end !== dataBytes) fail(file, `${dataBytes - end} unexpected bytes after the last tensor`);
}

async function readExactly(fh: FileHandle, file: string, target: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const len = Math.min(target.length - done, MAX_READ_BYTES);
    const { bytesRead } = await fh.read(target, done, len, position + done);
    if (bytesRead === 0) fail(file, `unexpected end of file at byte ${position + done} (file changed while reading?)`);
    done += bytesRead;
  }
}

async function readHeaderFrom(fh: FileHandle, file: string): Promise<SafetensorsHeader> {
  const { size } = await fh.stat();
  if (size < 8) fail(file, `file is ${size} bytes, shorter than the 8-byte header length field`);
  const lenBuf = Buffer.alloc(8);
  await readExactly(fh, file, lenBuf, 0);
  const n = lenBuf.readBigUInt64LE(0);
  if (n > BigInt(size - 8)) {
    fail(file, `header length ${n} runs past the end of the file (${size} bytes); not a safetensors file or truncated`);
  }
  const headerLen = Number(n);
  if (headerLen > MAX_HEADER_BYTES) fail(file, `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerBuf = Buffer.alloc(headerLen);
  await readExactly(fh, file, headerBuf, 8);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
  } catch {
    fail(file, 'header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    fail(file, `header is not valid JSON: ${(err as Error).message}`);
  }
  if (!isRecord(parsed)) fail(file, 'header JSON is not an object');
  const seen = new Set<string>();
  for (const key of topLevelKeys(text)) {
    if (seen.has(key)) fail(file, `header lists "${key}" more than once`);
    seen.add(key);
  }
  let metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [key, value] of Object.entries(parsed)) {
    if (key === METADATA_KEY) metadata = parseMetadata(file, value);
    else tensors.push(parseTensorInfo(file, key, value));
  }
  tensors.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  const dataStart = 8 + headerLen;
  checkLayout(file, tensors, size - dataStart);
  return { metadata, tensors, dataStart };
}

async function withFile<T>(file: string, use: (fh: FileHandle) => Promise<T>): Promise<T> {
  assertLittleEndian();
  const fh = await open(file, 'r');
  try {
    return await use(fh);
  } finally {
    await fh.close();
  }
}

/** Reads and validates the header only: metadata, tensor dtypes/shapes/offsets. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  return withFile(file, (fh) => readHeaderFrom(fh, file));
}

function isFloatDtype(d: SafetensorsDtype): d is FloatDtype {
  return (FLOAT_DTYPES as readonly string[]).includes(d);
}

async function readTensor(fh: FileHandle, file: string, t: TensorInfo, dataStart: number): Promise<TensorEntry> {
  const { dtype } = t;
  if (!isFloatDtype(dtype)) {
    fail(file, `tensor "${t.name}": unsupported dtype ${dtype} (supported: ${FLOAT_DTYPES.join(', ')})`);
  }
  const numel = elementCount(t.shape);
  const data = new Float32Array(numel);
  const start = dataStart + t.dataOffsets[0];
  if (dtype === 'F32') {
    // The file's bytes land directly in the result: the only copy.
    await readExactly(fh, file, new Uint8Array(data.buffer), start);
  } else {
    const decode = dtype === 'F16' ? decodeF16 : decodeBf16;
    const out = f32Bits(data);
    const scratch = new Uint16Array(Math.min(numel, CONVERT_CHUNK));
    for (let i = 0; i < numel; i += scratch.length) {
      const n = Math.min(scratch.length, numel - i);
      const half = scratch.subarray(0, n);
      await readExactly(fh, file, new Uint8Array(half.buffer, 0, n * 2), start + i * 2);
      decode(half, out.subarray(i, i + n));
    }
  }
  return { dtype, shape: [...t.shape], data };
}

/** Reads every tensor of a .safetensors file as float32, in file order. */
export async function readSafetensors(file: string): Promise<Map<string, TensorEntry>> {
  return withFile(file, async (fh) => {
    const header = await readHeaderFrom(fh, file);
    const out = new Map<string, TensorEntry>();
    for (const t of header.tensors) out.set(t.name, await readTensor(fh, file, t, header.dataStart));
    return out;
  });
}

/**
 * Every tensor of a .safetensors file as stored, through a private memory map of the file: no
 * tensor is read until used, and a bf16 weight used as bf16 is never copied. The map lives
 * as long as any view of it.
 */
export async function mapSafetensors(file: string): Promise<Map<string, StoredTensor>> {
  const header = await readSafetensorsHeader(file);
  const tensors = [...header.tensors].sort((x, y) => x.dataOffsets[0] - y.dataOffsets[0]);
  const end = header.dataStart + Math.max(0, ...tensors.map((t) => t.dataOffsets[1]));
  // One map of the whole file; a file larger than Node's largest buffer (4 GiB in Node 20: a
  // 7B model in bf16 is 14 GB) in windows of whole tensors, each as large as a buffer can be.
  let window = new ArrayBuffer(0),
    windowStart = 0;
  const out = new Map<string, StoredTensor>();
  for (const t of tensors) {
    const { dtype } = t;
    if (!isFloatDtype(dtype)) fail(file, `tensor "${t.name}": unsupported dtype ${dtype} (supported: ${FLOAT_DTYPES.join(', ')})`);
    const b = header.dataStart + t.dataOffsets[0],
      e = header.dataStart + t.dataOffsets[1];
    if (e - b > MAX_MAPPED_BYTES)
      fail(file, `tensor "${t.name}" has ${e - b} bytes, more than Node's largest buffer (${MAX_MAPPED_BYTES})`);
    if (e > windowStart + window.byteLength) {
      windowStart = windowStart + window.byteLength === 0 ? 0 : b;
      window = mapFile(file, windowStart, Math.min(end, windowStart + MAX_MAPPED_BYTES) - windowStart);
    }
    out.set(t.name, { dtype, shape: [...t.shape], bytes: new Uint8Array(window, b - windowStart, e - b) });
  }
  return out;
}

async function fileExists(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function readWeightMap(indexFile: string): Promise<Map<string, string>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(indexFile, 'utf8'));
  } catch (err) {
    fail(indexFile, `not valid JSON: ${(err as Error).message}`);
  }
  const weightMap = isRecord(parsed) ? parsed.weight_map : undefined;
  if (!isRecord(weightMap)) fail(indexFile, 'missing "weight_map" object');
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard === '' || path.basename(shard) !== shard) {
      fail(indexFile, `weight_map["${name}"] = ${JSON.stringify(shard)} is not a shard file name`);
    }
    out.set(name, shard);
  }
  if (out.size === 0) fail(indexFile, 'weight_map is empty');
  return out;
}

/**
 * Reads a HF checkpoint directory: `model.safetensors`, else the sharded layout
 * `model.safetensors.index.json` + the shards its `weight_map` names. Every shard is checked
 * to exist before any is read; every tensor must appear exactly once, in the shard the index
 * names.
 */
export function readCheckpointTensors(dir: string): Promise<Map<string, TensorEntry>> {
  return readCheckpointWith(dir, readSafetensors);
}

/** The tensors of a HF checkpoint directory as stored, memory-mapped (mapSafetensors), checked as readCheckpointTensors. */
export function mapCheckpoint(dir: string): Promise<Map<string, StoredTensor>> {
  return readCheckpointWith(dir, mapSafetensors);
}

async function readCheckpointWith<T>(dir: string, readShard: (file: string) => Promise<Map<string, T>>): Promise<Map<string, T>> {
  const single = path.join(dir, 'model.safetensors');
  if (await fileExists(single)) return readShard(single);
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (!(await fileExists(indexFile))) fail(dir, 'contains neither model.safetensors nor model.safetensors.index.json');
  const weightMap = await readWeightMap(indexFile);
  const shards = [...new Set(weightMap.values())];
  for (const shard of shards) {
    if (!(await fileExists(path.join(dir, shard)))) fail(indexFile, `shard "${shard}" is listed in weight_map but missing`);
  }
  const out = new Map<string, T>();
  const shardOf = new Map<string, string>();
  for (const shard of shards) {
    const shardPath = path.join(dir, shard);
    for (const [name, entry] of await readShard(shardPath)) {
      const other = shardOf.get(name);
      if (other !== undefined) fail(shardPath, `tensor "${name}" is also in shard "${other}"`);
      shardOf.set(name, shard);
      out.set(name, entry);
    }
  }
  for (const [name, shard] of weightMap) {
    const found = shardOf.get(name);
    if (found !== shard) {
      fail(indexFile, `weight_map puts "${name}" in "${shard}" but ${found ? `it is in "${found}"` : 'no shard contains it'}`);
    }
  }
  return out;
}

// The reference writer orders tensors by descending dtype (its enum order: F32 > BF16 > F16)
// and then by name as UTF-8 bytes; following it makes our files byte-identical to its output.
const WRITE_RANK: Record<FloatDtype, number> = { F32: 2, BF16: 1, F16: 0 };

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

interface PlannedTensor {
  t: TensorToWrite;
  dtype: FloatDtype;
  bytes: number;
}

function validateForWrite(file: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): PlannedTensor[] {
  if (metadata !== undefined) parseMetadata(file, metadata);
  const names = new Set<string>();
  return tensors.map((t) => {
    const where = `tensor "${t.name}"`;
    if (typeof t.name !== 'string' || t.name === '' || t.name === METADATA_KEY) {
      fail(file, `invalid tensor name ${JSON.stringify(t.name)}`);
    }
    if (names.has(t.name)) fail(file, `duplicate tensor name "${t.name}"`);
    names.add(t.name);
    const dtype = t.dtype ?? 'F32';
    if (!FLOAT_DTYPES.includes(dtype)) fail(file, `${where}: unsupported dtype ${JSON.stringify(dtype)} for writing`);
    if (!Array.isArray(t.shape) || !t.shape.every(isSize)) {
      fail(file, `${where}: shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
    }
    const numel = elementCount(t.shape);
    const bytes = numel * DTYPE_BYTES[dtype];
    if ('stored' in t) {
      if (!(t.stored instanceof Uint8Array) || t.stored.length !== bytes)
        fail(file, `${where}: stored bytes (${t.stored?.length}) are not the ${bytes} of shape [${t.shape}] in ${dtype}`);
      return { t, dtype, bytes };
    }
    if (!(t.data instanceof Float32Array)) fail(file, `${where}: data is not a Float32Array`);
    if (t.data.length !== numel) fail(file, `${where}: data has ${t.data.length} elements but shape [${t.shape}] needs ${numel}`);
    return { t, dtype, bytes };
  });
}

function encodeHeader(planned: PlannedTensor[], metadata?: Record<string, string>): Uint8Array {
  const parts: string[] = [];
  if (metadata !== undefined) {
    // The reference writer's metadata order is its hash map's; sorted keys keep ours reproducible.
    const keys = Object.keys(metadata).sort(compareUtf8);
    const body = keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',');
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${body}}`);
  }
  let offset = 0;
  for (const { t, dtype, bytes } of planned) {
    const info = `{"dtype":"${dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`;
    parts.push(`${JSON.stringify(t.name)}:${info}`);
    offset += bytes;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  // Space padding to a multiple of 8 keeps the data section 8-byte aligned for mmap readers.
  const padded = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(out, 8);
  return out;
}

/** Yields the file's bytes: F32 tensors as views of the caller's arrays, others via one scratch buffer. */
function* fileChunks(file: string, header: Uint8Array, planned: PlannedTensor[]): Generator<Uint8Array> {
  yield header;
  let scratch: Uint16Array | undefined;
  for (const { t, dtype, bytes } of planned) {
    // The header is already on disk; a buffer detached or resized meanwhile would corrupt the file.
    const have = 'stored' in t ? t.stored.length : t.data.length * DTYPE_BYTES[dtype];
    if (have !== bytes) fail(file, `tensor "${t.name}": data changed size during the write`);
    if (bytes === 0) continue;
    if ('stored' in t) {
      yield t.stored;
      continue;
    }
    if (dtype === 'F32') {
      yield new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      continue;
    }
    scratch ??= new Uint16Array(CONVERT_CHUNK);
    const encode = dtype === 'F16' ? encodeF16 : encodeBf16;
    const src = f32Bits(t.data);
    for (let i = 0; i < src.length; i += CONVERT_CHUNK) {
      const n = Math.min(CONVERT_CHUNK, src.length - i);
      encode(src.subarray(i, i + n), scratch.subarray(0, n));
      yield new Uint8Array(scratch.buffer, 0, n * 2);
    }
  }
}

/**
 * Writes tensors to `file` in the layout the reference Python/Rust writer produces (same
 * ordering, compact JSON header padded with spaces to a multiple of 8, contiguous offsets).
 * `metadata`, when given, becomes `__metadata__` (keys sorted). The write is atomic and
 * streams: no buffer larger than the header plus one conversion slice is allocated.
 */
export async function writeSafetensors(file: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  assertLittleEndian();
  const planned = validateForWrite(file, tensors, metadata);
  planned.sort((a, b) => WRITE_RANK[b.dtype] - WRITE_RANK[a.dtype] || compareUtf8(a.t.name, b.t.name));
  await writeFileAtomic(file, fileChunks(file, encodeHeader(planned, metadata), planned));
}
