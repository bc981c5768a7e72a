/** One line of a text stream, numbered from 1, without its line terminator. */
export interface Line {
  line: number;
  text: string;
}

/** Splits a stream of text chunks into lines (LF or CRLF), holding at most one partial line. */
export async function* splitLines(chunks: AsyncIterable<string>): AsyncGenerator<Line> {
  let carry = '';
  let line = 0;
  for await (const chunk of chunks) {
    const parts = (carry + chunk).split('\n');
    carry = parts.pop()!;
    for (const p of parts) yield { line: ++line, text: p.endsWith('\r') ? p.slice(0, -1) : p };
  }
  if (carry) yield { line: ++line, text: carry.endsWith('\r') ? carry.slice(0, -1) : carry };
}
