// Preference pairs: the chosen answer is the sound one; the rejected answer is one of
//  - wrong_fact: the same wording with a clearly wrong fact swapped in (other diseases'
//    drugs, symptoms, examinations... or a wrong department or contagiousness),
//  - unsafe: advice that endangers the patient (skip the doctor, raise the dose, stop the
//    medicine, ignore danger signs),
//  - evasive: a non-answer.
import type { Rng } from '../engine/rng.js';
import { ANSWER_VARIANTS, answer, aspectsOf, FOLLOWUPS, QUESTIONS, question, type Aspect } from './aspects.js';
import type { Distractors } from './distractors.js';
import type { Disease, FactList } from './knowledge.js';
import { pick, sample } from './sampling.js';
import type { Splitter } from './split.js';
import { SplitCollector } from './split.js';
import { askAbout, spokenName } from './sft.js';
import { fill } from './text.js';
import type { PreferenceRecord, RejectedKind, Split } from './types.js';

const UNSAFE: readonly string[] = [
  '{n}不是什么大问题，不用去医院，自己买点{drug}吃就行，效果不好就把剂量加倍。',
  '不用看医生，网上买点抗生素和{drug}一起吃，症状一好就马上停药。',
  '{n}扛一扛就过去了，没必要做{exam}，医生开的药也别吃，喝点偏方就能根治。',
  '吃{drug}见效慢，可以几种药一起吃，剂量越大好得越快。',
  '{drug}吃几天觉得好了就可以自己停掉，也不需要复诊。',
  '听别人说{drug}效果好，你直接找别人要点吃就行，不用去{dept}看。',
  '就算出现{urgent}也不用紧张，在家躺一躺就好，没必要去急诊。',
];

const EVASIVE: readonly string[] = [
  '我不确定，你自己上网查一下吧。',
  '这个不好说，每个人情况都不一样，我没法回答。',
  '这个问题太专业了，你还是去问问别人吧。',
  '说不清楚，看情况吧。',
  '关于{n}我也不太了解，你自己看着办吧。',
  '这种问题没有标准答案，随便找个人问问就行。',
];

// 3 wrong facts : 2 unsafe : 2 evasive per 7 pairs of a disease
const KIND_CYCLE: readonly RejectedKind[] = ['wrong_fact', 'unsafe', 'evasive', 'wrong_fact', 'unsafe', 'evasive', 'wrong_fact'];

const LIST_ASPECTS: Partial<Record<Aspect, FactList>> = {
  symptoms: 'symptoms', causes: 'causes', examinations: 'examinations', treatments: 'treatments', drugs: 'drugs',
  // an overview states symptoms first, so wrong symptoms make it wrong
  overview: 'symptoms',
};

function canDoctor(d: Disease, aspect: Aspect, distractors: Distractors): boolean {
  const field = LIST_ASPECTS[aspect];
  if (field) return distractors.pool(d, field).length >= 3;
  if (aspect === 'department') return distractors.wrongDepartments(d).length > 0;
  return aspect === 'contagious';
}

/** `d` with one fact about `aspect` made clearly wrong; canDoctor() says whether it can be. */
function doctored(d: Disease, aspect: Aspect, distractors: Distractors, rng: Rng): Disease {
  const field = LIST_ASPECTS[aspect];
  if (field) {
    const pool = distractors.pool(d, field);
    return { ...d, [field]: sample(rng, pool, Math.max(3, Math.min(d[field].length, pool.length))) };
  }
  if (aspect === 'department') return { ...d, department: pick(rng, distractors.wrongDepartments(d)) as Disease['department'] };
  // the flipped claim must not keep routes of transmission that contradict it
  return { ...d, contagious: !d.contagious, causes: [] };
}

function unsafeAnswer(d: Disease, rng: Rng): string {
  const usable = UNSAFE.filter((u) => !u.includes('{urgent}') || d.urgent_signs);
  return fill(pick(rng, usable), {
    n: d.name, drug: pick(rng, d.drugs), exam: pick(rng, d.examinations), dept: d.department,
    urgent: d.urgent_signs ? pick(rng, d.urgent_signs) : '',
  });
}

export interface PreferenceOptions {
  pairsPerDisease: number;
  /** Share of pairs asked as a follow-up after an overview turn (with history). */
  multiTurnShare: number;
}

export function generatePreference(
  diseases: readonly Disease[], splitter: Splitter, distractors: Distractors, rng: Rng, opts: PreferenceOptions,
): Split<PreferenceRecord> {
  const out = new SplitCollector<PreferenceRecord>();
  for (const d of diseases) {
    const aspects = aspectsOf(d);
    const wrongable = aspects.filter((a) => canDoctor(d, a, distractors));
    const offset = rng.int(KIND_CYCLE.length);
    for (let i = 0; i < opts.pairsPerDisease; i++) {
      let kind = KIND_CYCLE[(offset + i) % KIND_CYCLE.length];
      if (kind === 'wrong_fact' && !wrongable.length) kind = 'unsafe';
      const aspect = pick(rng, kind === 'wrong_fact' ? wrongable : aspects);
      const { t, place } = splitter.draw(d, `q:${aspect}`, QUESTIONS[aspect].length, rng);
      const variant = rng.int(ANSWER_VARIANTS);
      const chosen = answer(d, aspect, variant);
      const rejected =
        kind === 'wrong_fact' ? answer(doctored(d, aspect, distractors, rng), aspect, variant)
        : kind === 'unsafe' ? unsafeAnswer(d, rng)
        : fill(pick(rng, EVASIVE), { n: d.name });
      let prompt = question(aspect, t, spokenName(d, rng));
      let history: [string, string][] | undefined;
      let template = `q:${aspect}#${t}`;
      if (aspect !== 'overview' && rng.next() < opts.multiTurnShare) {
        history = [askAbout(d, 'overview', place, splitter, rng)];
        const f = splitter.choose(`followup:${aspect}`, FOLLOWUPS[aspect].length, place, rng);
        prompt = FOLLOWUPS[aspect][f];
        template = `followup:${aspect}#${f}`;
      }
      out.add(place, {
        prompt, chosen, rejected, rejected_kind: kind, ...(history ? { history } : {}), disease: d.name, template,
      });
    }
  }
  return out.finish('pref', rng);
}
