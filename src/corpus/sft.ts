// SFT conversations: single-turn questions about one aspect of a disease, symptom-led triage
// questions, and 2-3 turn dialogues whose later turns refer back to the disease.
import type { Rng } from '../engine/rng.js';
import {
  ANSWER_VARIANTS, answer, aspectsOf, FOLLOWUPS, presentingSymptoms, question, QUESTIONS, TRIAGE_QUESTIONS,
  triageAnswer, type Aspect,
} from './aspects.js';
import type { Disease } from './knowledge.js';
import { pick, sample } from './sampling.js';
import type { Placement, Splitter } from './split.js';
import { SplitCollector } from './split.js';
import { fill, listZh } from './text.js';
import type { QaRecord, Split } from './types.js';

type Turn = [string, string];

/** The name a patient uses: mostly the disease's name, sometimes a common alias. */
export function spokenName(d: Disease, rng: Rng): string {
  return d.aliases?.length && rng.next() < 0.3 ? pick(rng, d.aliases) : d.name;
}

/** The question about `aspect` in wording t, and its sound answer. */
function qaTurn(d: Disease, aspect: Aspect, t: number, rng: Rng): Turn {
  return [question(aspect, t, spokenName(d, rng)), answer(d, aspect, rng.int(ANSWER_VARIANTS))];
}

/** A question about `aspect`, its wording drawn from the templates `place` allows. */
export function askAbout(d: Disease, aspect: Aspect, place: Placement, splitter: Splitter, rng: Rng): Turn {
  return qaTurn(d, aspect, splitter.choose(`q:${aspect}`, QUESTIONS[aspect].length, place, rng), rng);
}

export function followUp(d: Disease, aspect: Aspect, place: Placement, splitter: Splitter, rng: Rng): Turn {
  const t = splitter.choose(`followup:${aspect}`, FOLLOWUPS[aspect].length, place, rng);
  return [FOLLOWUPS[aspect][t], answer(d, aspect, rng.int(ANSWER_VARIANTS))];
}

function triage(d: Disease, t: number, rng: Rng): Turn | undefined {
  const presenting = presentingSymptoms(d);
  if (presenting.length < 2) return undefined;
  const shown = sample(rng, presenting, 2 + rng.int(2));
  return [fill(TRIAGE_QUESTIONS[t], { s: listZh(shown) }), triageAnswer(d, shown)];
}

/** Dialogue scenarios: the opening (an aspect question or a complaint), then follow-ups. */
const SCENARIOS: readonly (readonly (Aspect | 'triage')[])[] = [
  ['triage', 'treatments', 'precautions'],
  ['overview', 'drugs', 'urgent'],
  ['department', 'examinations'],
  ['causes', 'precautions'],
  ['symptoms', 'department', 'treatments'],
];

function dialogue(d: Disease, steps: readonly (Aspect | 'triage')[], place: Placement, splitter: Splitter, rng: Rng): Turn[] | undefined {
  const available = new Set<string>(aspectsOf(d));
  const turns: Turn[] = [];
  for (const [i, step] of steps.entries()) {
    if (step === 'triage') {
      const t = triage(d, splitter.choose('triage', TRIAGE_QUESTIONS.length, place, rng), rng);
      if (!t) return undefined;
      turns.push(t);
    } else {
      const aspect = available.has(step) ? step : 'precautions';
      turns.push(i === 0 ? askAbout(d, aspect, place, splitter, rng) : followUp(d, aspect, place, splitter, rng));
    }
  }
  return turns;
}

function record(d: Disease, turns: Turn[], template: string): Omit<QaRecord, 'id' | 'heldout'> {
  const [prompt, response] = turns[turns.length - 1];
  const history = turns.slice(0, -1);
  return { prompt, response, ...(history.length ? { history } : {}), disease: d.name, template };
}

export interface SftOptions {
  /** Symptom-led triage questions per disease. */
  triagePerDisease: number;
}

export function generateSft(diseases: readonly Disease[], splitter: Splitter, rng: Rng, opts: SftOptions): Split<QaRecord> {
  const out = new SplitCollector<QaRecord>();
  for (const d of diseases) {
    for (const aspect of aspectsOf(d)) {
      const { t, place } = splitter.draw(d, `q:${aspect}`, QUESTIONS[aspect].length, rng);
      out.add(place, record(d, [qaTurn(d, aspect, t, rng)], `q:${aspect}#${t}`));
    }
    for (let i = 0; i < opts.triagePerDisease; i++) {
      const { t, place } = splitter.draw(d, 'triage', TRIAGE_QUESTIONS.length, rng);
      const turn = triage(d, t, rng);
      if (turn) out.add(place, record(d, [turn], `triage#${t}`));
    }
    for (const { t, place } of splitter.each(d, 'dialogue', SCENARIOS.length)) {
      const turns = dialogue(d, SCENARIOS[t], place, splitter, rng);
      if (turns) out.add(place, record(d, turns, `dialogue#${t}`));
    }
  }
  return out.finish('sft', rng);
}
