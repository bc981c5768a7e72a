// Crash-safe writes: a reader (or a resumed run) sees either the old content or the complete
// new content, never a partial file or checkpoint. The npm `write-file-atomic` package covers
// single files only and takes no chunk streams; checkpoints also need whole directories
// swapped in, so both live here on top of node:fs.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, unlink, lstat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

/**
 * What writeFileAtomic accepts. Chunks are written in order, each one completely before the
 * next is requested, so a generator may reuse one scratch buffer for every chunk it yields.
 */
export type AtomicData = string | Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

// fs write calls are capped near 2 GiB; larger chunks are written in slices of this size.
const MAX_WRITE_BYTES = 1 << 30;

function tempSibling(target: string, kind: string): string {
  return `${target}.${kind}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** One write(2) call; tests inject short writes and ENOSPC through it. */
export type WriteFn = (fh: FileHandle, chunk: Uint8Array, offset: number, length: number) => Promise<{ bytesWritten: number }>;

const osWrite: WriteFn = (fh, chunk, offset, length) => fh.write(chunk, offset, length);

/**
 * Writes every byte of `chunk`, continuing after short writes; a write that accepts nothing
 * is an error (a full disk may answer 0 rather than ENOSPC).
 */
export async function writeAll(fh: FileHandle, chunk: Uint8Array, write: WriteFn = osWrite): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const len = Math.min(chunk.length - done, MAX_WRITE_BYTES);
    const { bytesWritten } = await write(fh, chunk, done, len);
    if (bytesWritten <= 0) throw Object.assign(new Error(`the write stopped after ${done} of ${chunk.length} bytes`), { code: 'ENOSPC' });
    done += bytesWritten;
  }
}

async function writeData(fh: FileHandle, data: AtomicData): Promise<void> {
  if (typeof data === 'string') return writeAll(fh, Buffer.from(data, 'utf8'));
  if (data instanceof Uint8Array) return writeAll(fh, data);
  for await (const chunk of data) {
    if (!(chunk instanceof Uint8Array)) throw new Error('data chunks must be Uint8Array');
    await writeAll(fh, chunk);
  }
}

/**
 * Makes a directory entry (a rename, a new file) durable. Some platforms (Windows) cannot
 * open or fsync a directory; there the rename is as durable as the OS makes it anyway.
 */
export async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    await fh?.close();
  }
}

function wrapError(what: string, target: string, err: unknown): Error {
  const msg = err instanceof Error ? err.message : String(err);
  return new Error(`${what} ${target}: ${msg}`, { cause: err });
}

/**
 * Writes `data` to `file` atomically: writes `file.tmp-<pid>-<rand>` in the same directory,
 * fsyncs it, renames it over `file` and fsyncs the directory. On any failure the temp file
 * is removed and `file` is left as it was.
 */
export async function writeFileAtomic(file: string, data: AtomicData): Promise<void> {
  const tmp = tempSibling(file, 'tmp');
  try {
    const fh = await open(tmp, 'wx');
    try {
      await writeData(fh, data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined); // may not exist if open() failed
    throw wrapError('cannot write', file, err);
  }
  await syncDir(path.dirname(file));
}

/** writeFileAtomic of pretty-printed JSON with a trailing newline. */
export async function writeJsonAtomic(file: string, obj: unknown): Promise<void> {
  const text = JSON.stringify(obj, null, 2);
  if (text === undefined) throw new Error(`cannot write ${file}: value is not JSON-serialisable`);
  await writeFileAtomic(file, text + '\n');
}

/** fsyncs every regular file under dir, and the directories themselves, bottom-up. */
async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      await syncTree(p);
    } else if (entry.isFile()) {
      const fh = await open(p, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  await syncDir(dir);
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Builds a directory with `build(tmpDir)` in a sibling temp directory, makes its files
 * durable, then renames it to `finalDir`. A previous `finalDir` is moved aside only once the
 * new one is complete, and deleted after the new one is in place. If anything fails the temp
 * directory is removed and a previous `finalDir` is restored.
 *
 * Node has no atomic directory exchange (renameat2 RENAME_EXCHANGE), so replacing an
 * existing directory takes two renames; a crash between them leaves `finalDir` absent with
 * the complete old copy at `finalDir.old-*` and the complete new one at `finalDir.tmp-*`.
 */
export async function replaceDirAtomic(finalDir: string, build: (tmpDir: string) => Promise<void>): Promise<void> {
  const tmpDir = tempSibling(finalDir, 'tmp');
  const oldDir = tempSibling(finalDir, 'old');
  let movedOld = false;
  try {
    await mkdir(tmpDir);
    await build(tmpDir);
    await syncTree(tmpDir);
    if (await exists(finalDir)) {
      await rename(finalDir, oldDir);
      movedOld = true;
    }
    await rename(tmpDir, finalDir);
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true });
    let where = '';
    if (movedOld) {
      where = await rename(oldDir, finalDir).then(
        () => '',
        () => ` (previous contents left at ${oldDir})`,
      );
    }
    throw wrapError('cannot build directory', finalDir + where, err);
  }
  await syncDir(path.dirname(finalDir));
  if (movedOld) await rm(oldDir, { recursive: true, force: true });
}

/** The temp siblings writeFileAtomic and replaceDirAtomic make: TARGET.tmp-PID-RAND, TARGET.old-PID-RAND. */
const LEFTOVER = /^(.+)\.(tmp|old)-\d+-[0-9a-f]{12}$/;

/**
 * Finishes what atomic writes killed mid-way (kill -9, power loss) left in `dir`: a temp file
 * or directory that never got its final name is removed; a previous version moved aside is
 * put back when its target is missing (the crash fell between replaceDirAtomic's two
 * renames), else removed. Only for a directory no other process is writing to right now.
 * Returns one line per entry it handled.
 */
export async function cleanAtomicLeftovers(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const done: string[] = [];
  const leftovers = names.map((n) => ({ n, m: LEFTOVER.exec(n) })).filter((e): e is { n: string; m: RegExpExecArray } => !!e.m);
  // previous versions first: one may be the only complete copy of its target
  for (const { n, m } of leftovers.filter((e) => e.m[2] === 'old')) {
    const p = path.join(dir, n),
      target = path.join(dir, m[1]);
    if (await exists(target)) {
      await rm(p, { recursive: true, force: true });
      done.push(`removed ${p}, the previous version of ${target} left by an interrupted write`);
    } else {
      await rename(p, target);
      done.push(`restored ${target} from ${p}: an interrupted write had moved it aside`);
    }
  }
  for (const { n } of leftovers.filter((e) => e.m[2] === 'tmp')) {
    const p = path.join(dir, n);
    await rm(p, { recursive: true, force: true });
    done.push(`removed ${p}, left unfinished by an interrupted write`);
  }
  if (done.length) await syncDir(dir);
  return done;
}
