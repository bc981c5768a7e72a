import { describe } from '../records.js';
import { Fields, findKey, hasAny, isObj, RecordError, rowFormat, type Obj } from './format.js';

const LETTER = /^[A-Z]$/;

// numbers are fine as option text; anything else is left for the validator to name
const optionText = (t: unknown) => (typeof t === 'number' ? String(t) : (t as string));

function optionsOf(f: Fields): Record<string, string> {
  const v = f.get(['options', 'choices']);
  if (isObj(v)) {
    const out: Record<string, string> = {};
    for (const [k, t] of Object.entries(v)) out[k.trim().toUpperCase()] = optionText(t);
    return out;
  }
  if (Array.isArray(v)) return Object.fromEntries(v.map((t, i) => [String.fromCharCode(65 + i), optionText(t)]));
  if (v !== undefined) throw new RecordError(`options: expected an object or array, got ${describe(v)}`);
  // C-Eval / CMMLU CSV: one column per letter; an empty column means the item has fewer options
  const out: Record<string, string> = {};
  for (const k of Object.keys(f.obj)
    .filter((k) => LETTER.test(k))
    .sort()) {
    f.key([k]);
    const t = f.obj[k];
    if (typeof t === 'string' && t.trim()) out[k] = t.trim();
  }
  return out;
}

function answerOf(v: unknown): string {
  if (typeof v !== 'string') throw new RecordError(`answer: expected letters, got ${describe(v)}`);
  return v.toUpperCase().replace(/[\s,，、;；/]+/g, '');
}

const looksMcq = (o: Obj) =>
  hasAny(o, ['question']) &&
  hasAny(o, ['answer']) &&
  (hasAny(o, ['options', 'choices']) || (findKey(o, ['A']) !== undefined && findKey(o, ['B']) !== undefined));

/** Multiple choice: {question, options: {A: ..}, answer, subject?, explanation?} or CSV columns question,A,B,C,D,answer. */
export const mcqFormat = rowFormat(
  'mcq',
  'multiple choice: {question, options, answer} JSONL or CMMLU/C-Eval CSV (question,A,B,C,D,answer)',
  looksMcq,
  (obj, ctx, line) => {
    const f = new Fields(obj);
    f.key(['']); // CMMLU's unnamed row-number column
    const question = f.text(['question']);
    const options = optionsOf(f);
    const answer = answerOf(f.get(['answer']));
    const subject = f.optionalText(['subject']) ?? ctx.subject;
    const explanation = f.optionalText(['explanation', 'analysis']);
    return {
      kind: 'mcq',
      record: {
        ...f.header(ctx, line),
        question,
        options,
        answer,
        ...(subject ? { subject } : {}),
        ...(explanation ? { explanation } : {}),
      },
    };
  },
);
