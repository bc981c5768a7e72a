import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { replaceDirAtomic, writeFileAtomic, writeJsonAtomic } from '../src/io/atomic.js';

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chimed-atomic-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('writeFileAtomic writes strings, bytes, chunk arrays and async chunk streams', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'a.txt');
    await writeFileAtomic(f, 'héllo');
    assert.equal(await readFile(f, 'utf8'), 'héllo');
    await writeFileAtomic(f, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...(await readFile(f))], [1, 2, 3]);
    await writeFileAtomic(f, [Buffer.from('ab'), new Uint8Array(0), Buffer.from('cd')]);
    assert.equal(await readFile(f, 'utf8'), 'abcd');
    async function* gen(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('x');
      yield Buffer.from('yz');
    }
    await writeFileAtomic(f, gen());
    assert.equal(await readFile(f, 'utf8'), 'xyz');
    assert.deepEqual(await readdir(dir), ['a.txt']);
  });
});

test('writeFileAtomic writes each chunk before asking for the next, so a generator may reuse its buffer', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'reuse.bin');
    function* gen(): Generator<Uint8Array> {
      const scratch = new Uint8Array(2);
      for (let i = 0; i < 3; i++) {
        scratch.fill(i + 1);
        yield scratch;
      }
    }
    await writeFileAtomic(f, gen());
    assert.deepEqual([...(await readFile(f))], [1, 1, 2, 2, 3, 3]);
  });
});

test('a failed writeFileAtomic keeps the previous content and leaves no temp file', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'keep.txt');
    await writeFile(f, 'old');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('partial new content');
      throw new Error('source broke');
    }
    await assert.rejects(writeFileAtomic(f, failing()), (err: Error) => {
      assert.match(err.message, /keep\.txt/);
      assert.match(err.message, /source broke/);
      return true;
    });
    assert.equal(await readFile(f, 'utf8'), 'old');
    assert.deepEqual(await readdir(dir), ['keep.txt']);

    const fresh = path.join(dir, 'fresh.txt');
    await assert.rejects(writeFileAtomic(fresh, failing()), /source broke/);
    assert.deepEqual(await readdir(dir), ['keep.txt']);
  });
});

test('writeFileAtomic into a missing directory fails naming the target', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'nope', 'x.txt');
    await assert.rejects(writeFileAtomic(f, 'x'), (err: Error) => err.message.includes(f));
    assert.deepEqual(await readdir(dir), []);
  });
});

test('writeJsonAtomic writes pretty JSON with a newline and rejects unserialisable values', async () => {
  await withTempDir(async (dir) => {
    const f = path.join(dir, 'state.json');
    await writeJsonAtomic(f, { step: 3, loss: [1.5] });
    const text = await readFile(f, 'utf8');
    assert.equal(text, '{\n  "step": 3,\n  "loss": [\n    1.5\n  ]\n}\n');
    await assert.rejects(writeJsonAtomic(f, undefined), /not JSON-serialisable/);
    assert.equal(await readFile(f, 'utf8'), text);
  });
});

test('replaceDirAtomic creates, then replaces a directory, removing the old one only at the end', async () => {
  await withTempDir(async (dir) => {
    const ck = path.join(dir, 'checkpoint-1');
    await replaceDirAtomic(ck, async (tmp) => {
      await writeFile(path.join(tmp, 'a.bin'), 'v1');
      await mkdir(path.join(tmp, 'sub'));
      await writeFile(path.join(tmp, 'sub', 'b.bin'), 'v1b');
    });
    assert.equal(await readFile(path.join(ck, 'sub', 'b.bin'), 'utf8'), 'v1b');

    await replaceDirAtomic(ck, async (tmp) => {
      // While the new copy is being built the old one is still complete in place.
      assert.equal(await readFile(path.join(ck, 'a.bin'), 'utf8'), 'v1');
      await writeFile(path.join(tmp, 'c.bin'), 'v2');
    });
    assert.deepEqual(await readdir(ck), ['c.bin']);
    assert.deepEqual(await readdir(dir), ['checkpoint-1']);
  });
});

test('a failed replaceDirAtomic keeps the previous directory and removes its temp dir', async () => {
  await withTempDir(async (dir) => {
    const ck = path.join(dir, 'final');
    await replaceDirAtomic(ck, async (tmp) => writeFile(path.join(tmp, 'model.bin'), 'good'));
    await assert.rejects(
      replaceDirAtomic(ck, async (tmp) => {
        await writeFile(path.join(tmp, 'model.bin'), 'half-writ');
        throw new Error('disk full');
      }),
      (err: Error) => err.message.includes(ck) && err.message.includes('disk full'),
    );
    assert.equal(await readFile(path.join(ck, 'model.bin'), 'utf8'), 'good');
    assert.deepEqual(await readdir(dir), ['final']);

    const fresh = path.join(dir, 'never');
    await assert.rejects(replaceDirAtomic(fresh, async () => Promise.reject(new Error('boom'))), /boom/);
    assert.deepEqual(await readdir(dir), ['final']);
  });
});
