import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openImport } from '../src/data/import.js';
import { DEPARTMENTS, relatedDepartments } from '../src/corpus/departments.js';
import { CORPUS_FILES, corpusFiles, generateCorpus, writeCorpus, type Corpus } from '../src/corpus/generate.js';
import {
  diseaseNames,
  FACT_LISTS,
  findPackageRoot,
  loadKnowledgeBase,
  parseDiseaseFile,
  type Disease,
  type FactList,
} from '../src/corpus/knowledge.js';
import { listZh } from '../src/corpus/text.js';
import { NER_TYPES, REJECTED_KINDS, type McqRecord } from '../src/corpus/types.js';
import { repoRoot, tmpDir } from './helpers.js';

const kb = loadKnowledgeBase();
const OPTS = { seed: 7, heldoutFraction: 0.1 };
const corpus = generateCorpus(kb, OPTS);
const heldout = new Set(corpus.heldoutDiseases);
const disease = (name: string): Disease => {
  const d = kb.byName.get(name);
  assert.ok(d, `unknown disease ${name}`);
  return d;
};

/** Every string a training record shows a model. */
function trainTexts(c: Corpus): string[] {
  return [
    ...c.pt.train.map((r) => r.text),
    ...c.sft.train.flatMap((r) => [r.prompt, r.response, ...(r.history ?? []).flat()]),
    ...c.preference.train.flatMap((r) => [r.prompt, r.chosen, r.rejected, ...(r.history ?? []).flat()]),
    ...c.ner.train.flatMap((r) => [r.text, ...r.entities.map((e) => e.text)]),
  ];
}

const count = (text: string, x: string) => text.split(x).length - 1;

test('knowledge base: >= 160 valid diseases in 10-15 department files, unique names, full lists', () => {
  assert.equal(findPackageRoot(), repoRoot);
  assert.ok(kb.diseases.length >= 160, `${kb.diseases.length} diseases`);
  const files = new Set(kb.diseases.map((d) => d.file));
  assert.ok(files.size >= 10 && files.size <= 15, `${files.size} files`);
  const names = kb.diseases.flatMap((d) => diseaseNames(d));
  assert.equal(new Set(names).size, names.length, 'a name or alias is used twice');
  for (const d of kb.diseases) {
    for (const f of FACT_LISTS) assert.ok(d[f].length >= 3 && d[f].length <= 6, `${d.name}.${f} has ${d[f].length} items`);
    for (const item of FACT_LISTS.flatMap((f) => d[f])) {
      assert.ok([...item].length >= 2 && [...item].length <= 12, `${d.name}: item "${item}" length`);
    }
  }
  const used = new Set(kb.diseases.map((d) => d.department));
  assert.deepEqual(
    [...DEPARTMENTS].filter((x) => !used.has(x)),
    [],
    'a department without diseases',
  );
});

test('knowledge base errors name the file, the disease and the field', async () => {
  const good = JSON.parse(await readFile(path.join(kb.dir, 'respiratory.json'), 'utf8'))[0];
  const bad = (patch: object) => JSON.stringify([good, { ...good, name: '测试病', ...patch }]);
  assert.throws(
    () => parseDiseaseFile(bad({ drugs: ['甲药', '乙药'] }), 'x.json'),
    /x\.json: disease #2 "测试病": drugs: needs at least 3 items/,
  );
  assert.throws(
    () => parseDiseaseFile(bad({ symptoms: ['咳嗽', '发热、寒战', '乏力'] }), 'x.json'),
    /"测试病": symptoms\[1\]: must not contain punctuation/,
  );
  assert.throws(() => parseDiseaseFile(bad({ department: '外星科' }), 'x.json'), /"测试病": department: /);
  assert.throws(() => parseDiseaseFile(bad({ symptom: ['咳嗽'] }), 'x.json'), /"测试病": record: .*symptom/);
  assert.throws(() => parseDiseaseFile(bad({ causes: ['受凉', '受凉', '疲劳'] }), 'x.json'), /causes: has a repeated item/);
  assert.throws(() => parseDiseaseFile('[{"name": ', 'y.json'), /y\.json: invalid JSON/);
  const dir = tmpDir('chimed-kb-');
  try {
    await writeFile(path.join(dir, 'a.json'), JSON.stringify([good]));
    await writeFile(path.join(dir, 'b.json'), JSON.stringify([{ ...good, name: '另一病', aliases: [good.name] }]));
    assert.throws(() => loadKnowledgeBase(dir), /b\.json: "另一病" uses the name "普通感冒", already taken by "普通感冒" in a\.json/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('generation is deterministic for a seed and differs across seeds', () => {
  const again = generateCorpus(kb, OPTS);
  assert.deepEqual(again, corpus);
  const other = generateCorpus(kb, { ...OPTS, seed: 8 });
  assert.notDeepEqual(other.heldoutDiseases, corpus.heldoutDiseases);
  for (const file of CORPUS_FILES) {
    assert.notDeepEqual(corpusFiles(other)[file], corpusFiles(corpus)[file], `${file} is the same for seeds 7 and 8`);
  }
});

test('sizes fit the demo: PT 300-600k chars, SFT 2-4k, preference 1-2k, MCQ test 300-500', () => {
  const ptChars = [...corpus.pt.train, ...corpus.pt.heldout].reduce((n, r) => n + r.text.length, 0);
  const between = (x: number, lo: number, hi: number, what: string) => assert.ok(x >= lo && x <= hi, `${what}: ${x}`);
  between(ptChars, 300_000, 600_000, 'PT characters');
  between(corpus.sft.train.length + corpus.sft.heldout.length, 2000, 4000, 'SFT conversations');
  between(corpus.preference.train.length + corpus.preference.heldout.length, 1000, 2000, 'preference pairs');
  between(corpus.mcq.test.length, 300, 500, 'MCQ test items');
  assert.ok(corpus.ner.train.length >= 1000 && corpus.ner.heldout.length >= 200);
});

test('held-out diseases never appear in training records; every kind holds them out', () => {
  assert.ok(heldout.size >= 15, `${heldout.size} held-out diseases`);
  const names = [...heldout].flatMap((n) => diseaseNames(disease(n)));
  for (const t of trainTexts(corpus)) {
    for (const n of names) assert.ok(!t.includes(n), `held-out disease "${n}" in training text: ${t.slice(0, 80)}`);
  }
  for (const split of [corpus.pt, corpus.sft, corpus.preference, corpus.ner]) {
    assert.ok(split.train.every((r) => !heldout.has(r.disease) && r.heldout === undefined));
    const unseen = split.heldout.filter((r) => r.heldout === 'unseen_disease');
    assert.deepEqual(new Set(unseen.map((r) => r.disease)), heldout);
    const byTemplate = split.heldout.filter((r) => r.heldout === 'unseen_template');
    assert.ok(byTemplate.length > 0 && byTemplate.every((r) => !heldout.has(r.disease)));
  }
  // the MCQ test asks about trained diseases only; exemplars prefer held-out ones
  assert.ok(corpus.mcq.test.every((m) => !heldout.has(m.disease)));
});

test('the SFT validation split is drawn like the test split and shares no conversation with it', () => {
  const key = (r: { prompt: string; history?: [string, string][] }) => JSON.stringify([r.history ?? [], r.prompt]);
  const test = new Set(corpus.sft.heldout.map(key));
  assert.equal(corpus.sftDev.length, 96);
  assert.ok(
    corpus.sftDev.every((r) => !test.has(key(r))),
    'a validation conversation is also a test one',
  );
  assert.equal(new Set(corpus.sftDev.map((r) => r.id)).size, corpus.sftDev.length);
  const trainTemplates = new Set(corpus.sft.train.map((r) => r.template));
  for (const r of corpus.sftDev) {
    if (r.heldout === 'unseen_disease') assert.ok(heldout.has(r.disease), r.id);
    else assert.ok(r.heldout === 'unseen_template' && !trainTemplates.has(r.template), `${r.id}: ${r.template}`);
  }
  // both kinds, roughly in the test split's proportions (test: 343 of 749 unseen diseases for seed 42)
  const unseen = corpus.sftDev.filter((r) => r.heldout === 'unseen_disease').length;
  assert.ok(unseen > 20 && unseen < 76, `${unseen} of 96 on unseen diseases`);
});

test('unseen-wording records use wordings no training record uses', () => {
  for (const split of [corpus.pt, corpus.sft, corpus.preference, corpus.ner]) {
    const trainTemplates = new Set<string>(split.train.map((r) => r.template));
    for (const r of split.heldout.filter((x) => x.heldout === 'unseen_template')) {
      assert.ok(!trainTemplates.has(r.template), `${r.template} is both held out and trained on`);
    }
  }
  const trainPrompts = new Set(corpus.sft.train.map((r) => r.prompt));
  for (const r of corpus.sft.heldout.filter((x) => x.heldout === 'unseen_template')) {
    assert.ok(!trainPrompts.has(r.prompt), `held-out prompt "${r.prompt}" is a training prompt`);
  }
  const trainPassages = new Set(corpus.pt.train.map((r) => r.text));
  assert.ok(corpus.pt.heldout.every((r) => !trainPassages.has(r.text)));
});

const MCQ_FIELDS: Record<string, FactList> = {
  drug: 'drugs',
  symptom: 'symptoms',
  exam: 'examinations',
  cause: 'causes',
  treatment: 'treatments',
};

function checkMcq(m: McqRecord): void {
  const d = disease(m.disease);
  const kind = m.template.replace(/^mcq:(\w+)#\d+$/, '$1');
  const options = Object.values(m.options);
  assert.equal(new Set(options).size, 4, `${m.id}: repeated option`);
  assert.equal(m.subject, d.department);
  const wrong = Object.entries(m.options)
    .filter(([l]) => l !== m.answer)
    .map(([, o]) => o);
  const right = m.options[m.answer];
  const field = MCQ_FIELDS[kind];
  if (field) {
    assert.ok(d[field].includes(right), `${m.id}: answer "${right}" is not in ${d.name}.${field}`);
    for (const w of wrong) {
      assert.ok(!d[field].some((x) => x.includes(w) || w.includes(x)), `${m.id}: distractor "${w}" matches ${d.name}.${field}`);
    }
  } else if (kind === 'department') {
    assert.equal(right, d.department);
    for (const w of wrong) assert.ok(!relatedDepartments(d.department).has(w), `${m.id}: ${w} overlaps ${d.department}`);
  } else {
    assert.equal(kind, 'diagnosis');
    assert.equal(right, d.name);
    for (const w of wrong) {
      const e = disease(w);
      assert.ok(!e.symptoms.some((s) => m.question.includes(s)), `${m.id}: ${w} also has a symptom in "${m.question}"`);
      assert.ok(!relatedDepartments(d.department).has(e.department));
    }
  }
}

test('MCQ answers are right by the knowledge base and distractors are not', () => {
  for (const m of [...corpus.mcq.test, ...corpus.mcq.dev]) checkMcq(m);
  const kinds = new Set(corpus.mcq.test.map((m) => m.template.split('#')[0]));
  assert.deepEqual([...kinds].sort(), [
    'mcq:cause',
    'mcq:department',
    'mcq:diagnosis',
    'mcq:drug',
    'mcq:exam',
    'mcq:symptom',
    'mcq:treatment',
  ]);
  const letters = new Set(corpus.mcq.test.map((m) => m.answer));
  assert.equal(letters.size, 4, 'the answer should not sit at one letter');
  // 5 exemplars per subject, none repeating a test item
  const perSubject = new Map<string, number>();
  for (const m of corpus.mcq.dev) perSubject.set(m.subject, (perSubject.get(m.subject) ?? 0) + 1);
  assert.equal(perSubject.size, DEPARTMENTS.length);
  assert.ok([...perSubject.values()].every((n) => n === 5));
  const testKeys = new Set(corpus.mcq.test.map((m) => `${m.disease}|${m.template.split('#')[0]}`));
  assert.ok(corpus.mcq.dev.every((m) => !testKeys.has(`${m.disease}|${m.template.split('#')[0]}`)));
});

test('NER offsets slice to the entity text, and entities come from the knowledge base', () => {
  for (const r of [...corpus.ner.train, ...corpus.ner.heldout]) {
    const chars = [...r.text];
    const d = disease(r.disease);
    let last = 0;
    for (const e of r.entities) {
      assert.equal(chars.slice(e.start, e.end).join(''), e.text, `${r.id}: [${e.start}, ${e.end}) in "${r.text}"`);
      assert.ok(e.start >= last, `${r.id}: overlapping entities`);
      last = e.end;
      assert.ok(NER_TYPES.includes(e.type));
      const source: readonly string[] = {
        disease: diseaseNames(d),
        symptom: d.symptoms,
        drug: d.drugs,
        exam: d.examinations,
        department: [d.department],
      }[e.type];
      assert.ok(source.includes(e.text), `${r.id}: ${e.type} "${e.text}" is not one of ${d.name}'s`);
    }
    assert.ok(r.entities.some((e) => e.type !== 'disease') && r.entities.length >= 2);
  }
  const types = new Set(corpus.ner.train.flatMap((r) => r.entities.map((e) => e.type)));
  assert.deepEqual([...types].sort(), [...NER_TYPES].sort());
});

test('preference pairs: chosen differs from rejected, all rejection kinds, wrong facts are wrong', () => {
  for (const split of [corpus.preference.train, corpus.preference.heldout]) {
    assert.deepEqual(new Set(split.map((p) => p.rejected_kind)), new Set(REJECTED_KINDS));
    for (const p of split) {
      assert.notEqual(p.chosen, p.rejected, p.id);
      const d = disease(p.disease);
      if (p.rejected_kind === 'wrong_fact' && /^q:(drugs|symptoms|examinations|causes|treatments)#/.test(p.template)) {
        const field = p.template.replace(/^q:(\w+)#\d+$/, '$1') as FactList;
        // the chosen answer lists the disease's own items; the rejected one names them no more
        // often than the wording both answers share (an urgent-sign sentence, say) does
        const own = listZh(d[field]);
        assert.ok(p.chosen.includes(own), `${p.id}: chosen misses the facts`);
        const shared = p.chosen.replace(own, '');
        for (const x of d[field]) {
          assert.ok(count(p.rejected, x) <= count(shared, x), `${p.id}: rejected keeps the true fact ${x}: ${p.rejected}`);
        }
      }
    }
  }
  const kinds = corpus.preference.train.map((p) => p.rejected_kind);
  for (const k of REJECTED_KINDS) assert.ok(kinds.filter((x) => x === k).length >= kinds.length / 5, `too few ${k}`);
  assert.ok(corpus.preference.train.some((p) => p.history?.length));
  assert.ok(
    corpus.sft.train.some((r) => (r.history?.length ?? 0) >= 2),
    'no 3-turn dialogue',
  );
});

test('heldoutFraction 0 holds nothing out; bad options are refused', () => {
  const none = generateCorpus(kb, { seed: 1, heldoutFraction: 0 });
  assert.equal(none.heldoutDiseases.length, 0);
  assert.equal(none.pt.heldout.length + none.sft.heldout.length + none.sftDev.length + none.ner.heldout.length, 0);
  assert.throws(() => generateCorpus(kb, { seed: 1, heldoutFraction: 0.9 }), /heldoutFraction must be between 0 and 0.5/);
  assert.throws(() => generateCorpus(kb, { seed: 1.5, heldoutFraction: 0.1 }), /seed must be an integer/);
});

test('writeCorpus writes JSONL the data importers read back without rejects', async () => {
  const dir = path.join(tmpDir('chimed-corpus-'), 'out');
  try {
    await mkdir(dir, { recursive: true });
    const counts = await writeCorpus(dir, { ...OPTS, kb });
    const expected: Record<string, [string, string]> = {
      'pt_train.jsonl': ['document', 'document'],
      'pt_heldout.jsonl': ['document', 'document'],
      'sft_train.jsonl': ['qa', 'conversation'],
      'sft_heldout.jsonl': ['qa', 'conversation'],
      'sft_dev.jsonl': ['qa', 'conversation'],
      'pref_train.jsonl': ['preference', 'preference'],
      'pref_heldout.jsonl': ['preference', 'preference'],
      'mcq_dev.jsonl': ['mcq', 'mcq'],
      'mcq_test.jsonl': ['mcq', 'mcq'],
      'ner_train.jsonl': ['ner', 'ner'],
      'ner_test.jsonl': ['ner', 'ner'],
    };
    assert.deepEqual(Object.keys(counts).sort(), Object.keys(expected).sort());
    for (const [file, [format, kind]] of Object.entries(expected)) {
      const lines = (await readFile(path.join(dir, file), 'utf8')).trimEnd().split('\n');
      assert.equal(lines.length, counts[file], file);
      const stream = await openImport(path.join(dir, file));
      let n = 0;
      for await (const r of stream) {
        assert.equal(r.kind, kind, file);
        n++;
      }
      assert.equal(stream.summary.format, format, file);
      assert.equal(stream.summary.rejects, 0, file);
      assert.equal(n, counts[file], file);
    }
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    assert.deepEqual(manifest.heldoutDiseases, corpus.heldoutDiseases);
    assert.deepEqual(manifest.counts, counts);
  } finally {
    await rm(path.dirname(dir), { recursive: true, force: true });
  }
});
