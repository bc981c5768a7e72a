// Multiple-choice items with one correct option and three clearly wrong ones (see
// distractors.ts). The test set asks about diseases the model trains on, in a format it never
// trains on; the 5-shot exemplars of each subject come from held-out diseases where the
// subject has any, so exemplars never share a disease's facts with a test item.
import type { Rng } from '../engine/rng.js';
import { presentingSymptoms } from './aspects.js';
import type { Distractors } from './distractors.js';
import type { Disease, FactList } from './knowledge.js';
import { pick, sample, shuffled } from './sampling.js';
import { fill, listZh } from './text.js';
import { MCQ_LETTERS, type McqLetter, type McqRecord } from './types.js';

interface FactKind {
  field: FactList;
  questions: readonly string[];
}

const FACT_KINDS: Record<string, FactKind> = {
  drug: { field: 'drugs', questions: ['以下哪种药物常用于治疗{n}？', '治疗{n}时，下列药物中最常用的是：'] },
  symptom: { field: 'symptoms', questions: ['以下哪项是{n}的典型症状？', '{n}患者最可能出现下列哪种表现？'] },
  exam: { field: 'examinations', questions: ['诊断{n}时常用的检查是：', '以下哪项检查常用于{n}的诊断？'] },
  cause: { field: 'causes', questions: ['以下哪项是{n}的常见病因或诱因？', '下列因素中，与{n}发生关系最密切的是：'] },
  treatment: { field: 'treatments', questions: ['以下哪项是{n}的常用治疗措施？', '对于{n}，下列哪种处理方法是恰当的？'] },
};
const DEPARTMENT_QUESTIONS = ['{n}患者通常应到哪个科室就诊？', '怀疑{n}时，首选就诊的科室是：'];
const DIAGNOSIS_QUESTIONS = ['患者出现{s}，最可能的诊断是：', '某患者表现为{s}，应首先考虑哪种疾病？'];

export const MCQ_KINDS = [...Object.keys(FACT_KINDS), 'department', 'diagnosis'] as const;

type Item = Omit<McqRecord, 'id'>;

function assemble(d: Disease, kind: string, q: number, question: string, correct: string, wrong: string[], rng: Rng): Item {
  const at = rng.int(MCQ_LETTERS.length);
  const others = shuffled(rng, wrong);
  const options = {} as Record<McqLetter, string>;
  MCQ_LETTERS.forEach((l, i) => (options[l] = i === at ? correct : others[i < at ? i : i - 1]));
  return { question, options, answer: MCQ_LETTERS[at], subject: d.department, disease: d.name, template: `mcq:${kind}#${q}` };
}

/** An item of the given kind about `d`, or undefined when too few clear distractors exist. */
export function makeItem(d: Disease, kind: string, distractors: Distractors, rng: Rng): Item | undefined {
  const fact = FACT_KINDS[kind];
  if (fact) {
    const own = fact.field === 'symptoms' ? presentingSymptoms(d) : d[fact.field];
    const pool = distractors.pool(d, fact.field);
    if (!own.length || pool.length < 3) return undefined;
    const q = rng.int(fact.questions.length);
    return assemble(d, kind, q, fill(fact.questions[q], { n: d.name }), pick(rng, own), sample(rng, pool, 3), rng);
  }
  if (kind === 'department') {
    const wrong = distractors.wrongDepartments(d);
    if (wrong.length < 3) return undefined;
    const q = rng.int(DEPARTMENT_QUESTIONS.length);
    return assemble(d, kind, q, fill(DEPARTMENT_QUESTIONS[q], { n: d.name }), d.department, sample(rng, wrong, 3), rng);
  }
  const presenting = presentingSymptoms(d);
  if (presenting.length < 2) return undefined;
  const shown = sample(rng, presenting, 3);
  const wrong = distractors.wrongDiagnoses(d, shown);
  if (wrong.length < 3) return undefined;
  const q = rng.int(DIAGNOSIS_QUESTIONS.length);
  const names = sample(rng, wrong, 3).map((e) => e.name);
  return assemble(d, kind, q, fill(DIAGNOSIS_QUESTIONS[q], { s: listZh(shown) }), d.name, names, rng);
}

export interface McqOptions {
  /** Test items per training disease (each of a different kind). */
  perDisease: number;
  /** Exemplars per subject in the dev split. */
  shotsPerSubject: number;
}

export function generateMcq(
  seen: readonly Disease[], unseen: readonly Disease[], distractors: Distractors, rng: Rng, opts: McqOptions,
): { dev: McqRecord[]; test: McqRecord[] } {
  const candidates = (d: Disease) =>
    shuffled(rng, [...MCQ_KINDS]).flatMap((k) => {
      const item = makeItem(d, k, distractors, rng);
      return item ? [item] : [];
    });
  const seenItems = new Map(seen.map((d) => [d, candidates(d)]));
  const unseenItems = unseen.flatMap(candidates);

  const dev: Item[] = [];
  const subjects = [...new Set(seen.map((d) => d.department))];
  for (const subject of subjects) {
    // held-out diseases first; a subject without any lends items of its training diseases,
    // which the test set then leaves out
    const fromUnseen = unseenItems.filter((it) => it.subject === subject);
    const fromSeen = shuffled(rng, seen.filter((d) => d.department === subject)).map((d) => seenItems.get(d)!);
    const picked = fromUnseen.slice(0, opts.shotsPerSubject);
    while (picked.length < opts.shotsPerSubject && fromSeen.some((xs) => xs.length)) {
      for (const xs of fromSeen) if (xs.length && picked.length < opts.shotsPerSubject) picked.push(xs.shift()!);
    }
    dev.push(...picked);
  }
  const test = seen.flatMap((d) => seenItems.get(d)!.slice(0, opts.perDisease));
  const withIds = (split: string, items: Item[]) =>
    shuffled(rng, items).map((it, i) => ({ id: `mcq-${split}-${String(i).padStart(5, '0')}`, ...it }));
  return { dev: withIds('dev', dev), test: withIds('test', test) };
}
