import fs from 'node:fs';
import path from 'node:path';

export class InputError extends Error {}

/**
 * Streams the lines of a file decoded as strict UTF-8. Stage inputs are already normalised
 * by `chimed data build`, so anything else is an error naming the file and byte offset
 * rather than text silently full of U+FFFD.
 */
export async function* utf8Lines(file: string): AsyncGenerator<{ line: string; lineNo: number }> {
  const dec = new TextDecoder('utf-8', { fatal: true });
  let carry = '', lineNo = 0, bytes = 0;
  const stream = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let text: string;
    try {
      text = dec.decode(chunk, { stream: true });
    } catch {
      stream.destroy();
      throw new InputError(`${file}: not valid UTF-8 (near byte ${bytes + firstInvalidUtf8(chunk)}); convert it with \`chimed data import\`, which detects GB18030/GBK`);
    }
    bytes += chunk.length;
    const parts = (carry + text).split('\n');
    carry = parts.pop()!;
    for (const p of parts) yield { line: p.replace(/\r$/, ''), lineNo: ++lineNo };
  }
  if (carry) yield { line: carry.replace(/\r$/, ''), lineNo: ++lineNo };
}

function firstInvalidUtf8(b: Buffer): number {
  for (let i = 1; i <= b.length; i++) {
    try { new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(0, i), { stream: true }); } catch { return i - 1; }
  }
  return b.length;
}

/**
 * Documents for pre-training: `.jsonl` records with `text` (or prompt/response, or the turns
 * of `messages`, joined by newlines), and plain text files split into paragraphs at blank lines.
 */
export async function* readDocuments(files: string[]): AsyncGenerator<string> {
  for (const file of files) {
    if (!fs.existsSync(file)) throw new InputError(`${file}: no such file`);
    if (path.extname(file) === '.jsonl') {
      for await (const { line, lineNo } of utf8Lines(file)) {
        if (!line.trim()) continue;
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(line);
        } catch (e) {
          throw new InputError(`${file}:${lineNo}: invalid JSON: ${(e as Error).message}`);
        }
        const text = typeof rec.text === 'string' ? rec.text
          : [rec.prompt, rec.response].every((x) => typeof x === 'string') ? `${rec.prompt}\n${rec.response}`
          : Array.isArray(rec.messages) ? rec.messages.map((m) => String((m as { content?: unknown })?.content ?? '')).join('\n') : null;
        if (text === null) throw new InputError(`${file}:${lineNo}: expected a "text" field (or "prompt" and "response", or "messages")`);
        if (text.trim()) yield text;
      }
    } else {
      let para: string[] = [];
      for await (const { line } of utf8Lines(file)) {
        if (line.trim()) { para.push(line); continue; }
        if (para.length) yield para.join('\n');
        para = [];
      }
      if (para.length) yield para.join('\n');
    }
  }
}
