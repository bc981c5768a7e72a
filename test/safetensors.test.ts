import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bf16BitsToF32Bits, decodeF16, f16BitsToF32Bits, f32BitsToBf16Bits, f32BitsToF16Bits } from '../src/io/half.js';
import {
  mapSafetensors,
  readCheckpointTensors,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  type TensorToWrite,
} from '../src/io/safetensors.js';
import { writeJsonAtomic } from '../src/io/atomic.js';

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chimed-st-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const f32Buf = new Float32Array(1);
const u32Buf = new Uint32Array(f32Buf.buffer);
function bitsOf(x: number): number {
  f32Buf[0] = x;
  return u32Buf[0];
}
function floatOf(bits: number): number {
  u32Buf[0] = bits;
  return f32Buf[0];
}

/** A safetensors file assembled by hand from the spec: u64 LE length, header text, data. */
function handFile(header: string, data: number[] = [], padTo8 = true): Buffer {
  let text = header;
  if (padTo8) while (Buffer.byteLength(text) % 8 !== 0) text += ' ';
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, Buffer.from(data)]);
}

async function rejectsWith(p: Promise<unknown>, ...patterns: (string | RegExp)[]): Promise<void> {
  await assert.rejects(p, (err: Error) => {
    for (const pat of patterns) {
      if (typeof pat === 'string') assert.ok(err.message.includes(pat), `"${err.message}" lacks "${pat}"`);
      else assert.match(err.message, pat);
    }
    return true;
  });
}

test('f16 conversion matches hand-computed bit patterns', () => {
  const encodeCases: [number, number][] = [
    [1.0, 0x3c00],
    [-2.5, 0xc100],
    [65504, 0x7bff],
    [0.333251953125, 0x3555],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [-0, 0x8000],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [65519, 0x7bff], // below the midpoint to the next (absent) value
    [65520, 0x7c00], // midpoint between 65504 (odd mantissa) and 65536: rounds to even = inf
    [1e6, 0x7c00],
    [2 ** -25, 0x0000], // tie between 0 and 2^-24: even is 0
    [1.5 * 2 ** -25, 0x0001],
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units: even is 2
    [2 ** -26, 0x0000],
    [1 + 2 ** -11, 0x3c00], // tie, 0x3c00 is even
    [1 + 3 * 2 ** -11, 0x3c02], // tie, 0x3c01 is odd so round up
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
    [1023.5 * 2 ** -24, 0x0400], // tie above the largest (odd) subnormal carries into the smallest normal
    [1023.25 * 2 ** -24, 0x03ff],
  ];
  for (const [x, h] of encodeCases) {
    assert.equal(f32BitsToF16Bits(bitsOf(x)), h, `encode ${x}`);
  }
  const nan = f32BitsToF16Bits(bitsOf(NaN));
  assert.equal(nan & 0x7c00, 0x7c00);
  assert.notEqual(nan & 0x3ff, 0);
  // A signalling f32 NaN whose payload sits below the f16 mantissa must not become inf.
  assert.equal(f32BitsToF16Bits(0x7f800001), 0x7e00);

  const decodeCases: [number, number][] = [
    [0x3c00, 1.0],
    [0xc100, -2.5],
    [0x7bff, 65504],
    [0x0001, 2 ** -24],
    [0x03ff, 1023 * 2 ** -24],
    [0x0400, 2 ** -14],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  for (const [h, x] of decodeCases) assert.equal(floatOf(f16BitsToF32Bits(h)), x, `decode 0x${h.toString(16)}`);
  assert.ok(Object.is(floatOf(f16BitsToF32Bits(0x8000)), -0));
  assert.ok(Number.isNaN(floatOf(f16BitsToF32Bits(0x7e00))));
  assert.equal(f16BitsToF32Bits(0x7e01), 0x7fc02000, 'NaN payload is kept');
});

test('every f16 pattern decodes to the value the IEEE formula gives and encodes back to itself', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const decoded = new Float32Array(65536);
  decodeF16(all, new Uint32Array(decoded.buffer));
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    const want = exp === 0x1f ? (mant ? NaN : sign * Infinity) : sign * (exp === 0 ? mant * 2 ** -24 : (1 + mant / 1024) * 2 ** (exp - 15));
    assert.ok(Object.is(decoded[h], want), `0x${h.toString(16)}: ${decoded[h]} != ${want}`);
    if (!Number.isNaN(want)) assert.equal(f32BitsToF16Bits(bitsOf(decoded[h])), h);
  }
});

test('f16 encoding rounds random floats to the nearest value, ties to even', () => {
  // Oracle: binary search among the sorted finite positive f16 values.
  const values: number[] = [];
  for (let h = 0; h <= 0x7bff; h++) values.push(floatOf(f16BitsToF32Bits(h)));
  values.push(65536); // the rounding boundary beyond 65504 is infinity
  let seed = 12345;
  const rand = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround(2 ** (rand() * 44 - 27) * (1 + rand()));
    let lo = 0;
    let hi = values.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (values[mid] <= x) lo = mid;
      else hi = mid;
    }
    if (x >= values[hi]) lo = hi;
    const dLo = x - values[lo];
    const dHi = lo + 1 < values.length ? values[lo + 1] - x : Infinity;
    const want = dLo < dHi || (dLo === dHi && lo % 2 === 0) ? lo : lo + 1;
    const expected = want >= 0x7c00 ? 0x7c00 : want;
    assert.equal(f32BitsToF16Bits(bitsOf(x)), expected, `x=${x}`);
    assert.equal(f32BitsToF16Bits(bitsOf(-x)), expected | 0x8000, `x=${-x}`);
  }
});

test('bf16 conversion matches hand-computed bit patterns, rounding to nearest even', () => {
  const cases: [number, number][] = [
    [0x3f800000, 0x3f80], // 1.0
    [0xc0200000, 0xc020], // -2.5
    [0x7f800000, 0x7f80], // inf
    [0xff800000, 0xff80], // -inf
    [0x80000000, 0x8000], // -0
    [0x3f808000, 0x3f80], // exact tie, kept bit even: stays
    [0x3f818000, 0x3f82], // exact tie, kept bit odd: rounds up
    [0x3f808001, 0x3f81], // just above the tie
    [0x3f807fff, 0x3f80], // just below the tie
    [0x7f7fffff, 0x7f80], // largest f32 rounds to inf
    [0x00010000, 0x0001], // subnormal stays exact
    [0x0000ffff, 0x0001], // subnormal rounds up
  ];
  for (const [f, b] of cases) assert.equal(f32BitsToBf16Bits(f), b, `0x${f.toString(16)}`);
  assert.equal(f32BitsToBf16Bits(0x7fc00000), 0x7fc0);
  assert.equal(f32BitsToBf16Bits(0x7f800001), 0x7fc0, 'signalling NaN stays NaN');
  assert.equal(floatOf(bf16BitsToF32Bits(0x3f80)), 1);
  assert.equal(floatOf(bf16BitsToF32Bits(0xc020)), -2.5);
  assert.equal(floatOf(bf16BitsToF32Bits(0x0001)), 2 ** -133);
  assert.ok(Number.isNaN(floatOf(bf16BitsToF32Bits(0x7fc0))));
});

test('round trip of F32, F16 and BF16 tensors, with metadata', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'model.safetensors');
    const exactHalf = [1, -2.5, 65504, 2 ** -24, 2 ** -14, -0, Infinity, -Infinity, 0.5, 1024];
    const exactBf16 = [1, -2.5, 2 ** 100, -(2 ** -130), 3.140625, Infinity, 0];
    const rnd = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i * 0.37) * 10);
    const tensors: TensorToWrite[] = [
      { name: 'w.f32', shape: [10, 100], data: rnd },
      { name: 'w.f16', shape: [2, 5], data: Float32Array.from(exactHalf), dtype: 'F16' },
      { name: 'w.bf16', shape: [7], data: Float32Array.from(exactBf16), dtype: 'BF16' },
      { name: 'w.nan', shape: [2], data: Float32Array.from([NaN, NaN]), dtype: 'F16' },
      { name: 'w.rounded', shape: [1000], data: rnd, dtype: 'BF16' },
      { name: 'scalar', shape: [], data: Float32Array.from([7]) },
      { name: 'empty', shape: [0, 4], data: new Float32Array(0), dtype: 'F16' },
    ];
    await writeSafetensors(f, tensors, { format: 'pt', note: '中文' });
    const got = await readSafetensors(f);
    assert.deepEqual([...got.keys()].sort(), tensors.map((t) => t.name).sort());
    assert.deepEqual(got.get('w.f32'), { dtype: 'F32', shape: [10, 100], data: rnd });
    assert.deepEqual([...got.get('w.f16')!.data], exactHalf);
    assert.equal(got.get('w.f16')!.dtype, 'F16');
    assert.deepEqual(got.get('w.f16')!.shape, [2, 5]);
    assert.deepEqual([...got.get('w.bf16')!.data], exactBf16);
    assert.ok(got.get('w.nan')!.data.every(Number.isNaN));
    const rounded = got.get('w.rounded')!.data;
    for (let i = 0; i < rnd.length; i++) {
      assert.equal(bitsOf(rounded[i]), bf16BitsToF32Bits(f32BitsToBf16Bits(bitsOf(rnd[i]))));
      assert.ok(Math.abs(rounded[i] - rnd[i]) <= Math.abs(rnd[i]) * 2 ** -8);
    }
    assert.deepEqual(got.get('scalar'), { dtype: 'F32', shape: [], data: Float32Array.from([7]) });
    assert.deepEqual(got.get('empty'), { dtype: 'F16', shape: [0, 4], data: new Float32Array(0) });

    const header = await readSafetensorsHeader(f);
    assert.deepEqual(header.metadata, { format: 'pt', note: '中文' });
    assert.equal(header.dataStart % 8, 0);
    assert.deepEqual(await readdir(dir), ['model.safetensors']);
  });
});

test('written bytes equal a file built by hand from the spec', async () => {
  await withTempDir(async (dir) => {
    // Order: F32 before BF16 before F16 (descending dtype), then by name; metadata first.
    const header =
      '{"__metadata__":{"a":"1","format":"pt"},' +
      '"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
      '"z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},' +
      '"c":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},' +
      '"a":{"dtype":"F16","shape":[3],"data_offsets":[12,18]}}';
    const data = [
      0x00,
      0x00,
      0x80,
      0x3f,
      0x00,
      0x00,
      0x00,
      0x40, // F32 1.0, 2.0
      0x80,
      0x3f,
      0x20,
      0xc0, // BF16 1.0, -2.5
      0x00,
      0x3c,
      0x00,
      0xc1,
      0xff,
      0x7b, // F16 1.0, -2.5, 65504
    ];
    const expected = handFile(header, data);
    const f = path.join(dir, 'x.safetensors');
    await writeSafetensors(
      f,
      [
        { name: 'a', shape: [3], data: Float32Array.from([1, -2.5, 65504]), dtype: 'F16' },
        { name: 'z', shape: [0], data: new Float32Array(0) },
        { name: 'c', shape: [1, 2], data: Float32Array.from([1, -2.5]), dtype: 'BF16' },
        { name: 'b', shape: [2], data: Float32Array.from([1, 2]), dtype: 'F32' },
      ],
      { format: 'pt', a: '1' },
    );
    assert.deepEqual(await readFile(f), expected);

    // The reference implementation's own serialisation vectors: an unpadded 64-byte header,
    // and an empty file with metadata padded by five spaces.
    const g = path.join(dir, 'y.safetensors');
    await writeSafetensors(g, [{ name: 'attn.0', shape: [1, 2, 3], data: Float32Array.from([0, 1, 2, 3, 4, 5]) }]);
    const bytes = await readFile(g);
    assert.equal(bytes.readBigUInt64LE(0), 64n);
    assert.equal(bytes.subarray(8, 72).toString(), '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}');
    assert.deepEqual([...bytes.subarray(72)], [0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64]);
    await writeSafetensors(g, [], { framework: 'pt' });
    assert.deepEqual(await readFile(g), handFile('{"__metadata__":{"framework":"pt"}}'));
    assert.equal((await readFile(g)).length, 8 + 40);
  });
});

test('reads a hand-built file whose header is out of order and unpadded', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'h.safetensors');
    const header = '{"second":{"dtype":"F16","shape":[1],"data_offsets":[4,6]},"first":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    await writeFile(f, handFile(header, [0, 0, 0xc0, 0x3f, 0x00, 0xc1], false));
    const got = await readSafetensors(f);
    assert.deepEqual([...got.keys()], ['first', 'second']);
    assert.deepEqual([...got.get('first')!.data], [1.5]);
    assert.deepEqual([...got.get('second')!.data], [-2.5]);
    assert.deepEqual((await readSafetensorsHeader(f)).metadata, {});
  });
});

test('reads sharded checkpoints via the index and rejects inconsistent ones', async () => {
  await withTempDir(async (dir) => {
    const s1 = 'model-00001-of-00002.safetensors';
    const s2 = 'model-00002-of-00002.safetensors';
    const emb = Float32Array.from({ length: 12 }, (_, i) => i / 4);
    await writeSafetensors(path.join(dir, s1), [{ name: 'model.embed_tokens.weight', shape: [3, 4], data: emb, dtype: 'BF16' }]);
    await writeSafetensors(path.join(dir, s2), [
      { name: 'model.norm.weight', shape: [4], data: Float32Array.from([1, 1, 1, 1]), dtype: 'F16' },
      { name: 'lm_head.weight', shape: [3, 4], data: emb },
    ]);
    const weightMap = { 'model.embed_tokens.weight': s1, 'model.norm.weight': s2, 'lm_head.weight': s2 };
    const index = path.join(dir, 'model.safetensors.index.json');
    await writeJsonAtomic(index, { metadata: { total_size: 88 }, weight_map: weightMap });
    const got = await readCheckpointTensors(dir);
    assert.deepEqual([...got.keys()].sort(), Object.keys(weightMap).sort());
    assert.deepEqual(got.get('model.embed_tokens.weight')!.data, emb);
    assert.equal(got.get('model.embed_tokens.weight')!.dtype, 'BF16');
    assert.deepEqual([...got.get('model.norm.weight')!.data], [1, 1, 1, 1]);

    await writeJsonAtomic(index, { weight_map: { ...weightMap, 'model.norm.weight': s1 } });
    await rejectsWith(readCheckpointTensors(dir), index, 'model.norm.weight', s2);

    await writeJsonAtomic(index, { weight_map: { ...weightMap, extra: s2 } });
    await rejectsWith(readCheckpointTensors(dir), index, '"extra"', 'no shard contains it');

    await writeJsonAtomic(index, { weight_map: { ...weightMap, x: 'model-00003-of-00002.safetensors' } });
    await rejectsWith(readCheckpointTensors(dir), index, 'model-00003-of-00002.safetensors', 'missing');

    await writeJsonAtomic(index, { weight_map: { a: '../elsewhere.safetensors' } });
    await rejectsWith(readCheckpointTensors(dir), index, 'not a shard file name');

    await writeFile(index, '{"weight_map": ');
    await rejectsWith(readCheckpointTensors(dir), index, 'not valid JSON');

    await writeSafetensors(path.join(dir, s1), [
      { name: 'model.embed_tokens.weight', shape: [3, 4], data: emb },
      { name: 'lm_head.weight', shape: [3, 4], data: emb },
    ]);
    await writeJsonAtomic(index, { weight_map: weightMap });
    await rejectsWith(readCheckpointTensors(dir), path.join(dir, s2), 'lm_head.weight', 'also in shard');

    // model.safetensors, when present, is the checkpoint.
    await writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'only', shape: [1], data: Float32Array.from([3]) }]);
    assert.deepEqual([...(await readCheckpointTensors(dir)).keys()], ['only']);

    const empty = path.join(dir, 'empty');
    await rejectsWith(readCheckpointTensors(empty), empty, 'neither model.safetensors nor');
  });
});

test('malformed files fail with errors naming the file and the problem', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'bad.safetensors');
    const attempt = async (bytes: Buffer, ...patterns: (string | RegExp)[]): Promise<void> => {
      await writeFile(f, bytes);
      await rejectsWith(readSafetensors(f), f, ...patterns);
    };
    await attempt(Buffer.from([1, 2, 3]), 'shorter than the 8-byte header');
    const longLen = Buffer.alloc(16);
    longLen.writeBigUInt64LE(1000n);
    await attempt(longLen, 'header length 1000 runs past the end of the file (16 bytes)');
    await attempt(handFile('{"a": [1,'), 'header is not valid JSON');
    await attempt(handFile('[1,2]'), 'header JSON is not an object');
    await attempt(
      handFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', [0, 0, 0, 0]),
      'tensor "a"',
      'span 4 bytes',
      'needs 8',
    );
    await attempt(handFile('{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}', [0]), 'unknown dtype "Q4"');
    await attempt(handFile('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', [0, 0, 0, 0]), 'shape [-1]');
    await attempt(handFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', [0, 0, 0, 0]), 'data_offsets [4,0]');
    await attempt(
      handFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', [0, 0, 0, 0]),
      'header lists "a" more than once',
    );
    await attempt(
      handFile(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        [0, 0, 0, 0, 0, 0, 0, 0],
      ),
      'overlap',
    );
    await attempt(handFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', [0, 0, 0, 0, 0, 0, 0, 0]), 'leave a gap');
    await attempt(handFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', [0, 0, 0, 0, 9]), '1 unexpected bytes');
    await attempt(handFile('{"__metadata__":{"n":1}}'), '__metadata__ must be an object of string values');

    // A non-float tensor: the header is readable, the data is not convertible.
    await writeFile(f, handFile('{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', [1, 0, 0, 0, 0, 0, 0, 0]));
    assert.equal((await readSafetensorsHeader(f)).tensors[0].dtype, 'I64');
    await rejectsWith(readSafetensors(f), f, 'tensor "ids"', 'unsupported dtype I64');
  });
});

test('a truncated file is reported as truncated', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'cut.safetensors');
    await writeSafetensors(f, [
      { name: 'a', shape: [64], data: new Float32Array(64).fill(1) },
      { name: 'b', shape: [64], data: new Float32Array(64).fill(2), dtype: 'F16' },
    ]);
    const size = (await readFile(f)).length;
    await truncate(f, size - 10);
    await rejectsWith(readSafetensors(f), f, 'tensor "b"', 'run past the end', 'truncated');
    await truncate(f, 20);
    await rejectsWith(readSafetensors(f), f, 'header length', 'runs past the end of the file (20 bytes)');
  });
});

test('invalid writes fail clearly and leave no file or temp file behind', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'w.safetensors');
    const one = Float32Array.from([1]);
    await rejectsWith(
      writeSafetensors(f, [
        { name: 'x', shape: [1], data: one },
        { name: 'x', shape: [1], data: one },
      ]),
      f,
      'duplicate tensor name "x"',
    );
    await rejectsWith(writeSafetensors(f, [{ name: 'x', shape: [2, 2], data: one }]), 'tensor "x"', 'has 1 elements', 'needs 4');
    await rejectsWith(writeSafetensors(f, [{ name: 'x', shape: [1], data: one, dtype: 'I8' as 'F32' }]), 'unsupported dtype "I8"');
    await rejectsWith(writeSafetensors(f, [{ name: '__metadata__', shape: [1], data: one }]), 'invalid tensor name');
    await rejectsWith(writeSafetensors(f, [], { n: 1 as unknown as string }), '__metadata__ must be an object of string values');
    assert.deepEqual(await readdir(dir), []);

    // A failure in the middle of streaming (the second tensor's memory is gone by the time
    // it is written) must keep the previous file and remove the temp file.
    await writeSafetensors(f, [{ name: 'old', shape: [1], data: one }]);
    const before = await readFile(f);
    const doomed = new Float32Array(16);
    const pending = writeSafetensors(f, [
      { name: 'a', shape: [4], data: Float32Array.from([1, 2, 3, 4]) },
      { name: 'b', shape: [16], data: doomed },
    ]);
    structuredClone(doomed.buffer, { transfer: [doomed.buffer] }); // detaches the buffer
    await rejectsWith(pending, f, 'tensor "b": data changed size during the write');
    assert.deepEqual(await readFile(f), before);
    assert.deepEqual(await readdir(dir), ['w.safetensors']);
  });
});

// An independent implementation of the format from its specification, in Python with numpy
// (Debian python3-numpy; the `safetensors` package itself is not packaged): it reads our file
// and writes the same tensors as the reference writer lays them out (8-byte header length,
// compact JSON with __metadata__ first, tensors by descending dtype (F32 > BF16 > F16) then
// name, space padding to 8 bytes, little-endian data, BF16 rounded to nearest even).
const PY_SAFETENSORS = String.raw`
import json, struct, sys
import numpy as np

def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    out, end = {}, 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, e = t["data_offsets"]
        assert b == end, f"{name}: gap or overlap at {b}"
        end = e
        buf = data[b:e]
        if t["dtype"] == "F32": a = np.frombuffer(buf, "<f4")
        elif t["dtype"] == "F16": a = np.frombuffer(buf, "<f2")
        elif t["dtype"] == "BF16": a = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        else: raise ValueError(t["dtype"])
        assert a.size == int(np.prod(t["shape"])), name
        out[name] = [t["dtype"], t["shape"], a.astype(np.float64).tolist()]
    assert end == len(data), "trailing bytes"
    return meta, out

def bf16(values):
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")

RANK = {"F16": 0, "BF16": 1, "F32": 2}
def write(path, tensors, metadata=None):
    tensors = sorted(tensors, key=lambda t: (-RANK[t[1]], t[0]))
    header, blobs, offset = {}, [], 0
    if metadata is not None: header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        blob = bf16(values).tobytes() if dtype == "BF16" else np.asarray(values, dtype={"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

meta, tensors = read(sys.argv[1])
write(sys.argv[2], [(k, v[0], v[1], json.loads(sys.argv[3])[k]) for k, v in tensors.items()])
print(json.dumps({"metadata": meta, "tensors": tensors}))
`;

test('cross-check with an independent Python (numpy) reader and writer of the format', async () => {
  await withTempDir(async (dir) => {
    const ours = path.join(dir, 'ours.safetensors');
    const theirs = path.join(dir, 'theirs.safetensors');
    const oursPlain = path.join(dir, 'ours-plain.safetensors');
    const values = { w: [1, 2, 3, 4, 5, 6], h: [1, -2.5, 65504], b: [1, -0.1, 3.14159, 1e-3] };
    const tensors: TensorToWrite[] = [
      { name: 'w', shape: [2, 3], data: Float32Array.from(values.w) },
      { name: 'h', shape: [3], data: Float32Array.from(values.h), dtype: 'F16' },
      { name: 'b', shape: [2, 2], data: Float32Array.from(values.b), dtype: 'BF16' },
    ];
    await writeSafetensors(ours, tensors, { format: 'np' });
    await writeSafetensors(oursPlain, tensors);
    const r = spawnSync('python3', ['-c', PY_SAFETENSORS, ours, theirs, JSON.stringify(values)], { encoding: 'utf8' });
    assert.equal(
      r.status,
      0,
      `python3 with numpy (Debian: apt-get install python3-numpy, as .ci/run does): ${r.error?.message ?? r.stderr}`,
    );
    const parsed = JSON.parse(r.stdout) as { metadata: unknown; tensors: Record<string, unknown> };
    assert.deepEqual(parsed.metadata, { format: 'np' });
    const bf = [...(await readSafetensors(ours)).get('b')!.data];
    assert.deepEqual(parsed.tensors, {
      w: ['F32', [2, 3], values.w],
      h: ['F16', [3], values.h],
      b: ['BF16', [2, 2], bf],
    });
    assert.deepEqual(await readFile(theirs), await readFile(oursPlain));
    const back = await readSafetensors(theirs);
    assert.deepEqual([...back.get('h')!.data], values.h);
    assert.deepEqual([...back.get('b')!.data], bf);
  });
});

test('a file larger than a Node buffer (4 GiB in Node 20) is mapped in windows of whole tensors', async () => {
  await withTempDir(async (dir) => {
    // three 1.6 GB bf16 tensors, sparse on disk: only the marked bytes are written
    const n = 800_000_000,
      names = ['a', 'b', 'c'];
    const json = JSON.stringify(
      Object.fromEntries(names.map((name, i) => [name, { dtype: 'BF16', shape: [n], data_offsets: [i * 2 * n, (i + 1) * 2 * n] }])),
    ).padEnd(200, ' ');
    const file = path.join(dir, 'model.safetensors');
    const head = Buffer.alloc(8 + json.length);
    head.writeBigUInt64LE(BigInt(json.length));
    head.write(json, 8, 'latin1');
    await writeFile(file, head);
    await truncate(file, head.length + 3 * 2 * n);
    const fd = await open(file, 'r+');
    for (let i = 0; i < 3; i++) {
      await fd.write(Uint8Array.of(i + 1, 0x40), 0, 2, head.length + i * 2 * n);
      await fd.write(Uint8Array.of(0x80, i + 1), 0, 2, head.length + (i + 1) * 2 * n - 2);
    }
    await fd.close();
    const mapped = await mapSafetensors(file);
    names.forEach((name, i) => {
      const { bytes } = mapped.get(name)!;
      assert.equal(bytes.length, 2 * n, name);
      assert.deepEqual([bytes[0], bytes[1], bytes[2], bytes[2 * n - 2], bytes[2 * n - 1]], [i + 1, 0x40, 0, 0x80, i + 1], name);
    });
    assert.equal(mapped.get('a')!.bytes.buffer, mapped.get('b')!.bytes.buffer, 'a and b fit one window');
    assert.notEqual(mapped.get('b')!.bytes.buffer, mapped.get('c')!.bytes.buffer, 'c starts the next');
  });
});
