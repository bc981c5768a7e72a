import type { ChatMessage } from '../tokenizer/chat-template.js';
import { InputError, utf8Lines } from './documents.js';

/**
 * A conversation from a stage dataset line: `{messages: [{role, content}]}` (what `chimed data
 * build` writes, and OpenAI-style files) or the normalised QA shape
 * `{prompt, response, history?: [[user, assistant], ...], system?}`.
 */
export function toMessages(rec: Record<string, unknown>, where: string): ChatMessage[] {
  if (Array.isArray(rec.messages)) {
    return rec.messages.map((m, i) => {
      const { role, content } = (m ?? {}) as Record<string, unknown>;
      if (role !== 'system' && role !== 'user' && role !== 'assistant') throw new InputError(`${where}: messages[${i}].role must be system, user or assistant`);
      if (typeof content !== 'string') throw new InputError(`${where}: messages[${i}].content must be a string`);
      return { role, content };
    });
  }
  if (typeof rec.prompt !== 'string' || typeof rec.response !== 'string') throw new InputError(`${where}: expected "messages", or "prompt" and "response" strings`);
  const msgs: ChatMessage[] = [];
  if (typeof rec.system === 'string' && rec.system) msgs.push({ role: 'system', content: rec.system });
  for (const [i, turn] of ((rec.history ?? []) as unknown[]).entries()) {
    if (!Array.isArray(turn) || turn.length !== 2 || !turn.every((x) => typeof x === 'string')) throw new InputError(`${where}: history[${i}] must be [user, assistant]`);
    msgs.push({ role: 'user', content: turn[0] }, { role: 'assistant', content: turn[1] });
  }
  msgs.push({ role: 'user', content: rec.prompt }, { role: 'assistant', content: rec.response });
  return msgs;
}

/** Reads a JSONL file of records, parsing each line; errors name the file and line. */
export async function readJsonl(file: string): Promise<{ rec: Record<string, unknown>; where: string }[]> {
  const out: { rec: Record<string, unknown>; where: string }[] = [];
  for await (const { line, lineNo } of utf8Lines(file)) {
    if (!line.trim()) continue;
    const where = `${file}:${lineNo}`;
    try {
      out.push({ rec: JSON.parse(line), where });
    } catch (e) {
      throw new InputError(`${where}: invalid JSON: ${(e as Error).message}`);
    }
  }
  return out;
}
