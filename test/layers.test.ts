import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { repoRoot } from './helpers.js';

/**
 * The folders, bottom to top; a folder imports only from its own layer or below. src/index.ts
 * (the package API) sits above everything and may import anything.
 */
const LAYERS: string[][] = [
  ['engine', 'tokenizer', 'io'],
  ['model'],
  ['data', 'corpus'],
  ['train'],
  ['eval', 'report'],
  ['pipeline', 'serve'],
  ['bench'],
  ['cli'],
];

const layerOf = (folder: string): number => LAYERS.findIndex((l) => l.includes(folder));

/** Every .ts file under src/ and bench/, as a path relative to the repository root. */
function sources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(repoRoot, dir), { withFileTypes: true })) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
    }
  };
  walk('src');
  walk('bench');
  return out.sort();
}

/** The folder a file belongs to: src/FOLDER/... or bench/. */
function folderOf(file: string): string {
  const parts = file.split(path.sep);
  return parts[0] === 'bench' ? 'bench' : parts.length > 2 ? parts[1] : '(api)';
}

/** Relative imports of a file (type-only ones included: they are dependencies too), resolved to .ts files. */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(fs.readFileSync(path.join(repoRoot, file), 'utf8'), true, true);
  return importedFiles
    .map((f) => f.fileName)
    .filter((s) => s.startsWith('.'))
    .map((s) => path.normalize(path.join(path.dirname(file), s)).replace(/\.js$/, '.ts'));
}

test('every source folder belongs to a layer', () => {
  for (const f of sources()) {
    const folder = folderOf(f);
    assert.ok(folder === '(api)' || layerOf(folder) >= 0, `${f}: folder "${folder}" is in no layer; add it to LAYERS`);
  }
});

test('folders import only from their own layer or below', () => {
  const bad: string[] = [];
  for (const f of sources()) {
    const from = folderOf(f);
    if (from === '(api)') continue;
    for (const imp of importsOf(f)) {
      const to = folderOf(imp);
      if (layerOf(to) > layerOf(from)) bad.push(`${f} -> ${imp} (${from} may not import ${to})`);
    }
  }
  assert.deepEqual(bad, []);
});

test('no file-level import cycle', () => {
  const files = sources();
  const graph = new Map(files.map((f) => [f, importsOf(f).filter((i) => files.includes(i))]));
  // depth-first search; a grey node met again closes a cycle
  const state = new Map<string, 'grey' | 'black'>();
  const cycles: string[] = [];
  const visit = (f: string, trail: string[]) => {
    state.set(f, 'grey');
    const here = [...trail, f];
    for (const g of graph.get(f)!) {
      if (state.get(g) === 'grey') cycles.push([...here.slice(here.indexOf(g)), g].join(' -> '));
      else if (!state.has(g)) visit(g, here);
    }
    state.set(f, 'black');
  };
  for (const f of files) if (!state.has(f)) visit(f, []);
  assert.deepEqual(cycles, []);
});
