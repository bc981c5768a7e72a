// The files the stages, evaluation, serving and the pipeline read, in one place: strict UTF-8
// text, JSONL records (every error names file:line), and the typed shapes built from a record
// (conversation, prompt, preference pair, document text). Messages are read by the importer's
// message helpers, so a turn means the same here as in `chimed data import`.
import fs from 'node:fs';
import path from 'node:path';
import { DataError } from './errors.js';
import { historyMessages, RecordError, toMessages, withSystem, asText } from './readers/format.js';
import { jsonlRow, readJsonlRows } from './readers/jsonl.js';
import { splitLines, type Line } from './readers/lines.js';
import { isRowError, type RawRow } from './readers/rows.js';
import { describe, isObj, type ChatMessage } from './records.js';

/** A JSONL record and where it came from ("file:line"), for error messages. */
export interface SourcedRecord {
  rec: Record<string, unknown>;
  where: string;
  line: number;
}

/**
 * A file decoded as strict UTF-8, in chunks. Stage inputs are normalised by `chimed data
 * build`, so anything else is an error naming the file and byte offset rather than text
 * silently full of U+FFFD.
 */
export async function* utf8Chunks(file: string): AsyncGenerator<string> {
  if (!fs.existsSync(file)) throw new DataError(`${file}: no such file`);
  const dec = new TextDecoder('utf-8', { fatal: true });
  let bytes = 0;
  const stream = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    try {
      yield dec.decode(chunk, { stream: true });
    } catch {
      stream.destroy();
      throw new DataError(
        `${file}: not valid UTF-8 (near byte ${bytes + firstInvalidUtf8(chunk)}); convert it with \`chimed data import\`, which detects GB18030/GBK`,
      );
    }
    bytes += chunk.length;
  }
}

function firstInvalidUtf8(b: Buffer): number {
  for (let i = 1; i <= b.length; i++) {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(0, i), { stream: true });
    } catch {
      return i - 1;
    }
  }
  return b.length;
}

/** The lines of a strict UTF-8 file, numbered from 1. */
export function utf8Lines(file: string): AsyncGenerator<Line> {
  return splitLines(utf8Chunks(file));
}

function recordOf(row: RawRow, file: string): SourcedRecord {
  const where = `${file}:${row.line}`;
  if (isRowError(row)) throw new DataError(`${where}: ${row.error}`);
  if (!isObj(row.value)) throw new DataError(`${where}: expected a JSON object, got ${describe(row.value)}`);
  return { rec: row.value, where, line: row.line };
}

/** The records of a JSONL file, streamed. */
export async function* jsonlRecords(file: string): AsyncGenerator<SourcedRecord> {
  for await (const row of readJsonlRows(utf8Chunks(file))) yield recordOf(row, file);
}

export async function readJsonl(file: string): Promise<SourcedRecord[]> {
  const out: SourcedRecord[] = [];
  for await (const r of jsonlRecords(file)) out.push(r);
  return out;
}

/** The records of JSONL text already in memory (small files the program itself appends to). */
export function parseJsonl(text: string, file: string): SourcedRecord[] {
  return text.split('\n').flatMap((t, i) => {
    const row = jsonlRow(i + 1, t.endsWith('\r') ? t.slice(0, -1) : t);
    return row ? [recordOf(row, file)] : [];
  });
}

/** Runs a conversion with the importer's helpers; their errors get the record's location. */
function at<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RecordError) throw new DataError(`${where}: ${err.message}`);
    throw err;
  }
}

/**
 * The turns of a record: `{messages: [{role, content}]}` (what `chimed data build` writes,
 * OpenAI-style files) or the normalised QA shape `{prompt, response?, history?: [[user,
 * assistant], ...], system?}` (without a response it ends on the user turn).
 */
export function messagesOf(rec: Record<string, unknown>, where: string): ChatMessage[] {
  return at(where, () => {
    if (Array.isArray(rec.messages)) return toMessages(rec.messages, 'messages');
    if (typeof rec.prompt !== 'string') throw new RecordError('expected "messages", or "prompt" and "response" strings');
    const turns: ChatMessage[] = [...historyMessages(rec.history), { role: 'user', content: rec.prompt }];
    if (rec.response !== undefined && rec.response !== null) turns.push({ role: 'assistant', content: asText(rec.response, 'response') });
    return withSystem(typeof rec.system === 'string' ? rec.system : undefined, turns);
  });
}

/**
 * A prompt: the turns of a record ending with the user turn to answer. With `dropAnswer` a
 * final assistant turn (the reference answer of an SFT record) is left out; without, it is
 * an error.
 */
export function promptOf(rec: Record<string, unknown>, where: string, dropAnswer: boolean): ChatMessage[] {
  return promptAndAnswer(rec, where, dropAnswer).prompt;
}

/** A prompt as promptOf, and the final assistant turn it left out (with `dropAnswer`), if any. */
export function promptAndAnswer(
  rec: Record<string, unknown>,
  where: string,
  dropAnswer = true,
): { prompt: ChatMessage[]; answer?: string } {
  const msgs = messagesOf(rec, where);
  const answer = dropAnswer && msgs.at(-1)?.role === 'assistant' ? msgs.pop()!.content : undefined;
  if (msgs.at(-1)?.role !== 'user') throw new DataError(`${where}: the conversation must end with a user turn`);
  return { prompt: msgs, answer };
}

/**
 * A preference pair: `{prompt: [messages], chosen, rejected}` (what `chimed data build`
 * writes), `{messages (ending with a user turn), chosen, rejected}` or the normalised
 * `{prompt: string, chosen, rejected, history?, system?}`.
 */
export function preferenceOf(rec: Record<string, unknown>, where: string): { prompt: ChatMessage[]; chosen: string; rejected: string } {
  if (typeof rec.chosen !== 'string' || typeof rec.rejected !== 'string')
    throw new DataError(`${where}: expected "chosen" and "rejected" strings`);
  const prompt = Array.isArray(rec.prompt)
    ? at(where, () => toMessages(rec.prompt, 'prompt'))
    : messagesOf({ ...rec, response: undefined }, where);
  if (prompt.at(-1)?.role !== 'user') throw new DataError(`${where}: the prompt must end with a user turn`);
  return { prompt, chosen: rec.chosen, rejected: rec.rejected };
}

/** A record's own id, else its position in the file. */
export function recordId(rec: Record<string, unknown>, index: number): string {
  return typeof rec.id === 'string' || typeof rec.id === 'number' ? String(rec.id) : String(index);
}

/**
 * Documents for pre-training, tokenizer training and perplexity: `.jsonl` records with
 * `text` (or prompt/response, or the turns of `messages`, joined by newlines), and plain
 * text files split into paragraphs at blank lines.
 */
export async function* readDocuments(files: string[]): AsyncGenerator<string> {
  for (const file of files) {
    if (path.extname(file) === '.jsonl') {
      for await (const { rec, where } of jsonlRecords(file)) {
        const text =
          typeof rec.text === 'string'
            ? rec.text
            : [rec.prompt, rec.response].every((x) => typeof x === 'string')
              ? `${rec.prompt}\n${rec.response}`
              : Array.isArray(rec.messages)
                ? rec.messages.map((m) => String((m as { content?: unknown })?.content ?? '')).join('\n')
                : null;
        if (text === null) throw new DataError(`${where}: expected a "text" field (or "prompt" and "response", or "messages")`);
        if (text.trim()) yield text;
      }
    } else {
      let para: string[] = [];
      for await (const { text } of utf8Lines(file)) {
        if (text.trim()) {
          para.push(text);
          continue;
        }
        if (para.length) yield para.join('\n');
        para = [];
      }
      if (para.length) yield para.join('\n');
    }
  }
}
