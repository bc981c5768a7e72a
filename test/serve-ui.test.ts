// The web UI end to end in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core): a streamed multi-turn chat and preference annotation saved to JSONL.
// The model is freshly initialised, not trained (the API tests check replies' content): what
// the page shows must equal what the API answers. Screenshots go to $CHIMED_SCREENSHOTS when
// set (to look at), else to the test's temp dir.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import { loadChatModel } from '../src/model/load.js';
import { Annotator } from '../src/serve/annotate.js';
import { buildServer, startServer } from '../src/serve/server.js';
import { preferenceOf } from '../src/data/stage-files.js';
import { qaSet, qaTokenizer, writeJsonl } from './fixtures.js';
import { runCli, tmpDir } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const dir = tmpDir('chimed-serve-ui-');
const shots = process.env.CHIMED_SCREENSHOTS ?? dir;
const { sft } = qaSet();
const outFile = path.join(dir, 'prefs.jsonl');
let app: FastifyInstance | undefined;
let browser: Browser | undefined;
let page: Page;
let url = '';

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is not installed (Debian: apt-get install chromium, as .ci/run does)`);
  const tok = await qaTokenizer(dir);
  fs.writeFileSync(
    path.join(dir, 'model.json'),
    JSON.stringify({
      vocab_size: 400,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 512,
    }),
  );
  const ok = (r: ReturnType<typeof runCli>) => assert.equal(r.code, 0, r.stderr + r.stdout);
  ok(runCli(['init', '--config', path.join(dir, 'model.json'), '--tokenizer', tok, '--out', path.join(dir, 'model')]));
  const chat = await loadChatModel({ model: path.join(dir, 'model') });
  const prompts = writeJsonl(
    path.join(dir, 'prompts.jsonl'),
    [0, 2, 4].map((i) => ({ id: `q${i}`, prompt: sft[i].prompt })),
  );
  const annotator = await Annotator.open({ promptsFile: prompts, outFile });
  app = await buildServer({ chat, annotator, annotate: { k: 2, temperature: 1.5, maxNewTokens: 40, seed: 7 } });
  url = await startServer(app, '127.0.0.1', 0);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless'] });
  page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  page.on('pageerror', (e) => {
    throw e;
  });
  // greedy replies, so the page must show exactly what the API answers
  await page.addInitScript(() => localStorage.setItem('chimed.settings', JSON.stringify({ temperature: 0, maxTokens: 64 })));
});

after(async () => {
  await browser?.close();
  await app?.close();
});

const readPrefs = () =>
  fs.existsSync(outFile)
    ? fs
        .readFileSync(outFile, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];

/** Sends text from the composer; returns the request body the page sent and the reply it shows once done. */
async function sendFromPage(text: string, submit: () => Promise<void>, turn: number) {
  const sent = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
  await page.fill('#input', text);
  await submit();
  const body = JSON.parse((await sent).postData() ?? '{}');
  await page.waitForFunction((n) => document.querySelectorAll('.msg.assistant[data-done="true"]').length === n, turn, { timeout: 20_000 });
  return { body, shown: await page.textContent('.msg.assistant:last-child .body') };
}

/** The API's reply to the same request, whole. */
async function apiReply(body: object): Promise<string> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: false }),
  });
  return (await res.json()).choices[0].message.content;
}

test('chat: a message gets a streamed reply, and the next turn carries the history', async () => {
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.textContent('#model-name'), 'chimed');
  // record every text the reply bubble shows while it streams
  await page.evaluate(() => {
    const w = window as unknown as { seen: string[] };
    w.seen = [];
    new MutationObserver(() => {
      const body = document.querySelector('.msg.assistant:last-child .body');
      if (body && body.textContent !== w.seen.at(-1)) w.seen.push(body.textContent ?? '');
    }).observe(document.getElementById('messages')!, { subtree: true, childList: true, characterData: true });
  });
  // the browser's network throttled to 16 KB/s for this reply (a few KB of SSE events): it then
  // reads the stream in parts however fast the machine generates, where an idle or a loaded
  // machine could otherwise hand it the whole reply in one read
  const cdp = await page.context().newCDPSession(page);
  const throughput = (bytesPerS: number) =>
    cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: bytesPerS, uploadThroughput: -1 });
  await throughput(16384);
  const first = await sendFromPage(sft[0].prompt, () => page.press('#input', 'Enter'), 1);
  await throughput(-1);
  assert.deepEqual([first.body.stream, first.body.temperature, first.body.messages], [true, 0, [{ role: 'user', content: sft[0].prompt }]]);
  const reply = await apiReply(first.body);
  assert.ok(reply.length > 0);
  assert.equal(first.shown, reply);
  const seen = (await page.evaluate(() => (window as unknown as { seen: string[] }).seen)).filter(Boolean);
  // a part shown before the whole
  assert.ok(seen.length >= 2 && seen[0] !== reply, `the reply grew in steps: ${JSON.stringify(seen)}`);
  assert.ok(
    seen.every((s) => reply.startsWith(s)),
    `every step is a prefix of the reply: ${JSON.stringify(seen)}`,
  );
  await page.screenshot({ path: path.join(shots, 'chat-1.png') });

  const second = await sendFromPage(sft[2].prompt, () => page.click('#send'), 2);
  assert.deepEqual(second.body.messages, [
    { role: 'user', content: sft[0].prompt },
    { role: 'assistant', content: reply },
    { role: 'user', content: sft[2].prompt },
  ]);
  assert.equal(second.shown, await apiReply(second.body));
  await page.screenshot({ path: path.join(shots, 'chat-2.png') });

  await page.click('#new-chat');
  assert.equal(await page.locator('.msg').count(), 0);
});

test('annotation: pick, edit and all-bad verdicts land in the preference JSONL', async () => {
  await page.click('#tab-annotate');
  await page.waitForSelector('.response-card');
  const question = await page.textContent('#annot-question');
  assert.equal(question, sft[0].prompt);
  const cards = await page.locator('.response-text').allTextContents();
  assert.equal(cards.length, 2, `two distinct replies: ${JSON.stringify(cards)}`);
  await page.screenshot({ path: path.join(shots, 'annotate.png') });

  // 1. B is better
  await page.locator('.response-card').nth(1).locator('[data-action=choose]').click();
  await page.waitForFunction(() => document.getElementById('annot-progress')?.textContent?.startsWith('1 / 3'));
  let prefs = readPrefs();
  assert.equal(prefs.length, 1);
  assert.deepEqual([prefs[0].prompt, prefs[0].chosen, prefs[0].rejected, prefs[0].edited], [sft[0].prompt, cards[1], cards[0], false]);

  // 2. A, edited, is better
  await page.waitForFunction(
    (q) => document.getElementById('annot-question')?.textContent !== q && document.querySelectorAll('.response-card').length > 0,
    question,
  );
  assert.equal(await page.textContent('#annot-question'), sft[2].prompt);
  const cards2 = await page.locator('.response-text').allTextContents();
  const card = page.locator('.response-card').first();
  await card.locator('[data-action=edit]').click();
  await card.locator('textarea').fill('糖尿病常用二甲双胍，请遵医嘱。');
  await page.screenshot({ path: path.join(shots, 'annotate-edit.png') });
  await card.locator('[data-action=choose]').click();
  await page.waitForFunction(() => document.getElementById('annot-progress')?.textContent?.startsWith('2 / 3'));
  prefs = readPrefs().slice(1);
  assert.ok(
    prefs.length >= 1 &&
      prefs.every((p) => p.chosen === '糖尿病常用二甲双胍，请遵医嘱。' && p.edited === true && p.prompt === sft[2].prompt),
  );
  assert.deepEqual(prefs.map((p) => p.rejected).sort(), cards2.filter((c) => c !== '糖尿病常用二甲双胍，请遵医嘱。').sort());

  // 3. all bad, with a better reply written in
  await page.waitForFunction(() => document.getElementById('annot-question')?.textContent?.includes('肺炎'));
  await page.waitForSelector('.response-card');
  await page.click('#annot-bad');
  await page.fill('#annot-better', '肺炎常用阿莫西林，请遵医嘱。');
  await page.click('#annot-bad-save');
  await page.waitForSelector('#annot-done:not([hidden])');
  assert.match((await page.textContent('#annot-progress')) ?? '', /^3 \/ 3/);
  await page.screenshot({ path: path.join(shots, 'annotate-done.png') });

  const all = readPrefs();
  assert.ok(all.at(-1).chosen === '肺炎常用阿莫西林，请遵医嘱。' && all.at(-1).prompt === sft[4].prompt);
  for (const [i, rec] of all.entries()) preferenceOf(rec, `${outFile}:${i + 1}`); // what `chimed train rm` / `dpo` read
});
