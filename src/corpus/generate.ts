// The built-in corpus: every generator run over the knowledge base for one seed, with
// held-out splits, and the JSONL files the demo pipeline reads.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { Distractors } from './distractors.js';
import { diseaseNames, loadKnowledgeBase, type Disease, type KnowledgeBase } from './knowledge.js';
import { generateMcq } from './mcq.js';
import { generateNer } from './ner.js';
import { generatePreference } from './preference.js';
import { generatePt } from './pt.js';
import { stream } from './sampling.js';
import { generateSft } from './sft.js';
import { chooseHeldoutDiseases, Splitter, TemplateSplit } from './split.js';
import type { McqRecord, NerRecord, PreferenceRecord, QaRecord, Split, TextRecord } from './types.js';

export interface CorpusOptions {
  seed: number;
  /** Share of diseases held out entirely, and of the other diseases' records held out by
   *  wording; 0 to 0.5. */
  heldoutFraction: number;
  /** Symptom-led triage questions per disease (default 2). */
  triagePerDisease?: number;
  /** Preference pairs per disease (default 7: 3 wrong-fact, 2 unsafe, 2 evasive). */
  preferencePairsPerDisease?: number;
  /** Share of preference pairs asked as a follow-up with history (default 0.15). */
  preferenceMultiTurnShare?: number;
  /** MCQ test items per training disease (default 2). */
  mcqPerDisease?: number;
  /** MCQ exemplars per subject for k-shot prompts (default 5). */
  mcqShotsPerSubject?: number;
}

export interface Corpus {
  /** Diseases no training record mentions. */
  heldoutDiseases: string[];
  pt: Split<TextRecord>;
  sft: Split<QaRecord>;
  /** Validation conversations drawn like sft.heldout, none equal to one of them. */
  sftDev: QaRecord[];
  preference: Split<PreferenceRecord>;
  mcq: { dev: McqRecord[]; test: McqRecord[] };
  ner: Split<NerRecord>;
}

function checkOptions(o: CorpusOptions): void {
  if (!Number.isSafeInteger(o.seed)) throw new Error(`corpus seed must be an integer, got ${o.seed}`);
  if (!(o.heldoutFraction >= 0 && o.heldoutFraction <= 0.5)) {
    throw new Error(`heldoutFraction must be between 0 and 0.5, got ${o.heldoutFraction}`);
  }
  for (const k of ['triagePerDisease', 'preferencePairsPerDisease', 'mcqPerDisease', 'mcqShotsPerSubject'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw new Error(`${k} must be a non-negative integer, got ${v}`);
  }
  const share = o.preferenceMultiTurnShare;
  if (share !== undefined && !(share >= 0 && share <= 1)) throw new Error(`preferenceMultiTurnShare must be between 0 and 1, got ${share}`);
}

/** What training records show a model, all fields but the provenance ones. */
function trainingText(c: Omit<Corpus, 'heldoutDiseases'>): string {
  const splits = [c.pt, c.sft, c.preference, c.ner];
  return splits.flatMap((s) => s.train.map((r) => JSON.stringify({ ...r, id: 0, disease: 0, template: 0 }))).join('\n');
}

/**
 * Every kind of record for one seed; the same seed and knowledge base give the same corpus.
 * Template text next to an item can spell a held-out name (最近 + 视力下降 contains 近视), which
 * no check of the knowledge base alone foresees; such a disease is made ineligible and the
 * split drawn again until no training text names a held-out disease.
 */
export function generateCorpus(kb: KnowledgeBase, opts: CorpusOptions): Corpus {
  checkOptions(opts);
  const excluded = new Set<Disease>();
  for (let attempt = 0; attempt < 8; attempt++) {
    const unseen = chooseHeldoutDiseases(kb.diseases, opts.heldoutFraction, stream(opts.seed, 'heldout-diseases'), excluded);
    const corpus = generateWith(kb, unseen, opts);
    const text = trainingText(corpus);
    const leaked = [...unseen].filter((d) => diseaseNames(d).some((n) => text.includes(n)));
    if (!leaked.length) return { heldoutDiseases: kb.diseases.filter((d) => unseen.has(d)).map((d) => d.name), ...corpus };
    for (const d of leaked) excluded.add(d);
  }
  throw new Error('could not choose held-out diseases whose names stay out of the training text');
}

/** Size of the validation split sft_dev.jsonl. */
const SFT_DEV_SIZE = 96;

/**
 * Conversations for choosing weights (rejection sampling judges its rounds on them): a second
 * draw, from its own stream, of the held-out kinds (the same unseen diseases and held-out
 * templates, other wordings and answers), without any conversation that is also a test one. A
 * stage that selects on these is scored on sft_heldout, which it never saw.
 */
function generateSftDev(kb: KnowledgeBase, splitter: Splitter, seed: number, test: QaRecord[], triagePerDisease: number): QaRecord[] {
  const key = (r: QaRecord) => JSON.stringify([r.history ?? [], r.prompt]);
  const inTest = new Set(test.map(key));
  const drawn = generateSft(kb.diseases, splitter, stream(seed, 'sft-dev'), { triagePerDisease }).heldout;
  return drawn
    .filter((r) => !inTest.has(key(r)))
    .slice(0, SFT_DEV_SIZE)
    .map(({ id: _, ...r }, i) => ({ id: `sft-dev-${String(i).padStart(5, '0')}`, ...r }));
}

function generateWith(kb: KnowledgeBase, unseen: ReadonlySet<Disease>, opts: CorpusOptions): Omit<Corpus, 'heldoutDiseases'> {
  const { seed, heldoutFraction: fraction } = opts;
  const seen = kb.diseases.filter((d) => !unseen.has(d));
  const splitter = new Splitter(unseen, new TemplateSplit(seed, fraction), fraction);
  // only training diseases' items may be swapped into training records
  const distractors = new Distractors(kb.diseases, seen);
  const triagePerDisease = opts.triagePerDisease ?? 2;
  const sft = generateSft(kb.diseases, splitter, stream(seed, 'sft'), { triagePerDisease });
  return {
    pt: generatePt(kb.diseases, splitter, stream(seed, 'pt')),
    sft,
    sftDev: generateSftDev(kb, splitter, seed, sft.heldout, triagePerDisease),
    preference: generatePreference(kb.diseases, splitter, distractors, stream(seed, 'preference'), {
      pairsPerDisease: opts.preferencePairsPerDisease ?? 7,
      multiTurnShare: opts.preferenceMultiTurnShare ?? 0.15,
    }),
    mcq: generateMcq(seen, [...unseen], distractors, stream(seed, 'mcq'), {
      perDisease: opts.mcqPerDisease ?? 2,
      shotsPerSubject: opts.mcqShotsPerSubject ?? 5,
    }),
    ner: generateNer(kb.diseases, splitter, stream(seed, 'ner')),
  };
}

/** The files writeCorpus() writes (a run re-makes its corpus when this list changes). */
export const CORPUS_FILES = [
  'pt_train.jsonl',
  'pt_heldout.jsonl',
  'sft_train.jsonl',
  'sft_heldout.jsonl',
  'sft_dev.jsonl',
  'pref_train.jsonl',
  'pref_heldout.jsonl',
  'mcq_dev.jsonl',
  'mcq_test.jsonl',
  'ner_train.jsonl',
  'ner_test.jsonl',
] as const;

/** The files writeCorpus() writes, by the records they hold. */
export function corpusFiles(c: Corpus): Record<(typeof CORPUS_FILES)[number], readonly object[]> {
  return {
    'pt_train.jsonl': c.pt.train,
    'pt_heldout.jsonl': c.pt.heldout,
    'sft_train.jsonl': c.sft.train,
    'sft_heldout.jsonl': c.sft.heldout,
    'sft_dev.jsonl': c.sftDev,
    'pref_train.jsonl': c.preference.train,
    'pref_heldout.jsonl': c.preference.heldout,
    'mcq_dev.jsonl': c.mcq.dev,
    'mcq_test.jsonl': c.mcq.test,
    'ner_train.jsonl': c.ner.train,
    'ner_test.jsonl': c.ner.heldout,
  };
}

/**
 * Generates the corpus and writes one JSONL file per split into `outDir`, plus
 * manifest.json (options, held-out diseases, counts). Returns the record count per file.
 */
export async function writeCorpus(
  outDir: string, opts: CorpusOptions & { kb?: KnowledgeBase },
): Promise<Record<string, number>> {
  const { kb = loadKnowledgeBase(), ...options } = opts;
  const corpus = generateCorpus(kb, options);
  await mkdir(outDir, { recursive: true });
  const counts: Record<string, number> = {};
  for (const [file, records] of Object.entries(corpusFiles(corpus))) {
    await writeFileAtomic(path.join(outDir, file), records.map((r) => JSON.stringify(r) + '\n').join(''));
    counts[file] = records.length;
  }
  await writeJsonAtomic(path.join(outDir, 'manifest.json'), {
    generator: 'chimed built-in corpus',
    diseases: kb.diseases.length,
    options,
    heldoutDiseases: corpus.heldoutDiseases,
    counts,
  });
  return counts;
}
