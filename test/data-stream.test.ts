// Import streams: a file several times larger than the JS heap it is given imports fully,
// and resident memory grows by far less than the file. The import runs in a child process
// with a capped heap, so holding the file (or its records) would crash it. Growth is a
// constant (heap up to its cap, read buffers), so the RSS check needs a file well above it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import iconv from 'iconv-lite';
import { rng, syntheticText, writeSyntheticJsonl } from '../bench/data.js';
import { tmpDir } from './helpers.js';

const HEAP_MB = 32;
const importModule = new URL('../src/data/import.js', import.meta.url).href;

/** Imports `file` in a child with a HEAP_MB old-space cap; reports records and RSS. */
async function importInChild(file: string): Promise<{ records: number; rejects: number; base: number; peak: number }> {
  const script = `
    import { openImport } from ${JSON.stringify(importModule)};
    const base = process.memoryUsage().rss;
    let peak = base, records = 0;
    const stream = await openImport(process.argv[1]);
    for await (const r of stream) if (++records % 1000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
    console.log(JSON.stringify({ records, rejects: stream.summary.rejects, base, peak: Math.max(peak, process.memoryUsage().rss) }));`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [`--max-old-space-size=${HEAP_MB}`, '--max-semi-space-size=4', '--input-type=module', '-e', script, file],
    { maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout);
}

test('a 256 MB JSONL file imports in bounded memory', async (t) => {
  const dir = tmpDir('chimed-data-stream-');
  try {
    const file = path.join(dir, 'big.jsonl');
    const written = await writeSyntheticJsonl(file, 256 << 20, 7);
    const size = (await stat(file)).size;
    const r = await importInChild(file);
    assert.equal(r.records, written);
    assert.equal(r.rejects, 0);
    const growth = r.peak - r.base;
    t.diagnostic(
      `RSS ${(r.base / 2 ** 20).toFixed(0)} -> ${(r.peak / 2 ** 20).toFixed(0)} MB for a ${(size / 2 ** 20).toFixed(0)} MB file`,
    );
    assert.ok(growth < size / 3, `RSS grew ${(growth / 2 ** 20).toFixed(0)} MB importing ${(size / 2 ** 20).toFixed(0)} MB`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a 48 MB GB18030 CSV with multi-line quoted fields streams through the decoder and csv-parse under a 32 MB heap', async () => {
  const dir = tmpDir('chimed-data-stream-');
  try {
    const file = path.join(dir, 'big.csv');
    const out = fs.createWriteStream(file);
    out.write(iconv.encode('department,title,ask,answer\n', 'gb18030'));
    const rand = rng(3);
    let bytes = 0;
    let rows = 0;
    while (bytes < 48 << 20) {
      const batch: string[] = [];
      for (let i = 0; i < 500; i++, rows++) {
        batch.push(
          `内科,${syntheticText(rand, 10)},"${syntheticText(rand, 40)}\n${syntheticText(rand, 20)}",${syntheticText(rand, 150)}\n`,
        );
      }
      const chunk = iconv.encode(batch.join(''), 'gb18030');
      bytes += chunk.length;
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    // decoded to UTF-16 the text alone is about the file size, beyond the heap cap
    const r = await importInChild(file);
    assert.equal(r.records, rows);
    assert.equal(r.rejects, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
