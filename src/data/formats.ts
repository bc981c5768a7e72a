// The format registry and auto-detection. Detection order matters: a format whose keys are a
// superset of another's comes first (preference rows also have `prompt`, MCQ rows also have
// `question`, NER rows also have `text`).
import { alpacaFormat } from './readers/alpaca.js';
import { documentFormat } from './readers/document.js';
import type { Format, FormatName, Obj } from './readers/format.js';
import { FORMAT_NAMES, isObj } from './readers/format.js';
import { mcqFormat } from './readers/mcq.js';
import { messagesFormat } from './readers/messages.js';
import { ccksFormat, cmeeeFormat, nerJsonFormat } from './readers/ner.js';
import { preferenceFormat } from './readers/preference.js';
import { qaFormat } from './readers/qa.js';
import { sharegptFormat } from './readers/sharegpt.js';
import { textFormat } from './readers/text.js';
import { DataError } from './errors.js';
import { kgFormat } from './kg.js';

export const FORMATS: readonly Format[] = [
  preferenceFormat,
  kgFormat,
  mcqFormat,
  cmeeeFormat,
  ccksFormat,
  nerJsonFormat,
  sharegptFormat,
  messagesFormat,
  alpacaFormat,
  qaFormat,
  documentFormat,
  textFormat,
];

export function getFormat(name: string): Format {
  const f = FORMATS.find((x) => x.name === name);
  if (!f) throw new DataError(`unknown format "${name}"; expected one of ${FORMAT_NAMES.join(', ')}`);
  return f;
}

/** The first format (in detection order) that most of the sampled rows match. */
export function detectFormat(sample: unknown[]): Format | undefined {
  const objs = sample.filter(isObj) as Obj[];
  if (!objs.length) return undefined;
  return FORMATS.find((f) => f.matches && objs.filter((o) => f.matches!(o)).length * 2 > objs.length);
}

export type { FormatName };
