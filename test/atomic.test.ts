import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanAtomicLeftovers, replaceDirAtomic, writeFileAtomic, writeJsonAtomic } from '../src/io/atomic.js';
import { CHECKSUM_FILE, verifyChecksums, writeChecksums } from '../src/io/checksums.js';

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
    await assert.rejects(
      replaceDirAtomic(fresh, async () => Promise.reject(new Error('boom'))),
      /boom/,
    );
    assert.deepEqual(await readdir(dir), ['final']);
  });
});

test('cleanAtomicLeftovers removes unfinished temp files and dirs, restores a version moved aside whose target is missing', async () => {
  await withTempDir(async (dir) => {
    await mkdir(path.join(dir, 'checkpoint-8.tmp-77-0123456789ab'));
    await writeFile(path.join(dir, 'checkpoint-8.tmp-77-0123456789ab/half.bin'), 'x');
    await writeFile(path.join(dir, 'done.json.tmp-77-0123456789ab'), '{"cut');
    await mkdir(path.join(dir, 'final.old-77-aaaaaaaaaaaa'));
    await writeFile(path.join(dir, 'final.old-77-aaaaaaaaaaaa/w'), 'old');
    await mkdir(path.join(dir, 'checkpoint-4'));
    await mkdir(path.join(dir, 'checkpoint-4.old-77-bbbbbbbbbbbb'));
    await writeFile(path.join(dir, 'notes.tmp-keep'), 'not ours');
    const done = await cleanAtomicLeftovers(dir);
    assert.equal(done.length, 4, done.join('\n'));
    assert.deepEqual((await readdir(dir)).sort(), ['checkpoint-4', 'final', 'notes.tmp-keep']);
    assert.equal(await readFile(path.join(dir, 'final/w'), 'utf8'), 'old');
    assert.deepEqual(await cleanAtomicLeftovers(dir), []);
    assert.deepEqual(await cleanAtomicLeftovers(path.join(dir, 'absent')), []);
  });
});

test('checksum manifests: written in sha256sum format; a changed, missing or unlisted-manifest file is named', async () => {
  await withTempDir(async (dir) => {
    await mkdir(path.join(dir, 'sub'));
    await writeFile(path.join(dir, 'a.bin'), 'alpha');
    await writeFile(path.join(dir, 'sub/b.json'), '{}');
    await writeChecksums(dir);
    const manifest = await readFile(path.join(dir, CHECKSUM_FILE), 'utf8');
    assert.match(manifest, /^8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8 {2}a\.bin\n[0-9a-f]{64} {2}sub\/b\.json\n$/);
    assert.deepEqual(await verifyChecksums(dir), []);
    await writeFile(path.join(dir, 'a.bin'), 'alphA');
    await rm(path.join(dir, 'sub/b.json'));
    const problems = await verifyChecksums(dir);
    assert.equal(problems.length, 2);
    assert.match(problems[0], /a\.bin: sha256 [0-9a-f]{64} does not match/);
    assert.match(problems[1], /sub\/b\.json: missing/);
    await writeFile(path.join(dir, CHECKSUM_FILE), 'garbage\n');
    assert.match((await verifyChecksums(dir))[0], /checksums\.sha256:1: not a "SHA256 {2}FILE" line/);
    await rm(path.join(dir, CHECKSUM_FILE));
    assert.match((await verifyChecksums(dir))[0], /checksums\.sha256: missing/);
  });
});
