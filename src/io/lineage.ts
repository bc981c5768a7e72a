// What a result in a run directory was made from: the resolved settings of the step that made
// it and the content hash of every file or folder it read. A re-run compares the record with
// today's lineage and re-makes exactly the results whose lineage changed, saying what changed.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface Lineage {
  /** The resolved settings (every default filled in) and other facts that are not files. */
  settings: Record<string, unknown>;
  /** Each input file or folder (relative to the run directory when inside it) → sha256. */
  inputs: Record<string, string>;
}

const MISSING = 'missing';
const CHUNK = 8 << 20;
const memo = new Map<string, string>();

function fileSha256(file: string, st: fs.Stats): string {
  // a file is hashed once per process while it stays the same size and age
  const key = `${file}\0${st.size}\0${st.mtimeMs}\0${st.ino}`;
  const known = memo.get(key);
  if (known) return known;
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, st.size)));
  const fd = fs.openSync(file, 'r');
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  const d = h.digest('hex');
  memo.set(key, d);
  return d;
}

/**
 * sha256 of a file's bytes; of a folder, over its top-level files' names and hashes (a model
 * folder's weights, config and tokenizer; sub-folders such as a download's original/ and
 * dot-files are not read). "missing" when the path does not exist.
 */
export function contentHash(p: string): string {
  if (!fs.existsSync(p)) return MISSING;
  const st = fs.statSync(p);
  if (!st.isDirectory()) return fileSha256(p, st);
  const h = createHash('sha256');
  for (const name of fs.readdirSync(p).sort()) {
    if (name.startsWith('.')) continue;
    const f = path.join(p, name);
    const fst = fs.statSync(f);
    if (fst.isFile()) h.update(`${name}\0${fileSha256(f, fst)}\n`);
  }
  return h.digest('hex');
}

/** The lineage of a step in `root` (the run directory) with these settings reading these files. */
export function lineageOf(root: string, settings: Record<string, unknown>, files: Iterable<string>): Lineage {
  const inputs: Record<string, string> = {};
  for (const f of files) inputs[inputName(root, f)] = contentHash(f);
  // settings as JSON reads them back, so a record compares equal to a fresh lineage
  return { settings: JSON.parse(JSON.stringify(settings)) as Record<string, unknown>, inputs };
}

/** A path relative to the run directory when inside it (a run directory can move), else absolute. */
function inputName(root: string, f: string): string {
  const rel = path.relative(path.resolve(root), path.resolve(f));
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : path.resolve(f);
}

/** A lineage record, or null when there is none (or it cannot be read: then it cannot vouch for anything). */
export function readLineage(file: string): Lineage | null {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as Lineage;
    return v && typeof v.settings === 'object' && typeof v.inputs === 'object' ? v : null;
  } catch {
    return null;
  }
}

const show = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));
const short = (h: string | undefined) => (h === undefined ? '(not read)' : h === MISSING ? h : `${h.slice(0, 12)}…`);

/** Leaves of a JSON value by dotted path (stages.1.lr); an empty object or list is a leaf. */
function leaves(v: unknown, prefix: string, out: Map<string, unknown>): Map<string, unknown> {
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (!keys.length) out.set(prefix, v);
    for (const k of keys) leaves((v as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, v);
  return out;
}

/** What differs between two settings objects: "lr 0.0003 → 0.0001", one line per changed leaf. */
export function settingsChanges(before: unknown, now: unknown): string[] {
  const a = leaves(before, '', new Map()),
    b = leaves(now, '', new Map());
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  return keys.filter((k) => JSON.stringify(a.get(k)) !== JSON.stringify(b.get(k))).map((k) => `${k} ${show(a.get(k))} → ${show(b.get(k))}`);
}

/** Why a result made with `before` does not stand for `now`: settings and inputs that changed, empty when none. */
export function lineageChanges(before: Lineage, now: Lineage): string[] {
  const out: string[] = [];
  const s = settingsChanges(before.settings, now.settings);
  if (s.length) out.push(`settings changed (${s.join(', ')})`);
  for (const f of [...new Set([...Object.keys(before.inputs), ...Object.keys(now.inputs)])].sort()) {
    const [x, y] = [before.inputs[f], now.inputs[f]];
    if (x === y) continue;
    if (x === undefined) out.push(`${f} is a new input`);
    else if (y === undefined) out.push(`${f} is no longer an input`);
    else out.push(`${f} changed (sha256 ${short(x)} → ${short(y)})`);
  }
  return out;
}
