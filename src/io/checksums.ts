// A directory's sha256 manifest in `sha256sum` format (`HASH  path` per line, so
// `sha256sum -c checksums.sha256` checks it by hand too). Checkpoints carry one: a flipped
// byte, a truncated or deleted file is found before training resumes from it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './atomic.js';

export const CHECKSUM_FILE = 'checksums.sha256';

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Regular files under dir (relative, '/'-separated, sorted), the manifest itself excluded. */
async function filesUnder(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await filesUnder(dir, r)));
    else if (e.isFile() && r !== CHECKSUM_FILE) out.push(r);
  }
  return out.sort();
}

/** Writes DIR/checksums.sha256 over every file under dir. */
export async function writeChecksums(dir: string): Promise<void> {
  const lines: string[] = [];
  for (const f of await filesUnder(dir)) lines.push(`${await sha256File(path.join(dir, f))}  ${f}\n`);
  await writeFileAtomic(path.join(dir, CHECKSUM_FILE), lines.join(''));
}

/** What is wrong with dir against its manifest: one line per problem, naming the file; empty when it matches. */
export async function verifyChecksums(dir: string): Promise<string[]> {
  const manifest = path.join(dir, CHECKSUM_FILE);
  let text: string;
  try {
    text = await readFile(manifest, 'utf8');
  } catch (e) {
    return [
      `${manifest}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing (no checksums to check the files against)' : (e as Error).message}`,
    ];
  }
  const problems: string[] = [];
  const listed = new Set<string>();
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  for (const [i, line] of lines.entries()) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (!m || path.isAbsolute(m[2]) || m[2].split('/').includes('..')) {
      problems.push(`${manifest}:${i + 1}: not a "SHA256  FILE" line`);
      continue;
    }
    listed.add(m[2]);
    const file = path.join(dir, m[2]);
    let got: string;
    try {
      got = await sha256File(file);
    } catch (e) {
      problems.push(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (e as Error).message}`);
      continue;
    }
    if (got !== m[1])
      problems.push(`${file}: sha256 ${got} does not match ${m[1]} in ${CHECKSUM_FILE} (the file changed after it was written)`);
  }
  if (!listed.size && !problems.length) problems.push(`${manifest}: lists no files`);
  return problems;
}
