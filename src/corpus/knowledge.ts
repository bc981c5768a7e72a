// The built-in medical knowledge base: corpus/diseases/*.json, one JSON array of diseases per
// file. Loading validates every disease and names the file, the disease and the field of the
// first problem, because these files are edited by hand.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { DEPARTMENTS } from './departments.js';

const charCount = (s: string) => Array.from(s).length;

// List items are joined with 、 and embedded in template sentences whose NER spans must stay
// exact, so an item may not carry list punctuation or whitespace of its own.
const LIST_PUNCTUATION = /[、，,。；;：:！？!?\s]/;

function phrase(min: number, max: number) {
  return z
    .string()
    .refine((s) => charCount(s) >= min && charCount(s) <= max, `must be ${min}-${max} characters`)
    .refine((s) => !LIST_PUNCTUATION.test(s), 'must not contain punctuation (、，。；：) or whitespace');
}

const Item = phrase(2, 12);
const Name = phrase(2, 16);

function itemList(min: number, max: number) {
  return z
    .array(Item)
    .min(min, `needs at least ${min} items`)
    .max(max, `allows at most ${max} items`)
    .refine((xs) => new Set(xs).size === xs.length, 'has a repeated item');
}

export const DiseaseSchema = z
  .object({
    name: Name,
    aliases: z.array(Name).max(4, 'allows at most 4 aliases').optional(),
    department: z.enum(DEPARTMENTS),
    category: Item,
    symptoms: itemList(3, 6),
    causes: itemList(3, 6),
    examinations: itemList(3, 6),
    treatments: itemList(3, 6),
    drugs: itemList(3, 6),
    precautions: itemList(3, 6),
    contagious: z.boolean().optional(),
    urgent_signs: itemList(1, 6).optional(),
  })
  .strict();

export type DiseaseRecord = z.infer<typeof DiseaseSchema>;

/** A validated disease and the file it came from. */
export interface Disease extends DiseaseRecord {
  file: string;
}

/** The fact lists every disease carries, in the order the corpus presents them. */
export const FACT_LISTS = ['symptoms', 'causes', 'examinations', 'treatments', 'drugs', 'precautions'] as const;
export type FactList = (typeof FACT_LISTS)[number];

export interface KnowledgeBase {
  dir: string;
  diseases: Disease[];
  byName: ReadonlyMap<string, Disease>;
}

/** The nearest folder at or above `from` (a file URL or path) that holds package.json. */
export function findPackageRoot(from: string = import.meta.url): string {
  let dir = path.dirname(from.startsWith('file:') ? fileURLToPath(from) : path.resolve(from));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json found above ${from}`);
    dir = parent;
  }
}

/** corpus/diseases inside the installed chimed package. */
export function defaultDiseasesDir(): string {
  return path.join(findPackageRoot(), 'corpus', 'diseases');
}

function issuePath(p: readonly PropertyKey[]): string {
  return p.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join('');
}

/** Parses one disease file; throws an Error naming the file, the disease and the field. */
export function parseDiseaseFile(text: string, file: string): Disease[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: invalid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(data)) throw new Error(`${file}: expected a JSON array of diseases`);
  return data.map((raw, i) => {
    const label = `${file}: disease #${i + 1}` + (typeof raw?.name === 'string' ? ` "${raw.name}"` : '');
    const r = DiseaseSchema.safeParse(raw);
    if (!r.success) {
      const issue = r.error.issues[0];
      const where = issue.path.length ? issuePath(issue.path) : 'record';
      throw new Error(`${label}: ${where}: ${issue.message}`);
    }
    return { ...r.data, file };
  });
}

/** Every name a disease answers to: its name, then its aliases. */
export function diseaseNames(d: DiseaseRecord): string[] {
  return [d.name, ...(d.aliases ?? [])];
}

/**
 * Loads and validates every *.json under `dir` (files in name order, so generation is
 * reproducible), and checks that no name or alias is claimed by two diseases.
 */
export function loadKnowledgeBase(dir: string = defaultDiseasesDir()): KnowledgeBase {
  if (!existsSync(dir)) throw new Error(`knowledge base folder not found: ${dir}`);
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  if (!files.length) throw new Error(`${dir}: no *.json disease files`);
  const diseases: Disease[] = [];
  const owner = new Map<string, Disease>();
  for (const f of files) {
    for (const d of parseDiseaseFile(readFileSync(path.join(dir, f), 'utf8'), f)) {
      for (const n of diseaseNames(d)) {
        const prev = owner.get(n);
        if (prev) throw new Error(`${f}: "${d.name}" uses the name "${n}", already taken by "${prev.name}" in ${prev.file}`);
        owner.set(n, d);
      }
      diseases.push(d);
    }
  }
  return { dir, diseases, byName: new Map(diseases.map((d) => [d.name, d])) };
}
