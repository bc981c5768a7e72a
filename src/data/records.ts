// The one record schema every importer produces, one shape per kind of data, and a validator
// per kind. Validators return the first problem as "field: what is wrong" so a reject names
// the exact field; they never throw.

import type { ChatMessage, Role } from '../tokenizer/chat-template.js';

export type { ChatMessage, Role };
export const ROLES: readonly Role[] = ['system', 'user', 'assistant'];

/** Upstream fields the importer did not map, kept so nothing about a record is lost. */
export type Meta = Record<string, unknown>;

export interface Document {
  id: string;
  source: string;
  text: string;
  meta?: Meta;
}

/** A chat: optional system turn, then user/assistant turns alternating from a user turn.
 *  A conversation that ends on a user turn is a prompt without a reference answer. */
export interface Conversation {
  id: string;
  source: string;
  messages: ChatMessage[];
  meta?: Meta;
}

/** `prompt` is the history plus the final user turn; chosen/rejected answer that turn. */
export interface Preference {
  id: string;
  source: string;
  prompt: ChatMessage[];
  chosen: string;
  rejected: string;
  meta?: Meta;
}

export interface McqItem {
  id: string;
  source: string;
  question: string;
  /** Letter -> option text, letters A, B, C... */
  options: Record<string, string>;
  /** One or more letters, e.g. "B" or "ACD". */
  answer: string;
  subject?: string;
  explanation?: string;
  meta?: Meta;
}

/** Offsets count Unicode code points (as Python slices do), `end` exclusive. */
export interface NerEntity {
  start: number;
  end: number;
  type: string;
  text: string;
}

export interface NerExample {
  id: string;
  source: string;
  text: string;
  entities: NerEntity[];
  meta?: Meta;
}

export interface RecordByKind {
  document: Document;
  conversation: Conversation;
  preference: Preference;
  mcq: McqItem;
  ner: NerExample;
}
export type RecordKind = keyof RecordByKind;

/** A record together with its kind, the unit that flows through import, dedup and build. */
export type Tagged = { [K in RecordKind]: { kind: K; record: RecordByKind[K] } }[RecordKind];

export const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

function nonEmptyString(x: unknown, field: string): string | undefined {
  if (typeof x !== 'string') return `${field}: expected a string, got ${describe(x)}`;
  if (!x.trim()) return `${field}: empty text`;
  return undefined;
}

export function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  return typeof x === 'object' ? 'an object' : `${typeof x} ${JSON.stringify(x)?.slice(0, 40)}`;
}

function checkHeader(r: Record<string, unknown>): string | undefined {
  return (
    nonEmptyString(r.id, 'id') ??
    nonEmptyString(r.source, 'source') ??
    (r.meta !== undefined && !isObj(r.meta) ? `meta: expected an object, got ${describe(r.meta)}` : undefined)
  );
}

function checkMessages(messages: unknown, field: string, mustEndWith?: Role): string | undefined {
  if (!Array.isArray(messages) || messages.length === 0) return `${field}: expected a non-empty array of messages`;
  let expect: Role = 'user';
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    const f = `${field}[${i}]`;
    if (!isObj(m)) return `${f}: expected {role, content}, got ${describe(m)}`;
    if (!ROLES.includes(m.role as Role)) return `${f}.role: expected system|user|assistant, got ${describe(m.role)}`;
    const bad = nonEmptyString(m.content, `${f}.content`);
    if (bad) return bad;
    if (m.role === 'system') {
      if (i !== 0) return `${f}.role: a system message may only come first`;
      continue;
    }
    if (m.role !== expect) return `${f}.role: expected ${expect} (turns alternate, starting with user), got ${m.role}`;
    expect = expect === 'user' ? 'assistant' : 'user';
  }
  if (expect === 'user' && messages.length === 1) return `${field}: only a system message`;
  const last = (messages[messages.length - 1] as ChatMessage).role;
  if (mustEndWith && last !== mustEndWith) return `${field}: must end with a ${mustEndWith} message, ends with ${last}`;
  return undefined;
}

/** Code-point length; equals .length unless the text holds astral characters. */
export function codePointLength(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) n--;
  }
  return n;
}

/** Slice by code-point offsets (NER offsets follow Python, which counts code points). */
export function sliceCodePoints(text: string, start: number, end: number): string {
  if (!/[\ud800-\udfff]/.test(text)) return text.slice(start, end);
  return Array.from(text).slice(start, end).join('');
}

function checkEntities(text: string, entities: unknown): string | undefined {
  if (!Array.isArray(entities)) return `entities: expected an array, got ${describe(entities)}`;
  const len = codePointLength(text);
  for (let i = 0; i < entities.length; i++) {
    const e = entities[i];
    const f = `entities[${i}]`;
    if (!isObj(e)) return `${f}: expected {start, end, type, text}, got ${describe(e)}`;
    const { start, end } = e;
    if (!Number.isInteger(start) || !Number.isInteger(end))
      return `${f}: start/end must be integers, got ${describe(start)}, ${describe(end)}`;
    const s = start as number,
      t = end as number;
    if (s < 0 || t <= s || t > len) return `${f}: bad offsets [${s}, ${t}) for text of length ${len}`;
    const bad = nonEmptyString(e.type, `${f}.type`);
    if (bad) return bad;
    const span = sliceCodePoints(text, s, t);
    if (e.text !== span) return `${f}: text ${JSON.stringify(e.text)} does not match text[${s}:${t}] = ${JSON.stringify(span)}`;
  }
  return undefined;
}

const validators: { [K in RecordKind]: (r: Record<string, unknown>) => string | undefined } = {
  document: (r) => nonEmptyString(r.text, 'text'),
  conversation: (r) => checkMessages(r.messages, 'messages'),
  preference: (r) =>
    checkMessages(r.prompt, 'prompt', 'user') ??
    nonEmptyString(r.chosen, 'chosen') ??
    nonEmptyString(r.rejected, 'rejected') ??
    (r.chosen === r.rejected ? 'chosen: identical to rejected' : undefined),
  mcq: (r) => {
    const bad = nonEmptyString(r.question, 'question');
    if (bad) return bad;
    if (!isObj(r.options)) return `options: expected an object of letter -> text, got ${describe(r.options)}`;
    const letters = Object.keys(r.options);
    if (letters.length < 2) return `options: expected at least 2 options, got ${letters.length}`;
    for (const l of letters) {
      if (!/^[A-Z]$/.test(l)) return `options: key ${JSON.stringify(l)} is not a capital letter`;
      const b = nonEmptyString(r.options[l], `options.${l}`);
      if (b) return b;
    }
    if (typeof r.answer !== 'string' || !/^[A-Z]+$/.test(r.answer))
      return `answer: expected one or more capital letters, got ${describe(r.answer)}`;
    for (const l of r.answer) if (!letters.includes(l)) return `answer: letter ${l} is not among the options ${letters.join('')}`;
    if (new Set(r.answer).size !== r.answer.length) return `answer: repeated letter in ${r.answer}`;
    for (const f of ['subject', 'explanation'] as const) {
      if (r[f] !== undefined && typeof r[f] !== 'string') return `${f}: expected a string, got ${describe(r[f])}`;
    }
    return undefined;
  },
  ner: (r) => nonEmptyString(r.text, 'text') ?? checkEntities(r.text as string, r.entities),
};

/** The first problem with a record of the given kind, or undefined when it is valid. */
export function validateRecord(kind: RecordKind, record: unknown): string | undefined {
  if (!isObj(record)) return `record: expected an object, got ${describe(record)}`;
  return checkHeader(record) ?? validators[kind](record);
}

/**
 * Trims leading and trailing whitespace of every free-text field (upstream data is full of
 * stray spaces and newlines around answers). NER text is left alone: offsets point into it.
 */
export function tidyRecord(t: Tagged): Tagged {
  const trimMessages = (ms: ChatMessage[]) =>
    ms.map((m) => ({ ...m, content: typeof m.content === 'string' ? m.content.trim() : m.content }));
  const trim = <T>(x: T): T => (typeof x === 'string' ? (x.trim() as T) : x);
  switch (t.kind) {
    case 'document':
      return { kind: t.kind, record: { ...t.record, text: trim(t.record.text) } };
    case 'conversation':
      return {
        kind: t.kind,
        record: { ...t.record, messages: Array.isArray(t.record.messages) ? trimMessages(t.record.messages) : t.record.messages },
      };
    case 'preference':
      return {
        kind: t.kind,
        record: {
          ...t.record,
          prompt: Array.isArray(t.record.prompt) ? trimMessages(t.record.prompt) : t.record.prompt,
          chosen: trim(t.record.chosen),
          rejected: trim(t.record.rejected),
        },
      };
    case 'mcq': {
      const r = t.record;
      const options =
        r.options && typeof r.options === 'object'
          ? Object.fromEntries(Object.entries(r.options).map(([k, v]) => [k, trim(v)]))
          : r.options;
      return {
        kind: t.kind,
        record: { ...r, question: trim(r.question), options, ...(r.explanation !== undefined ? { explanation: trim(r.explanation) } : {}) },
      };
    }
    case 'ner':
      return t;
  }
}

/** All the text of a record in reading order, the string dedup, decontamination and stats see. */
export function recordText(t: Tagged): string {
  switch (t.kind) {
    case 'document':
      return t.record.text;
    case 'conversation':
      return t.record.messages.map((m) => m.content).join('\n');
    case 'preference':
      return [...t.record.prompt.map((m) => m.content), t.record.chosen, t.record.rejected].join('\n');
    case 'mcq':
      return [t.record.question, ...Object.entries(t.record.options).map(([k, v]) => `${k}. ${v}`)].join('\n');
    case 'ner':
      return t.record.text;
  }
}
