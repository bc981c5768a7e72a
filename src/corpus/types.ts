// Record shapes the corpus generators emit. They are the normalised JSONL shapes the data
// importers read (see /shared/data/README.md), plus provenance fields the importers keep as
// meta: `disease` (the disease the record is about), `template` (family#index of the wording
// used) and, on held-out records, `heldout` (why the record is unseen by training).

/** unseen_disease: no train record mentions the disease; unseen_template: the disease is in
 *  training but this wording never is. */
export type HeldoutKind = 'unseen_disease' | 'unseen_template';

export interface Provenance {
  disease: string;
  template: string;
  heldout?: HeldoutKind;
}

export interface TextRecord extends Provenance {
  id: string;
  text: string;
}

/** One user turn and its answer; `history` holds earlier [user, assistant] turns. */
export interface QaRecord extends Provenance {
  id: string;
  prompt: string;
  response: string;
  history?: [string, string][];
}

export const REJECTED_KINDS = ['wrong_fact', 'unsafe', 'evasive'] as const;
export type RejectedKind = (typeof REJECTED_KINDS)[number];

export interface PreferenceRecord extends Provenance {
  id: string;
  prompt: string;
  chosen: string;
  rejected: string;
  rejected_kind: RejectedKind;
  history?: [string, string][];
}

export const MCQ_LETTERS = ['A', 'B', 'C', 'D'] as const;
export type McqLetter = (typeof MCQ_LETTERS)[number];

export interface McqRecord {
  id: string;
  question: string;
  options: Record<McqLetter, string>;
  answer: McqLetter;
  /** The department of the disease asked about; 5-shot exemplars are drawn per subject. */
  subject: string;
  disease: string;
  template: string;
}

/**
 * Entity types of the NER examples (English keys, Chinese meaning):
 * disease 疾病, symptom 症状, drug 药物, exam 检查, department 科室.
 */
export const NER_TYPES = ['disease', 'symptom', 'drug', 'exam', 'department'] as const;
export type NerType = (typeof NER_TYPES)[number];

/** `start`/`end` count code points, `end` exclusive. */
export interface NerSpan {
  start: number;
  end: number;
  type: NerType;
  text: string;
}

export interface NerRecord extends Provenance {
  id: string;
  text: string;
  entities: NerSpan[];
}

export interface Split<T> {
  train: T[];
  heldout: T[];
}
