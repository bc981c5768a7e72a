// A top-level JSON array (CMeEE ships its splits this way) read element by element, so a file
// larger than memory streams and each element keeps the line it starts on for rejects.
// Written here because JSON.parse needs the whole text and no streaming JSON parser is among
// the project's dependencies; splitting an array at depth 1 only needs bracket and string
// tracking, and each element is then handed to JSON.parse.
import type { RawRow } from './rows.js';

const WS = new Set([' ', '\t', '\n', '\r']);

export async function* readJsonArrayRows(chunks: AsyncIterable<string>): AsyncGenerator<RawRow> {
  let line = 1;
  let state = 'before' as 'before' | 'between' | 'element' | 'after';
  let depth = 0; // bracket depth inside the current element
  let inString = false;
  let escaped = false;
  let elemLine = 0;
  let parts: string[] = []; // the current element's text across chunks
  let elemStart = 0; // where the element starts in the current chunk

  const finish = (text: string): RawRow => {
    try {
      return { line: elemLine, value: JSON.parse(text), raw: text };
    } catch (err) {
      return { line: elemLine, error: `malformed JSON element: ${(err as Error).message}`, raw: text };
    }
  };

  for await (const chunk of chunks) {
    elemStart = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (state === 'element') {
        if (inString) {
          if (escaped) escaped = false;
          else if (c === '\\') escaped = true;
          else if (c === '"') inString = false;
          else if (c === '\n') line++;
          continue;
        }
        if (c === '"') inString = true;
        else if (c === '{' || c === '[') depth++;
        else if (c === '}' || c === ']') {
          if (depth === 0) {
            // the closing bracket of the array ends a scalar element
            parts.push(chunk.slice(elemStart, i));
            yield finish(parts.join('').trim());
            parts = [];
            state = 'after';
            continue;
          }
          depth--;
        } else if (c === ',' && depth === 0) {
          parts.push(chunk.slice(elemStart, i));
          yield finish(parts.join('').trim());
          parts = [];
          state = 'between';
        } else if (c === '\n') line++;
        continue;
      }
      if (c === '\n') line++;
      if (WS.has(c)) continue;
      if (state === 'before') {
        if (c !== '[') {
          yield { line, error: `expected a JSON array starting with "[", found ${JSON.stringify(c)}`, raw: chunk.slice(i, i + 200) };
          return;
        }
        state = 'between';
      } else if (state === 'between') {
        if (c === ']') {
          state = 'after';
          continue;
        }
        if (c === ',') continue; // tolerate an empty slot or trailing comma; JSON.parse judges elements
        state = 'element';
        elemLine = line;
        elemStart = i;
        depth = 0;
        i--; // rescan this character as part of the element
      } else {
        yield { line, error: 'unexpected text after the closing "]" of the top-level array', raw: chunk.slice(i, i + 200) };
        return;
      }
    }
    if (state === 'element') parts.push(chunk.slice(elemStart));
  }
  if (state === 'element') yield { line: elemLine, error: 'unterminated array element at end of file', raw: parts.join('').slice(0, 1000) };
  else if (state !== 'after') yield { line, error: 'the top-level array is not closed with "]"', raw: '' };
}
