// chimed web UI: streamed multi-turn chat over /v1/chat/completions and preference
// annotation over /annotate/*. Plain DOM, no framework: two views and a settings dialog.
// Model text is always inserted with textContent, never as HTML.

const $ = (id) => document.getElementById(id);

const settings = {
  temperature: 0.7,
  maxTokens: 256,
  system: '',
  key: '',
  ...JSON.parse(localStorage.getItem('chimed.settings') || '{}'),
};
const saveSettings = () => localStorage.setItem('chimed.settings', JSON.stringify(settings));

let config = { model: 'chimed', auth: false, annotate: false, k: 2, max_tokens_limit: 1024 };

function headers() {
  const h = { 'content-type': 'application/json' };
  if (settings.key) h.authorization = `Bearer ${settings.key}`;
  return h;
}

/** The message of an OpenAI-shaped error response, or the status line. */
async function errorText(res) {
  try {
    const body = await res.json();
    return body.error?.message || `${res.status} ${res.statusText}`;
  } catch {
    return `${res.status} ${res.statusText}`;
  }
}

function toast(text, kind = 'ok') {
  const t = $('toast');
  t.textContent = text;
  t.className = `toast ${kind}`;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    t.hidden = true;
  }, 2500);
}

// ---------- views ----------

function show(view) {
  for (const tab of document.querySelectorAll('[role=tab]')) tab.setAttribute('aria-selected', String(tab.dataset.view === view));
  $('view-chat').hidden = view !== 'chat';
  $('view-annotate').hidden = view !== 'annotate';
  if (view === 'annotate' && config.annotate && !annot.prompt) loadNext();
  if (view === 'chat') $('input').focus();
  location.hash = view;
}

// ---------- chat ----------

const history = []; // [{role, content}] of finished turns
let running = null; // AbortController of the reply being streamed

function bubble(role, text) {
  $('chat-empty').hidden = true;
  const el = document.createElement('div');
  el.className = `msg ${role}`;
  el.dataset.role = role;
  const who = document.createElement('div');
  who.className = 'who';
  who.textContent = role === 'user' ? '你 You' : '助手 Assistant';
  const body = document.createElement('div');
  body.className = 'body';
  body.textContent = text;
  el.append(who, body);
  $('messages').append(el);
  el.scrollIntoView({ block: 'end' });
  return body;
}

/** Reads an SSE response, calling onEvent with each parsed `data:` object until [DONE]. */
async function readSse(res, onEvent) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

function setBusy(busy) {
  $('send').hidden = busy;
  $('stop').hidden = !busy;
  $('input').disabled = busy;
}

async function send(text) {
  if (running || !text.trim()) return;
  history.push({ role: 'user', content: text });
  bubble('user', text);
  const body = bubble('assistant', '');
  const msg = body.parentElement;
  msg.classList.add('streaming');
  $('input').value = '';
  setBusy(true);
  $('chat-status').textContent = '生成中… generating';
  running = new AbortController();
  let reply = '',
    finish = null;
  const t0 = performance.now();
  try {
    const messages = [...(settings.system ? [{ role: 'system', content: settings.system }] : []), ...history];
    const res = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: headers(),
      signal: running.signal,
      body: JSON.stringify({
        model: config.model,
        messages,
        stream: true,
        temperature: Number(settings.temperature),
        max_tokens: Number(settings.maxTokens),
      }),
    });
    if (!res.ok) throw new Error(await errorText(res));
    await readSse(res, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      const c = chunk.choices[0];
      if (!c) return;
      if (c.delta?.content) {
        reply += c.delta.content;
        body.textContent = reply;
        msg.scrollIntoView({ block: 'end' });
      }
      if (c.finish_reason) finish = c.finish_reason;
    });
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    $('chat-status').textContent = finish === 'length' ? `已达长度上限 stopped at max tokens · ${secs}s` : `完成 done · ${secs}s`;
  } catch (e) {
    if (e.name === 'AbortError') $('chat-status').textContent = '已停止 stopped';
    else {
      $('chat-status').textContent = '';
      const err = document.createElement('div');
      err.className = 'error';
      err.textContent = `出错 Error: ${e.message}`;
      msg.append(err);
    }
  } finally {
    // a stopped reply stays in the history with what arrived, as the user saw it; a turn
    // that got nothing back leaves the history so the next question is not asked after it
    if (reply) history.push({ role: 'assistant', content: reply });
    else history.pop();
    msg.classList.remove('streaming');
    msg.dataset.done = 'true';
    running = null;
    setBusy(false);
    $('input').focus();
  }
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  send($('input').value);
});
$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send($('input').value);
  }
});
$('stop').addEventListener('click', () => running?.abort());
$('new-chat').addEventListener('click', () => {
  running?.abort();
  history.length = 0;
  for (const m of document.querySelectorAll('#messages .msg')) m.remove();
  $('chat-empty').hidden = false;
  $('chat-status').textContent = '';
});
for (const chip of document.querySelectorAll('.chip')) chip.addEventListener('click', () => send(chip.textContent));

// ---------- annotation ----------

const annot = { prompt: null, pairId: null, responses: [], busy: false };

function renderProgress(p) {
  $('annot-progress').textContent = `${p.done} / ${p.total} 已完成 done`;
  $('annot-bar').style.width = `${p.total ? (100 * p.done) / p.total : 0}%`;
}

function renderPrompt(prompt) {
  $('annot-prompt-id').textContent = `#${prompt.id}`;
  const hist = $('annot-history');
  hist.replaceChildren();
  for (const m of prompt.messages.slice(0, -1)) {
    const line = document.createElement('div');
    line.className = `turn ${m.role}`;
    line.textContent = `${m.role === 'user' ? '用户 User' : m.role === 'system' ? '系统 System' : '助手 Assistant'}: ${m.content}`;
    hist.append(line);
  }
  $('annot-question').textContent = prompt.messages.at(-1).content;
}

function renderResponses() {
  const box = $('annot-responses');
  box.replaceChildren();
  annot.responses.forEach((text, i) => {
    const letter = String.fromCharCode(65 + i);
    const card = document.createElement('article');
    card.className = 'response-card';
    card.dataset.index = String(i);
    const head = document.createElement('div');
    head.className = 'label';
    head.textContent = `回答 ${letter} · Reply ${letter}`;
    const body = document.createElement('div');
    body.className = 'response-text';
    body.textContent = text;
    const edit = document.createElement('textarea');
    edit.className = 'response-edit';
    edit.value = text;
    edit.rows = 4;
    edit.hidden = true;
    const row = document.createElement('div');
    row.className = 'row';
    const choose = document.createElement('button');
    choose.type = 'button';
    choose.className = 'primary';
    choose.dataset.action = 'choose';
    choose.textContent = `${letter} 更好 · ${letter} is better`;
    choose.addEventListener('click', () => save(i, edit.hidden ? undefined : edit.value));
    const toggle = document.createElement('button');
    toggle.type = 'button';
    toggle.className = 'ghost';
    toggle.dataset.action = 'edit';
    toggle.textContent = '编辑 Edit';
    toggle.addEventListener('click', () => {
      edit.hidden = !edit.hidden;
      body.hidden = !edit.hidden;
      toggle.textContent = edit.hidden ? '编辑 Edit' : '取消编辑 Cancel edit';
      choose.textContent = edit.hidden ? `${letter} 更好 · ${letter} is better` : `保存修改为更好 · Save edit as better`;
      if (!edit.hidden) edit.focus();
    });
    row.append(choose, toggle);
    card.append(head, body, edit, row);
    box.append(card);
  });
  if (annot.responses.length < 2) {
    const note = document.createElement('p');
    note.className = 'hint';
    note.textContent =
      '模型只给出了一个不同的回答：编辑它成为更好的回答，或标记为都不好。The model gave one distinct reply: edit it into a better one, or mark it bad.';
    box.append(note);
  }
}

function setAnnotBusy(busy, text = '') {
  annot.busy = busy;
  for (const b of document.querySelectorAll('#annot-on button')) b.disabled = busy;
  $('annot-status').textContent = text;
}

async function loadNext(after) {
  setAnnotBusy(true, '载入中… loading');
  $('annot-bad-panel').hidden = true;
  $('annot-better').value = '';
  try {
    const q = after === undefined ? '' : `?after=${after}`;
    const res = await fetch(`/annotate/next${q}`, { headers: headers() });
    if (!res.ok) throw new Error(await errorText(res));
    const data = await res.json();
    renderProgress(data.progress);
    annot.prompt = data.prompt;
    $('annot-done').hidden = data.prompt !== null;
    $('annot-work').hidden = data.prompt === null;
    $('annot-skip').hidden = data.prompt === null;
    if (!data.prompt) {
      setAnnotBusy(false);
      return;
    }
    renderPrompt(data.prompt);
    const waiting = document.createElement('div');
    waiting.className = 'loading-card';
    waiting.textContent = `模型作答中… sampling ${data.k} replies`;
    $('annot-responses').replaceChildren(waiting);
    setAnnotBusy(true);
    const s = await fetch('/annotate/sample', { method: 'POST', headers: headers(), body: JSON.stringify({ index: data.prompt.index }) });
    if (!s.ok) throw new Error(await errorText(s));
    const pair = await s.json();
    annot.pairId = pair.pair_id;
    annot.responses = pair.responses;
    renderResponses();
    setAnnotBusy(false);
  } catch (e) {
    setAnnotBusy(false, `出错 Error: ${e.message}`);
  }
}

async function save(choice, edited) {
  if (annot.busy || !annot.pairId) return;
  setAnnotBusy(true, '保存中… saving');
  try {
    const res = await fetch('/annotate/save', {
      method: 'POST',
      headers: headers(),
      body: JSON.stringify({ pair_id: annot.pairId, choice, ...(edited !== undefined && edited.trim() ? { edited } : {}) }),
    });
    if (!res.ok) throw new Error(await errorText(res));
    const r = await res.json();
    toast(r.saved ? `已保存 ${r.saved} 对 · saved ${r.saved} pair${r.saved > 1 ? 's' : ''}` : '已记录 recorded (no pair)');
    annot.pairId = null;
    await loadNext(annot.prompt.index);
  } catch (e) {
    setAnnotBusy(false, `出错 Error: ${e.message}`);
  }
}

$('annot-skip').addEventListener('click', () => {
  if (!annot.busy) loadNext(annot.prompt?.index);
});
$('annot-bad').addEventListener('click', () => {
  $('annot-bad-panel').hidden = false;
  $('annot-better').focus();
});
$('annot-bad-cancel').addEventListener('click', () => {
  $('annot-bad-panel').hidden = true;
});
$('annot-bad-save').addEventListener('click', () => save(null, $('annot-better').value));
document.addEventListener('keydown', (e) => {
  if ($('view-annotate').hidden || annot.busy || e.target.closest('textarea, input') || e.metaKey || e.ctrlKey || e.altKey) return;
  const i = Number(e.key) - 1;
  if (Number.isInteger(i) && i >= 0 && i < annot.responses.length) save(i);
});

// ---------- settings ----------

function fillSettings() {
  $('set-temperature').value = settings.temperature;
  $('temp-out').textContent = Number(settings.temperature).toFixed(2);
  $('set-max-tokens').value = settings.maxTokens;
  $('set-max-tokens').max = config.max_tokens_limit;
  $('set-system').value = settings.system;
  $('set-key').value = settings.key;
  $('key-row').hidden = !config.auth;
}
$('open-settings').addEventListener('click', () => {
  fillSettings();
  $('settings').showModal();
});
$('set-temperature').addEventListener('input', (e) => {
  settings.temperature = Number(e.target.value);
  $('temp-out').textContent = settings.temperature.toFixed(2);
  saveSettings();
});
$('set-max-tokens').addEventListener('change', (e) => {
  settings.maxTokens = Math.max(1, Math.round(Number(e.target.value)) || 256);
  saveSettings();
});
$('set-system').addEventListener('change', (e) => {
  settings.system = e.target.value;
  saveSettings();
});
$('set-key').addEventListener('change', (e) => {
  settings.key = e.target.value.trim();
  saveSettings();
});

// ---------- start ----------

for (const tab of document.querySelectorAll('[role=tab]')) tab.addEventListener('click', () => show(tab.dataset.view));

async function start() {
  try {
    const res = await fetch('/ui/config');
    if (res.ok) config = await res.json();
  } catch {
    /* the defaults do until the server answers */
  }
  settings.maxTokens = Math.min(settings.maxTokens, config.max_tokens_limit);
  $('model-name').textContent = config.model;
  $('annot-off').hidden = config.annotate;
  $('annot-on').hidden = !config.annotate;
  if (config.auth && !settings.key) {
    fillSettings();
    $('settings').showModal();
    $('set-key').focus();
  }
  show(location.hash === '#annotate' ? 'annotate' : 'chat');
  document.body.dataset.ready = 'true';
}
start();
