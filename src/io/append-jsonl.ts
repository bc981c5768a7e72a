// Append-only JSONL files that lose nothing a caller was told is saved: every append writes
// whole lines completely and fsyncs them before it resolves; a failed append (a full disk,
// an I/O error) cuts the file back to its last complete line and rejects saying why; a file
// deleted while open is recreated from the open descriptor, one replaced or shrunk by
// another program stops the writer. On open, an incomplete last line left by a crash is
// moved to a side file instead of being appended onto.
import { constants } from 'node:fs';
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { syncDir, writeAll, type WriteFn } from './atomic.js';

/** Why an append did not happen; `status` is the HTTP status a server answers with. */
export class AppendError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

export interface AppendOptions {
  /** Told about repairs that lost nothing (a deleted file recreated). */
  warn?: (message: string) => void;
  /** The write(2) call (tests inject short writes and ENOSPC). */
  write?: WriteFn;
}

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** Where an incomplete last line of FILE is kept. */
export const partialFile = (file: string) => `${file}.partial`;

/**
 * Moves an incomplete last line of `file` (a write cut short by a crash or a full disk) to
 * FILE.partial, appended there with a newline, then cuts it from `file`. Returns the bytes
 * moved (0 when the file ends with a complete line or does not exist).
 */
export async function moveIncompleteLastLine(file: string): Promise<number> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r+');
  } catch (e) {
    if (errno(e) === 'ENOENT') return 0;
    throw e;
  }
  try {
    const size = (await fh.stat()).size;
    let end = size; // the length of the complete part
    const buf = Buffer.alloc(1 << 16);
    while (end > 0) {
      const from = Math.max(0, end - buf.length);
      const { bytesRead } = await fh.read(buf, 0, end - from, from);
      const nl = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
      if (nl >= 0) {
        end = from + nl + 1;
        break;
      }
      end = from;
    }
    if (end === size) return 0;
    const tail = Buffer.alloc(size - end);
    await fh.read(tail, 0, tail.length, end);
    const side = await open(partialFile(file), 'a');
    try {
      await writeAll(side, Buffer.concat([tail, Buffer.from('\n')]));
      await side.sync();
    } finally {
      await side.close();
    }
    await syncDir(path.dirname(path.resolve(file)));
    await fh.truncate(end);
    await fh.sync();
    return tail.length;
  } finally {
    await fh.close();
  }
}

/**
 * A JSONL file that only grows: appends are serialised (concurrent saves never interleave),
 * each writes whole lines and fsyncs before it resolves, so a record reported saved
 * survives a crash or power loss, and a failed one leaves the file as it was.
 */
export class AppendOnlyJsonl {
  private tail: Promise<void> = Promise.resolve();
  /** Set when appending must not go on (a failure that could not be undone, a replaced file). */
  private stopped?: AppendError;

  private constructor(
    readonly file: string,
    private fh: FileHandle,
    private id: { dev: number; ino: number },
    private readonly o: AppendOptions,
  ) {}

  /** Opens (creating) `file` for appending; its last line must be complete (see moveIncompleteLastLine). */
  static async open(file: string, o: AppendOptions = {}): Promise<AppendOnlyJsonl> {
    await mkdir(path.dirname(path.resolve(file)), { recursive: true });
    // a+: the descriptor also reads, to check the last byte and to recreate a deleted file
    const fh = await open(file, 'a+');
    const st = await fh.stat();
    return new AppendOnlyJsonl(file, fh, { dev: st.dev, ino: st.ino }, o);
  }

  append(records: unknown[]): Promise<void> {
    const bytes = Buffer.from(records.map((r) => JSON.stringify(r) + '\n').join(''), 'utf8');
    const next = this.tail.then(() => this.write(bytes));
    this.tail = next.catch(() => undefined); // one failed append must not block the next
    return next;
  }

  private async write(bytes: Buffer): Promise<void> {
    if (this.stopped) throw this.stopped;
    if (!bytes.length) return;
    await this.checkSameFile();
    const base = (await this.fh.stat()).size;
    if (base > 0) {
      const last = Buffer.alloc(1);
      await this.fh.read(last, 0, 1, base - 1);
      if (last[0] !== 0x0a)
        throw new AppendError(
          `${this.file} ends with an incomplete line written by another program; not appending onto it`,
          500,
          'incomplete_line',
        );
    }
    try {
      await writeAll(this.fh, bytes, this.o.write);
      await this.fh.sync();
    } catch (e) {
      const why = (e as Error).message;
      try {
        await this.fh.truncate(base);
        await this.fh.sync();
      } catch (undo) {
        throw this.stop(
          `${this.file}: an append failed (${why}) and the partial line could not be removed (${(undo as Error).message}); ` +
            `nothing more is written. Restart the server: it moves the incomplete line to ${partialFile(this.file)}`,
          'append_stopped',
        );
      }
      if (NO_SPACE.has(errno(e) ?? '')) {
        throw new AppendError(
          `no space left on the device holding ${this.file}: nothing was saved and the file is unchanged; free some space and save again`,
          507,
          'disk_full',
        );
      }
      throw new AppendError(`cannot write ${this.file}: ${why}; nothing was saved and the file is unchanged`, 500, 'write_failed');
    }
  }

  /**
   * The path must still name the file this writer opened: deleted, it is recreated with the
   * content the open descriptor still holds; replaced or shrunk, appends stop loudly rather
   * than write where nobody expects.
   */
  private async checkSameFile(): Promise<void> {
    let st;
    try {
      st = await stat(this.file);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw new AppendError(`cannot check ${this.file}: ${(e as Error).message}`, 500, 'write_failed');
      return this.recreate();
    }
    if (st.dev !== this.id.dev || st.ino !== this.id.ino) {
      throw this.stop(
        `${this.file} was replaced by another file while the server was running; nothing more is written to it. Restart the server to append to the new file`,
        'file_replaced',
      );
    }
  }

  private stop(message: string, code: string): AppendError {
    this.stopped = new AppendError(message, 500, code);
    return this.stopped;
  }

  private async recreate(): Promise<void> {
    const size = (await this.fh.stat()).size;
    let fresh: FileHandle | undefined;
    try {
      await mkdir(path.dirname(path.resolve(this.file)), { recursive: true });
      // exclusive (never over a file someone just made), and appending like the original
      fresh = await open(this.file, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | constants.O_APPEND);
      const buf = Buffer.alloc(1 << 16);
      for (let at = 0; at < size;) {
        const { bytesRead } = await this.fh.read(buf, 0, Math.min(buf.length, size - at), at);
        if (bytesRead === 0) throw new Error(`the deleted file's content ended at byte ${at} of ${size}`);
        await writeAll(fresh, buf.subarray(0, bytesRead), this.o.write);
        at += bytesRead;
      }
      await fresh.sync();
      await syncDir(path.dirname(path.resolve(this.file)));
    } catch (e) {
      await fresh?.close();
      throw new AppendError(
        `${this.file} was deleted while the server was running and cannot be recreated: ${(e as Error).message}; nothing was saved`,
        500,
        'file_deleted',
      );
    }
    const st = await fresh.stat();
    await this.fh.close();
    this.fh = fresh;
    this.id = { dev: st.dev, ino: st.ino };
    this.o.warn?.(`${this.file} was deleted while the server was running; recreated it with the ${size} bytes saved before`);
  }

  async close(): Promise<void> {
    await this.tail;
    await this.fh.close();
  }
}
