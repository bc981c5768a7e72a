import type { ServerResponse } from 'node:http';

/**
 * Turns one generated row's tokens into text deltas for streaming. Each token re-decodes the
 * row (byte-level BPE tokens need not end on a character boundary) and only text that can no
 * longer change is released: a trailing U+FFFD (an incomplete UTF-8 sequence) and any tail
 * that could be the start of a stop string are held back, and nothing at or after a stop
 * string is ever sent, so the concatenated deltas equal the non-streamed reply exactly.
 */
export class TextDelta {
  private readonly ids: number[] = [];
  private sent = '';

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly stops: string[],
    private readonly prefix = '',
  ) {}

  /** The text safe to send after this token ('' when nothing new is certain yet). */
  push(id: number): string {
    this.ids.push(id);
    return this.advance(this.prefix + this.stable(this.decode(this.ids)));
  }

  /** Whatever of the final text (as the generator cut it) has not been sent yet. */
  finish(text: string): string {
    return this.advance(this.prefix + text);
  }

  private stable(text: string): string {
    let end = text.length;
    while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
    // a trailing space may still vanish: transformers' clean-up (Llama-3's tokenizer_config)
    // turns " ." into "." once the next token arrives
    while (end > 0 && text.charCodeAt(end - 1) === 0x20) end--;
    for (const s of this.stops) {
      const at = text.indexOf(s);
      if (at >= 0 && at < end) end = at;
    }
    // hold back the longest tail that a later token could complete into a stop string
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, end); k > hold; k--) {
        if (text.startsWith(s.slice(0, k), end - k)) {
          hold = k;
          break;
        }
      }
    }
    return text.slice(0, end - hold);
  }

  private advance(upTo: string): string {
    if (upTo.length <= this.sent.length || !upTo.startsWith(this.sent)) return '';
    const delta = upTo.slice(this.sent.length);
    this.sent = upTo;
    return delta;
  }
}

/** Server-sent events in OpenAI's framing: `data: JSON\n\n` per chunk, then `data: [DONE]`. */
export class SseWriter {
  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no', // tell proxies (nginx) not to buffer the stream
    });
  }

  get open(): boolean {
    return !this.res.destroyed && !this.res.writableEnded;
  }

  send(obj: unknown): void {
    if (this.open) this.res.write(`data: ${JSON.stringify(obj)}\n\n`);
  }

  end(): void {
    if (!this.open) return;
    this.res.write('data: [DONE]\n\n');
    this.res.end();
  }
}
