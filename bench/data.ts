// Data-layer throughput: import (decode + parse + convert + validate), record dedup (exact and
// MinHash/LSH), the suffix-array substring pass, and import of the shared real data when
// present. Synthetic input is generated in a temp folder and deleted afterwards.
//   node dist/bench/data.js [--size-mb 64] [--dedup-mb 16] [--substring-mb 4] [--no-shared] [--json]
// --size-mb 4096 exercises the larger-than-memory path (peak RSS is reported).
import { once } from 'node:events';
import fs from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ExactDeduper, NearDeduper, NEAR_DUP_DEFAULTS } from '../src/data/dedup.js';
import { openImport } from '../src/data/import.js';
import { recordText } from '../src/data/records.js';
import { repeatedRanges } from '../src/data/suffixarray.js';

const TERMS = (
  '高血压 糖尿病 冠心病 头痛 发热 咳嗽 胸闷 乏力 腹痛 腹泻 恶心 呕吐 失眠 贫血 肺炎 胃炎 肝炎 肾炎 关节炎 ' +
  '检查 血常规 心电图 胸片 超声 治疗 药物 口服 注射 每日 三次 饭后 剂量 医生 患者 症状 诊断 建议 注意 休息 ' +
  '饮食 清淡 多喝水 复查 医院 门诊 住院 手术 康复 预防 感染 病毒 细菌 抗生素 降压药 胰岛素 阿司匹林 维生素'
).split(' ');
const PUNCT = ['，', '。', '；', '？', '、'];

/** Deterministic xorshift32, so generated files are the same on every machine. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

/** A pseudo-medical Chinese sentence stream of about `chars` characters. */
export function syntheticText(rand: () => number, chars: number): string {
  const parts: string[] = [];
  let n = 0;
  while (n < chars) {
    const w = TERMS[Math.floor(rand() * TERMS.length)];
    parts.push(w);
    n += w.length;
    if (rand() < 0.2) {
      parts.push(PUNCT[Math.floor(rand() * PUNCT.length)]);
      n++;
    }
  }
  return parts.join('');
}

/**
 * Writes ShareGPT-style JSONL of about `bytes` bytes: every record unique except ~5% exact
 * repeats of an earlier record. Returns the number of records written.
 */
export async function writeSyntheticJsonl(file: string, bytes: number, seed = 1): Promise<number> {
  const rand = rng(seed);
  const out = fs.createWriteStream(file);
  let written = 0;
  let records = 0;
  let last = '';
  const batch: string[] = [];
  while (written < bytes) {
    let line: string;
    if (last && rand() < 0.05) line = last.replace(/"id":"[^"]*"/, `"id":"r${records}"`);
    else {
      const q = syntheticText(rand, 20 + Math.floor(rand() * 60));
      const a = syntheticText(rand, 100 + Math.floor(rand() * 300));
      line =
        JSON.stringify({
          id: `r${records}`,
          conversations: [
            { from: 'human', value: q },
            { from: 'gpt', value: a },
          ],
        }) + '\n';
      last = line;
    }
    batch.push(line);
    written += Buffer.byteLength(line);
    records++;
    if (batch.length >= 1000) {
      if (!out.write(batch.join(''))) await once(out, 'drain');
      batch.length = 0;
    }
  }
  out.end(batch.join(''));
  await once(out, 'finish');
  return records;
}

const mb = (bytes: number) => bytes / (1 << 20);
const rate = (bytes: number, ms: number) => +(mb(bytes) / (ms / 1000)).toFixed(2);

async function timeImport(files: string[]) {
  let bytes = 0;
  let records = 0;
  let peakRss = 0;
  const t0 = performance.now();
  for (const f of files) {
    bytes += (await stat(f)).size;
    const s = await openImport(f, { maxRejectRate: 1 });
    for await (const _ of s) {
      if (++records % 4096 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }
  }
  const ms = performance.now() - t0;
  return {
    files: files.length,
    mb: +mb(bytes).toFixed(1),
    records,
    seconds: +(ms / 1000).toFixed(2),
    mbPerSec: rate(bytes, ms),
    peakRssMb: +mb(peakRss).toFixed(0),
  };
}

export interface BenchDataArgs {
  /** Size of the generated import file (MB). */
  sizeMB?: number;
  /** Text fed to record dedup (MB of UTF-8). */
  dedupMB?: number;
  /** Text fed to the suffix-array pass (MB of UTF-8). */
  substringMB?: number;
  /** Also import every file under ../shared/data/{raw,train,dev} when present. */
  shared?: boolean;
  /** Repository root, to find ../shared/data. */
  root?: string;
}

export async function benchData(args: BenchDataArgs = {}): Promise<object> {
  const { sizeMB = 64, dedupMB = 16, substringMB = 4, shared = true } = args;
  const root = args.root ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'chimed-bench-data-'));
  try {
    const file = path.join(dir, 'synthetic.jsonl');
    await writeSyntheticJsonl(file, sizeMB * (1 << 20));
    const importResult = await timeImport([file]);

    // dedup over the first dedupMB of the same records
    const texts: { id: string; text: string }[] = [];
    let textBytes = 0;
    for await (const r of await openImport(file)) {
      const text = recordText(r);
      texts.push({ id: r.record.id, text });
      textBytes += Buffer.byteLength(text);
      if (textBytes >= dedupMB * (1 << 20)) break;
    }
    const exact = new ExactDeduper();
    let t0 = performance.now();
    let exactDups = 0;
    for (const { id, text } of texts) if (exact.check(id, text) !== undefined) exactDups++;
    const exactMs = performance.now() - t0;
    const near = new NearDeduper(NEAR_DUP_DEFAULTS);
    t0 = performance.now();
    let nearDups = 0;
    for (const { id, text } of texts) if (near.check(id, text)) nearDups++;
    const nearMs = performance.now() - t0;

    const subTexts: string[] = [];
    let subBytes = 0;
    for (const { text } of texts) {
      if (subBytes >= substringMB * (1 << 20)) break;
      subTexts.push(text);
      subBytes += Buffer.byteLength(text);
    }
    t0 = performance.now();
    const ranges = repeatedRanges(subTexts, 50);
    const subMs = performance.now() - t0;

    const result: Record<string, unknown> = {
      bench: 'data',
      import: importResult,
      dedupExact: { mb: +mb(textBytes).toFixed(1), records: texts.length, duplicates: exactDups, mbPerSec: rate(textBytes, exactMs) },
      dedupNear: {
        mb: +mb(textBytes).toFixed(1),
        records: texts.length,
        duplicates: nearDups,
        mbPerSec: rate(textBytes, nearMs),
        ...NEAR_DUP_DEFAULTS,
      },
      substring: {
        mb: +mb(subBytes).toFixed(1),
        chars: subTexts.reduce((n, t) => n + t.length, 0),
        seconds: +(subMs / 1000).toFixed(2),
        mbPerSec: rate(subBytes, subMs),
        textsWithRepeats: ranges.filter((r) => r.length).length,
      },
    };
    const sharedDir = path.resolve(root, '../shared/data');
    if (!shared) {
      result.sharedImport = 'skipped (shared: false)';
    } else if (fs.existsSync(sharedDir)) {
      const files: string[] = [];
      for (const sub of ['raw', 'train', 'dev']) {
        const d = path.join(sharedDir, sub);
        if (!fs.existsSync(d)) continue;
        for (const f of (await readdir(d, { recursive: true })) as string[]) {
          if ((await stat(path.join(d, f))).isFile()) files.push(path.join(d, f));
        }
      }
      result.sharedImport = await timeImport(files.sort());
    } else {
      result.sharedImport = 'skipped: ../shared/data not found';
    }
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const USAGE = `chimed bench data [--size-mb 64] [--dedup-mb 16] [--substring-mb 4] [--no-shared] [--json]
  import MB/s on a generated ShareGPT JSONL of --size-mb (4096 for the larger-than-memory path),
  exact and MinHash near-dup MB/s on --dedup-mb of its text, suffix-array MB/s on --substring-mb,
  and import MB/s over ../shared/data when present`;

/** argv front end (chimed bench data / npm run bench): prints the figures, returns them. */
export async function benchDataCommand(argv: string[]): Promise<object | null> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'size-mb': { type: 'string' },
      'dedup-mb': { type: 'string' },
      'substring-mb': { type: 'string' },
      'no-shared': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return null;
  }
  const n = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!(x > 0)) throw new Error(`--${name}: expected a positive number of MB, got "${v}"`);
    return x;
  };
  const result = await benchData({
    sizeMB: n(values['size-mb'], 'size-mb'),
    dedupMB: n(values['dedup-mb'], 'dedup-mb'),
    substringMB: n(values['substring-mb'], 'substring-mb'),
    shared: !values['no-shared'],
  });
  process.stdout.write(values.json ? JSON.stringify(result) + '\n' : JSON.stringify(result, null, 2) + '\n');
  return result;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await benchDataCommand(process.argv.slice(2));
