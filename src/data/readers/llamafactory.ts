// LLaMA-Factory's dataset_info.json (hiyouga/LLaMA-Factory data/README.md and
// src/llamafactory/data/{parser,converter}.py, read at commit ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30).
// Each named entry points at a local file in the alpaca or sharegpt layout; `columns` names
// its fields and, for sharegpt, `tags` names the role and content keys and the role values.
// As in LLaMA-Factory, a `columns` (or `tags`) object replaces the defaults wholesale: the
// names it leaves out are unset, not defaulted. Rows become the project's records the way
// LLaMA-Factory's converters read them (alpaca: "instruction\ninput" is the user turn).
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { DataError } from '../errors.js';
import type { ChatMessage, RecordKind, Tagged } from '../records.js';
import { describe, isObj } from '../records.js';
import { asText, Fields, historyMessages, RecordError, rowFormat, withSystem, type Format, type Obj, type ReadContext } from './format.js';

export const DATASET_INFO_FILE = 'dataset_info.json';

/** The documented fields of an entry (data/README.md). */
export const ENTRY_FIELDS = [
  'hf_hub_url',
  'ms_hub_url',
  'om_hub_url',
  'script_url',
  'cloud_file_name',
  'file_name',
  'formatting',
  'ranking',
  'subset',
  'split',
  'folder',
  'num_samples',
  'columns',
  'tags',
] as const;
export const COLUMN_NAMES = [
  'prompt',
  'query',
  'response',
  'history',
  'messages',
  'system',
  'tools',
  'images',
  'videos',
  'audios',
  'chosen',
  'rejected',
  'kto_tag',
] as const;
export const TAG_NAMES = ['role_tag', 'content_tag', 'user_tag', 'assistant_tag', 'observation_tag', 'function_tag', 'system_tag'] as const;

export type ColumnName = (typeof COLUMN_NAMES)[number];
export type TagName = (typeof TAG_NAMES)[number];
export type Formatting = 'alpaca' | 'sharegpt';

/** LLaMA-Factory's defaults when an entry gives no `columns` / `tags` object. */
const DEFAULT_COLUMNS: Partial<Record<ColumnName, string>> = {
  prompt: 'instruction',
  query: 'input',
  response: 'output',
  messages: 'conversations',
};
const DEFAULT_TAGS: Record<TagName, string> = {
  role_tag: 'from',
  content_tag: 'value',
  user_tag: 'human',
  assistant_tag: 'gpt',
  observation_tag: 'observation',
  function_tag: 'function_call',
  system_tag: 'system',
};

/** An entry as written (the fields the exporter sets; the reader accepts every documented one). */
export interface DatasetInfoEntry {
  file_name: string;
  formatting?: Formatting;
  ranking?: boolean;
  columns?: Partial<Record<ColumnName, string>>;
  tags?: Partial<Record<TagName, string>>;
}

/** An entry resolved for reading: its files and the column / tag names in force. */
export interface DatasetEntry {
  name: string;
  /** The dataset_info.json it comes from (for messages). */
  info: string;
  files: string[];
  formatting: Formatting;
  ranking: boolean;
  columns: Partial<Record<ColumnName, string>>;
  tags: Partial<Record<TagName, string>>;
}

const REMOTE = ['hf_hub_url', 'ms_hub_url', 'om_hub_url', 'script_url', 'cloud_file_name'] as const;
const UNSUPPORTED_COLUMNS: Partial<Record<ColumnName, string>> = {
  images: 'multimodal data',
  videos: 'multimodal data',
  audios: 'multimodal data',
  kto_tag: 'KTO data',
};
// file types LLaMA-Factory loads that the importer reads (json may be an array or JSON Lines)
const DATA_EXTENSIONS = new Set(['.json', '.jsonl', '.csv']);

/** Reads dataset_info.json; `only` picks entries by name (default: all). Errors name the file, entry and field. */
export async function readDatasetInfo(file: string, only?: string[]): Promise<DatasetEntry[]> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new DataError(
      `${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid JSON: ${(err as Error).message}`}`,
    );
  }
  if (!isObj(raw)) throw new DataError(`${file}: expected an object of dataset name -> description, got ${describe(raw)}`);
  const names = only ?? Object.keys(raw);
  if (!names.length) throw new DataError(`${file}: no datasets`);
  const missing = names.filter((n) => !(n in raw));
  if (missing.length)
    throw new DataError(
      `${file}: no dataset named ${missing.map((n) => `"${n}"`).join(', ')} (it has ${Object.keys(raw).join(', ') || 'none'})`,
    );
  return Promise.all(names.map((n) => resolveEntry(file, n, raw[n])));
}

async function resolveEntry(info: string, name: string, e: unknown): Promise<DatasetEntry> {
  const fail = (field: string, msg: string): never => {
    throw new DataError(`${info}: dataset "${name}": ${field ? `${field}: ` : ''}${msg}`);
  };
  if (!isObj(e)) fail('', `expected an object, got ${describe(e)}`);
  const entry = e as Obj;
  for (const k of Object.keys(entry))
    if (!(ENTRY_FIELDS as readonly string[]).includes(k)) fail(k, `unknown field (LLaMA-Factory's fields: ${ENTRY_FIELDS.join(', ')})`);
  const remote = REMOTE.find((k) => k in entry);
  if (remote) fail(remote, 'a hub, script or cloud dataset; chimed reads local files only: download it and describe it with file_name');
  if (typeof entry.file_name !== 'string' || !entry.file_name)
    fail('file_name', `expected a file or folder name, got ${describe(entry.file_name)}`);
  for (const k of ['subset', 'folder', 'num_samples'] as const)
    if (entry[k] !== undefined && entry[k] !== null) fail(k, 'not supported for local files (chimed reads every record of file_name)');
  if (entry.split !== undefined && entry.split !== 'train')
    fail('split', `local files have only the "train" split, got ${describe(entry.split)}`);
  const formatting = entry.formatting ?? 'alpaca';
  if (formatting !== 'alpaca' && formatting !== 'sharegpt') fail('formatting', `expected alpaca or sharegpt, got ${describe(formatting)}`);
  const ranking = entry.ranking ?? false;
  if (typeof ranking !== 'boolean') fail('ranking', `expected true or false, got ${describe(ranking)}`);

  const names = <K extends string>(
    field: 'columns' | 'tags',
    allowed: readonly K[],
    defaults: Partial<Record<K, string>>,
  ): Partial<Record<K, string>> => {
    const v = entry[field];
    if (v === undefined) return { ...defaults };
    if (!isObj(v)) return fail(field, `expected an object, got ${describe(v)}`);
    for (const [k, x] of Object.entries(v)) {
      if (!(allowed as readonly string[]).includes(k)) fail(`${field}.${k}`, `unknown name (LLaMA-Factory's: ${allowed.join(', ')})`);
      if (typeof x !== 'string' || !x) fail(`${field}.${k}`, `expected a column or tag name, got ${describe(x)}`);
    }
    return v as Partial<Record<K, string>>;
  };
  const columns = names('columns', COLUMN_NAMES, DEFAULT_COLUMNS);
  const tags = names('tags', TAG_NAMES, DEFAULT_TAGS);
  for (const [c, what] of Object.entries(UNSUPPORTED_COLUMNS))
    if (columns[c as ColumnName]) fail(`columns.${c}`, `${what} is not supported`);
  const need = (field: string, ok: unknown, why: string) => {
    if (!ok) fail(field, `not given; ${why}`);
  };
  if (ranking)
    for (const c of ['chosen', 'rejected'] as const)
      need(`columns.${c}`, columns[c], 'a ranking dataset needs chosen and rejected columns');
  if (formatting === 'alpaca')
    need('columns.prompt', columns.prompt ?? columns.query, 'an alpaca dataset needs the prompt (instruction) column');
  else {
    need('columns.messages', columns.messages, 'a sharegpt dataset needs the messages column');
    for (const t of ['role_tag', 'content_tag', 'user_tag', 'assistant_tag'] as const)
      need(`tags.${t}`, tags[t], 'LLaMA-Factory leaves the tags a `tags` object omits unset');
  }
  return {
    name,
    info,
    files: await dataFiles(info, name, entry.file_name as string),
    formatting: formatting as Formatting,
    ranking: ranking as boolean,
    columns,
    tags,
  };
}

/** file_name relative to the dataset_info.json folder: a file, or a folder of data files. */
async function dataFiles(info: string, name: string, fileName: string): Promise<string[]> {
  const p = path.resolve(path.dirname(info), fileName);
  const st = await stat(p).catch(() => undefined);
  const fail = (msg: string): never => {
    throw new DataError(`${info}: dataset "${name}": file_name: ${msg}`);
  };
  if (!st) fail(`${p}: no such file or folder`);
  if (st!.isFile()) {
    if (!DATA_EXTENSIONS.has(path.extname(p).toLowerCase()))
      fail(`${p}: chimed reads json, jsonl and csv files (convert parquet / arrow first)`);
    return [p];
  }
  const files = (await readdir(p))
    .filter((f) => DATA_EXTENSIONS.has(path.extname(f).toLowerCase()))
    .sort()
    .map((f) => path.join(p, f));
  if (!files.length) fail(`${p}: the folder holds no json, jsonl or csv files`);
  return files;
}

/** The kind of record an entry yields. */
export function entryKind(e: DatasetEntry): RecordKind {
  if (e.ranking) return 'preference';
  return e.formatting === 'alpaca' && !e.columns.response ? 'document' : 'conversation';
}

/** The reader of an entry's files. */
export function entryFormat(e: DatasetEntry): Format {
  const convert = e.formatting === 'alpaca' ? alpacaRow(e) : sharegptRow(e);
  return rowFormat(
    e.formatting,
    `LLaMA-Factory ${e.formatting}${e.ranking ? ' ranking' : ''} dataset "${e.name}" (${e.info})`,
    () => true,
    convert,
  );
}

type Convert = (obj: Obj, ctx: ReadContext, line: number) => Tagged;

/** Alpaca rows: "prompt\nquery" is the user turn after the history; response, chosen/rejected or (pre-training) nothing. */
function alpacaRow(e: DatasetEntry): Convert {
  const c = e.columns;
  const kind = entryKind(e);
  return (obj, ctx, line) => {
    const f = new Fields(obj);
    const text = (col?: string) => (col ? f.optionalText([col]) : undefined);
    const user = [text(c.prompt), text(c.query)].filter((s) => s !== undefined).join('\n');
    if (!user) throw new RecordError(`${[c.prompt, c.query].filter(Boolean).join(' / ')}: missing or empty`);
    if (kind === 'document') {
      const history = c.history ? f.get([c.history]) : undefined;
      if (Array.isArray(history) && history.length)
        throw new RecordError(`${c.history}: a pre-training dataset (no response column) has no history`);
      return { kind, record: { ...f.header(ctx, line), text: user } };
    }
    const history = c.history ? historyMessages(f.get([c.history]), c.history) : [];
    const prompt = withSystem(text(c.system), [...history, { role: 'user', content: user }]);
    if (kind === 'preference') {
      const chosen = asText(f.get([c.chosen!]), c.chosen!),
        rejected = asText(f.get([c.rejected!]), c.rejected!);
      return { kind, record: { ...f.header(ctx, line), prompt, chosen, rejected } };
    }
    // as LLaMA-Factory: a response that is not a string leaves a prompt without an answer
    const response = f.get([c.response!]);
    const messages: ChatMessage[] = typeof response === 'string' ? [...prompt, { role: 'assistant', content: response }] : prompt;
    return { kind: 'conversation', record: { ...f.header(ctx, line), messages } };
  };
}

/**
 * ShareGPT rows: a first message with the system tag is the system prompt (else the system
 * column); then user and assistant turns alternate, as LLaMA-Factory checks. Ranking rows end
 * on a user turn and carry chosen / rejected messages.
 */
function sharegptRow(e: DatasetEntry): Convert {
  const c = e.columns;
  const t = e.tags as Record<TagName, string | undefined>;
  const role = t.role_tag!,
    content = t.content_tag!;
  const turn = (m: unknown, field: string, want: 'user' | 'assistant'): ChatMessage => {
    if (!isObj(m)) throw new RecordError(`${field}: expected a message object, got ${describe(m)}`);
    const tag = want === 'user' ? t.user_tag : t.assistant_tag;
    const got = m[role];
    if (got !== tag) {
      const tool = got !== undefined && (got === t.observation_tag || got === t.function_tag);
      throw new RecordError(
        tool
          ? `${field}.${role}: tool turns (${JSON.stringify(got)}) are not supported`
          : `${field}.${role}: expected ${JSON.stringify(tag)} (turns alternate ${t.user_tag} / ${t.assistant_tag}), got ${describe(got)}`,
      );
    }
    return { role: want, content: asText(m[content], `${field}.${content}`) };
  };
  return (obj, ctx, line) => {
    const f = new Fields(obj);
    const list = f.get([c.messages!]);
    if (!Array.isArray(list)) throw new RecordError(`${c.messages}: expected a list of messages, got ${describe(list)}`);
    const head = list[0];
    const hasSystem = !!t.system_tag && isObj(head) && head[role] === t.system_tag;
    const system = hasSystem
      ? asText((head as Obj)[content], `${c.messages}[0].${content}`)
      : c.system
        ? f.optionalText([c.system])
        : undefined;
    const offset = hasSystem ? 1 : 0;
    const turns = list.slice(offset).map((m, i) => turn(m, `${c.messages}[${i + offset}]`, i % 2 === 0 ? 'user' : 'assistant'));
    if (turns.length % 2 === (e.ranking ? 0 : 1)) {
      throw new RecordError(
        `${c.messages}: ${turns.length} turns; ${e.ranking ? 'a ranking example ends on a user turn' : 'an example is user / assistant pairs'} (LLaMA-Factory skips it)`,
      );
    }
    const messages = withSystem(system, turns);
    if (!e.ranking) return { kind: 'conversation', record: { ...f.header(ctx, line), messages } };
    const chosen = turn(f.get([c.chosen!]), c.chosen!, 'assistant').content;
    const rejected = turn(f.get([c.rejected!]), c.rejected!, 'assistant').content;
    return { kind: 'preference', record: { ...f.header(ctx, line), prompt: messages, chosen, rejected } };
  };
}
