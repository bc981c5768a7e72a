// What every format reader shares: the context of the file being read, the items readers
// yield, a per-row adapter for formats that map one row to one record, and field helpers
// that produce reject reasons naming the field.
import type { ChatMessage, Meta, Role, Tagged } from '../records.js';
import { describe, isObj } from '../records.js';
import { isRowError, type RawRow } from './rows.js';

/** A reason a row cannot become a record; the importer turns it into a reject. */
export class RecordError extends Error {}

export interface ReadContext {
  file: string;
  /** Source name given to records (the build config's name, --source, or the file stem). */
  source: string;
  /** When false, a record's own string `source` field wins over `source`. */
  sourceIsExplicit: boolean;
  /** Subject guessed from the file name (CMMLU dev_anatomy.csv -> anatomy). */
  subject?: string;
  /** Plain text: documents are packed from lines up to this many characters. */
  textMaxChars: number;
  /** Knowledge-graph triples: render per-entity passages, QA pairs or both. */
  kgOutput: 'text' | 'qa' | 'both';
}

export type ReadItem = { line: number; tagged: Tagged } | { line: number; reject: string; raw: string };

export const FORMAT_NAMES = [
  'sharegpt',
  'messages',
  'alpaca',
  'qa',
  'preference',
  'mcq',
  'ner',
  'cmeee',
  'ccks',
  'document',
  'kg',
  'text',
] as const;
export type FormatName = (typeof FORMAT_NAMES)[number];

export type Obj = Record<string, unknown>;

export interface Format {
  name: FormatName;
  description: string;
  /** Whether a parsed row looks like this format; auto-detection asks the formats in order. */
  matches?(obj: Obj): boolean;
  read(rows: AsyncIterable<RawRow>, ctx: ReadContext): AsyncGenerator<ReadItem>;
}

export { isObj };

/** A format whose every row becomes one record; conversion errors become rejects. */
export function rowFormat(
  name: FormatName,
  description: string,
  matches: (obj: Obj) => boolean,
  convert: (obj: Obj, ctx: ReadContext, line: number) => Tagged,
): Format {
  return {
    name,
    description,
    matches,
    async *read(rows, ctx) {
      for await (const row of rows) {
        if (isRowError(row)) {
          yield { line: row.line, reject: row.error, raw: row.raw };
          continue;
        }
        if (!isObj(row.value)) {
          yield { line: row.line, reject: `expected a JSON object, got ${describe(row.value)}`, raw: row.raw };
          continue;
        }
        try {
          yield { line: row.line, tagged: convert(row.value, ctx, row.line) };
        } catch (err) {
          if (!(err instanceof RecordError)) throw err;
          yield { line: row.line, reject: err.message, raw: row.raw };
        }
      }
    },
  };
}

/** The key of `obj` among `names` (exact first, then ignoring case), or undefined. */
export function findKey(obj: Obj, names: readonly string[]): string | undefined {
  for (const n of names) if (n in obj) return n;
  const lower = new Map(Object.keys(obj).map((k) => [k.toLowerCase(), k]));
  for (const n of names) {
    const k = lower.get(n.toLowerCase());
    if (k !== undefined) return k;
  }
  return undefined;
}

export const hasAny = (obj: Obj, names: readonly string[]) => findKey(obj, names) !== undefined;

/** Tracks which keys a converter consumed so the rest can go to `meta`. */
export class Fields {
  private used = new Set<string>(['id', 'source']);
  constructor(readonly obj: Obj) {}

  key(names: readonly string[]): string | undefined {
    const k = findKey(this.obj, names);
    if (k !== undefined) this.used.add(k);
    return k;
  }

  get(names: readonly string[]): unknown {
    const k = this.key(names);
    return k === undefined ? undefined : this.obj[k];
  }

  /** A string field; a missing or non-string value is a RecordError naming the field. */
  text(names: readonly string[]): string {
    const k = this.key(names);
    if (k === undefined) throw new RecordError(`missing field ${names.join('|')}`);
    return asText(this.obj[k], k);
  }

  optionalText(names: readonly string[]): string | undefined {
    const k = this.key(names);
    const v = k === undefined ? undefined : this.obj[k];
    return v === undefined || v === null || v === '' ? undefined : asText(v, k!);
  }

  /** Unconsumed keys (the upstream `source` too, as `origin`, when it was overridden). */
  meta(ctx: ReadContext): Meta | undefined {
    // the project's own records carry `meta` already: re-importing them keeps it flat
    const own = this.obj.meta;
    const meta: Meta = isObj(own) ? { ...own } : {};
    for (const [k, v] of Object.entries(this.obj)) if (!this.used.has(k) && v !== undefined && !(k === 'meta' && isObj(v))) meta[k] = v;
    const up = this.obj.source;
    if (ctx.sourceIsExplicit && up !== undefined && up !== ctx.source) meta.origin = up;
    return Object.keys(meta).length ? meta : undefined;
  }

  id(ctx: ReadContext, line: number): string {
    const v = this.obj.id;
    if (typeof v === 'string' && v.trim()) return v;
    if (typeof v === 'number') return String(v);
    return `${ctx.source}-${line}`;
  }

  source(ctx: ReadContext): string {
    const up = this.obj.source;
    return !ctx.sourceIsExplicit && typeof up === 'string' && up.trim() ? up : ctx.source;
  }

  /** id, source and meta, the header every record carries; call it after reading the other fields. */
  header(ctx: ReadContext, line: number): { id: string; source: string; meta?: Meta } {
    const meta = this.meta(ctx);
    return { id: this.id(ctx, line), source: this.source(ctx), ...(meta ? { meta } : {}) };
  }
}

/** Message content: a string, or OpenAI-style content parts whose text parts are joined. */
export function asText(v: unknown, field: string): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((p) => isObj(p) && typeof p.text === 'string')) return v.map((p) => (p as Obj).text).join('');
  throw new RecordError(`${field}: expected a string, got ${describe(v)}`);
}

const ROLE_ALIASES: Record<string, Role> = {
  system: 'system',
  user: 'user',
  human: 'user',
  patient: 'user',
  question: 'user',
  assistant: 'assistant',
  gpt: 'assistant',
  chatgpt: 'assistant',
  bot: 'assistant',
  model: 'assistant',
  doctor: 'assistant',
  bing: 'assistant',
  bard: 'assistant',
  answer: 'assistant',
};

export function toRole(v: unknown, field: string): Role {
  const r = typeof v === 'string' ? ROLE_ALIASES[v.toLowerCase()] : undefined;
  if (!r) throw new RecordError(`${field}: unsupported role ${describe(v)} (expected system/user/assistant or human/gpt)`);
  return r;
}

/** {role, content} (OpenAI) or {from, value} (ShareGPT) to a ChatMessage. */
export function toMessage(m: unknown, field: string): ChatMessage {
  if (!isObj(m)) throw new RecordError(`${field}: expected a message object, got ${describe(m)}`);
  const roleKey = findKey(m, ['role', 'from']);
  const contentKey = findKey(m, ['content', 'value', 'text']);
  if (!roleKey) throw new RecordError(`${field}: missing role (or from)`);
  if (!contentKey) throw new RecordError(`${field}: missing content (or value)`);
  return { role: toRole(m[roleKey], `${field}.${roleKey}`), content: asText(m[contentKey], `${field}.${contentKey}`) };
}

export function toMessages(list: unknown, field: string): ChatMessage[] {
  if (!Array.isArray(list)) throw new RecordError(`${field}: expected an array of messages, got ${describe(list)}`);
  return list.map((m, i) => toMessage(m, `${field}[${i}]`));
}

/** `history`: [[user, assistant], ...] pairs or a list of messages. */
export function historyMessages(history: unknown, field = 'history'): ChatMessage[] {
  if (history === undefined || history === null) return [];
  if (!Array.isArray(history)) throw new RecordError(`${field}: expected an array, got ${describe(history)}`);
  const out: ChatMessage[] = [];
  history.forEach((turn, i) => {
    if (Array.isArray(turn)) {
      if (turn.length !== 2) throw new RecordError(`${field}[${i}]: expected [user, assistant], got ${turn.length} items`);
      out.push({ role: 'user', content: asText(turn[0], `${field}[${i}][0]`) });
      out.push({ role: 'assistant', content: asText(turn[1], `${field}[${i}][1]`) });
    } else {
      out.push(toMessage(turn, `${field}[${i}]`));
    }
  });
  return out;
}

/** An optional system prompt followed by other messages. */
export function withSystem(system: string | undefined, messages: ChatMessage[]): ChatMessage[] {
  return system && system.trim() ? [{ role: 'system', content: system }, ...messages] : messages;
}
