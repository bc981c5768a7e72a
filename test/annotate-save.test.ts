// Annotation saves lose nothing: a full disk (a short write, then ENOSPC) answers a 5xx that
// says why and leaves the file with complete lines only; a file deleted while serving is
// recreated with what was saved before; one replaced by another program stops the saves; an
// incomplete last line from a crash is moved to a side file on start.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { WriteFn } from '../src/io/atomic.js';
import { AppendError, AppendOnlyJsonl, partialFile } from '../src/io/append-jsonl.js';
import { loadChatModel, type ChatModel } from '../src/model/load.js';
import { Annotator } from '../src/serve/annotate.js';
import { buildServer, startServer } from '../src/serve/server.js';
import { preferenceOf } from '../src/data/stage-files.js';
import { qaSet, untrainedChatModel, writeJsonl } from './fixtures.js';
import { tmpDir } from './helpers.js';

const dir = tmpDir('chimed-annotate-save-');
const { sft } = qaSet();
let chat: ChatModel;
const apps: FastifyInstance[] = [];

/** A disk that fills up when `full` is set: the write in flight stores half its bytes, then ENOSPC. */
function fillingDisk() {
  const disk = { full: false, calls: 0, write: undefined as unknown as WriteFn };
  disk.write = async (fh, chunk, offset, length) => {
    disk.calls++;
    if (!disk.full) return fh.write(chunk, offset, length);
    if (length > 1) return fh.write(chunk, offset, Math.floor(length / 2));
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  };
  return disk;
}

const lines = (f: string) => fs.readFileSync(f, 'utf8').split('\n');
const records = (f: string) =>
  lines(f)
    .filter(Boolean)
    .map((l) => JSON.parse(l));

before(async () => {
  chat = await loadChatModel({ model: await untrainedChatModel(dir) });
});

after(async () => {
  for (const a of apps) await a.close();
});

test('a full disk: the append rejects with 507 and why, the file keeps only complete lines, a retry after freeing space saves', async () => {
  const f = path.join(dir, 'full/prefs.jsonl');
  const disk = fillingDisk();
  const w = await AppendOnlyJsonl.open(f, { write: disk.write });
  await w.append([{ id: 1, text: '第一条' }]);
  disk.full = true;
  const err = await w.append([{ id: 2, text: '第二条'.repeat(50) }]).then(
    () => null,
    (e) => e,
  );
  assert.ok(err instanceof AppendError, String(err));
  assert.equal(err.status, 507);
  assert.equal(err.code, 'disk_full');
  assert.match(err.message, /no space left .*prefs\.jsonl.*nothing was saved/);
  assert.ok(disk.calls >= 2, 'a short write happened before ENOSPC');
  assert.deepEqual(records(f), [{ id: 1, text: '第一条' }], 'the cut-off line was removed');
  assert.ok(fs.readFileSync(f, 'utf8').endsWith('\n'));
  disk.full = false;
  await w.append([{ id: 3 }]);
  await w.close();
  assert.deepEqual(
    records(f).map((r) => r.id),
    [1, 3],
    'the next save starts on a line of its own',
  );
});

test("the kernel's own ENOSPC (/dev/full) is an error naming the file, never a silent success", async () => {
  const w = await AppendOnlyJsonl.open('/dev/full');
  const err = await w.append([{ id: 1 }]).then(
    () => null,
    (e) => e,
  );
  assert.ok(err instanceof AppendError, String(err));
  assert.ok(err.status >= 500);
  assert.match(err.message, /\/dev\/full/);
  await w.close();
});

test('deleted while open: recreated with everything saved before; replaced: appends stop loudly', async () => {
  const f = path.join(dir, 'deleted/prefs.jsonl');
  const warnings: string[] = [];
  const w = await AppendOnlyJsonl.open(f, { warn: (m) => warnings.push(m) });
  await w.append([{ id: 1 }, { id: 2 }]);
  fs.rmSync(path.dirname(f), { recursive: true });
  await w.append([{ id: 3 }]);
  assert.deepEqual(
    records(f).map((r) => r.id),
    [1, 2, 3],
  );
  assert.match(warnings.join('\n'), /deleted while the server was running; recreated/);
  fs.writeFileSync(`${f}.new`, '{"other":true}\n');
  fs.renameSync(`${f}.new`, f);
  const err = await w.append([{ id: 4 }]).then(
    () => null,
    (e) => e,
  );
  assert.equal(err?.code, 'file_replaced', String(err));
  assert.equal(
    (
      await w.append([{ id: 5 }]).then(
        () => null,
        (e) => e,
      )
    )?.code,
    'file_replaced',
    'and stays stopped',
  );
  assert.deepEqual(records(f), [{ other: true }], "the other program's file is untouched");
  await w.close();
});

test('on start an incomplete last line is moved to FILE.partial with a warning, and annotation continues', async () => {
  const prompts = writeJsonl(
    path.join(dir, 'prompts.jsonl'),
    [0, 2, 4].map((i) => ({ id: `q${i}`, prompt: sft[i].prompt })),
  );
  const out = path.join(dir, 'crashed/prefs.jsonl');
  fs.mkdirSync(path.dirname(out));
  const good = JSON.stringify({ id: 'q0', prompt_id: 'q0', prompt: sft[0].prompt, chosen: '好', rejected: '坏' });
  const cut = Buffer.from(JSON.stringify({ id: 'q2', prompt_id: 'q2', prompt: sft[2].prompt, chosen: '甲乙', rejected: '丙' })).subarray(
    0,
    40,
  );
  fs.writeFileSync(out, Buffer.concat([Buffer.from(good + '\n'), cut]));
  const warnings: string[] = [];
  const a = await Annotator.open({ promptsFile: prompts, outFile: out, warn: (m) => warnings.push(m) });
  assert.match(warnings.join('\n'), /last line was incomplete \(40 bytes.*moved it to .*prefs\.jsonl\.partial/);
  assert.deepEqual(fs.readFileSync(partialFile(out)), Buffer.concat([cut, Buffer.from('\n')]), 'the fragment is kept byte for byte');
  assert.equal(fs.readFileSync(out, 'utf8'), good + '\n');
  assert.deepEqual(a.progress(), { done: 1, total: 3 });
  const id = a.hold(1, ['甲', '乙']);
  await a.save(id, { choice: 0 });
  await a.close();
  assert.deepEqual(
    records(out).map((r) => r.prompt_id),
    ['q0', 'q2'],
  );
  const again: string[] = [];
  await (await Annotator.open({ promptsFile: prompts, outFile: out, warn: (m) => again.push(m) })).close();
  assert.deepEqual(again, [], 'a clean file opens without a warning');
  // a device would swallow the saves, or never end when read back
  for (const dev of ['/dev/null', '/dev/zero'])
    await assert.rejects(Annotator.open({ promptsFile: prompts, outFile: dev }), /not a regular file/);
});

test('POST /annotate/save on a full disk answers 507 with the reason and keeps the pair for a retry', async () => {
  const prompts = writeJsonl(path.join(dir, 'prompts-http.jsonl'), [{ id: 'h1', prompt: sft[0].prompt }]);
  const out = path.join(dir, 'http/prefs.jsonl');
  const disk = fillingDisk();
  const annotator = await Annotator.open({ promptsFile: prompts, outFile: out, write: disk.write });
  const app = await buildServer({ chat, annotator, annotate: { k: 2, temperature: 1.5, maxNewTokens: 8, seed: 3 } });
  apps.push(app);
  const url = await startServer(app, '127.0.0.1', 0);
  const post = async (p: string, body: unknown) => {
    const res = await fetch(`${url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: await res.json() };
  };
  const pair = await post('/annotate/sample', { index: 0 });
  assert.equal(pair.status, 200, JSON.stringify(pair.json));
  const verdict = { pair_id: pair.json.pair_id, choice: null, edited: sft[0].response };
  disk.full = true;
  const full = await post('/annotate/save', verdict);
  assert.equal(full.status, 507, JSON.stringify(full.json));
  assert.match(full.json.error.message, /no space left/);
  assert.equal(fs.readFileSync(out, 'utf8'), '', 'nothing half-written');
  disk.full = false;
  const saved = await post('/annotate/save', verdict);
  assert.equal(saved.status, 200, JSON.stringify(saved.json));
  const recs = records(out);
  assert.equal(recs.length, saved.json.saved);
  for (const r of recs) assert.equal(preferenceOf(r, out).chosen, sft[0].response);
});
