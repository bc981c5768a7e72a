import fs from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { once } from 'node:events';

const FLUSH_CHARS = 1 << 16;

/**
 * Writes one JSON value per line to a temp sibling and renames it over the target on close,
 * so a reader never sees a half-written dataset. Lines are batched and writes wait for the
 * stream to drain, keeping memory bounded however many records pass through.
 */
export class JsonlWriter {
  private stream: fs.WriteStream;
  private readonly tmp: string;
  private batch: string[] = [];
  private batchChars = 0;
  count = 0;

  constructor(readonly path: string) {
    this.tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    this.stream = fs.createWriteStream(this.tmp);
  }

  async write(value: unknown): Promise<void> {
    const line = JSON.stringify(value) + '\n';
    this.batch.push(line);
    this.batchChars += line.length;
    this.count++;
    if (this.batchChars >= FLUSH_CHARS) await this.flush();
  }

  private async flush(): Promise<void> {
    if (!this.batch.length) return;
    const text = this.batch.join('');
    this.batch = [];
    this.batchChars = 0;
    if (!this.stream.write(text)) await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    await this.flush();
    this.stream.end();
    await once(this.stream, 'finish');
    await rename(this.tmp, this.path);
  }

  /** Drops the partial output. */
  async abort(): Promise<void> {
    this.stream.destroy();
    await unlink(this.tmp).catch(() => undefined);
  }
}
