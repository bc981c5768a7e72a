// Case studies, as the papers argue from them (Qilin-Med §4.4): a few held-out items with
// every system's answer side by side and the reference. Items are drawn by seed, taking the
// evaluation files in turn (dialogue, MCQ, NER) so that each kind is shown.
import { Rng } from '../engine/rng.js';
import type { ChatMessage } from '../tokenizer/chat-template.js';
import { itemsOf, type EvalItem, type McqEvalItem } from './items.js';

export type CaseKind = 'gen' | 'mcq' | 'ner';
const KINDS: readonly CaseKind[] = ['gen', 'mcq', 'ner'];

export interface CaseAnswer {
  system: string;
  answer: string;
  /** MCQ: whether the chosen option is the gold one; NER: strict span counts. */
  correct?: boolean;
  note?: string;
}

export interface CaseStudy {
  kind: CaseKind;
  id: string;
  /** What was asked, as text: the conversation, the question with its options, the text to tag. */
  prompt: string;
  reference: string;
  answers: CaseAnswer[];
}

export const renderConversation = (msgs: ChatMessage[]) => msgs.map((m) => `${m.role}: ${m.content}`).join('\n');

function option(it: McqEvalItem, letters: string | null): string {
  if (letters === null) return '(no option read)';
  return [...letters].map((l) => `${l}. ${it.options[l] ?? '?'}`).join('；');
}

function answerOf(it: EvalItem): Omit<CaseAnswer, 'system'> {
  switch (it.eval) {
    case 'gen':
      return { answer: it.output };
    case 'mcq':
      return { answer: option(it, it.pred) + (it.output !== undefined ? `\n(${it.output.trim()})` : ''), correct: it.pred === it.gold };
    case 'ner':
      return { answer: it.output.trim(), note: `tp ${it.tp}, fp ${it.fp}, fn ${it.fn}` };
    default:
      throw new Error(`no case study for ${it.eval} items`);
  }
}

function question(it: EvalItem): { prompt: string; reference: string } {
  switch (it.eval) {
    case 'gen':
      return { prompt: renderConversation(it.prompt), reference: it.reference };
    case 'mcq':
      return {
        prompt: `${it.question}\n${Object.keys(it.options)
          .sort()
          .map((l) => `${l}. ${it.options[l]}`)
          .join('\n')}`,
        reference: option(it, it.gold),
      };
    case 'ner':
      return { prompt: it.text, reference: it.gold };
    default:
      throw new Error(`no case study for ${it.eval} items`);
  }
}

/** `n` items drawn by `seed` across the kinds present, with each system's answer (systems in order). */
export function pickCases(systems: readonly { name: string; items: readonly EvalItem[] }[], n: number, seed: number): CaseStudy[] {
  const pools = KINDS.map((kind) => {
    const byId = new Map<string, EvalItem>();
    for (const s of systems) for (const it of itemsOf(s.items, kind)) if (!byId.has(it.id)) byId.set(it.id, it);
    const rng = Rng.derive(seed, KINDS.indexOf(kind));
    return { kind, order: rng.shuffle([...byId.keys()]), first: byId };
  }).filter((p) => p.order.length);
  const cases: CaseStudy[] = [];
  for (let round = 0; cases.length < n && pools.some((p) => p.order.length > round); round++) {
    for (const p of pools) {
      if (cases.length >= n || round >= p.order.length) continue;
      const id = p.order[round];
      const answers = systems.flatMap((s) => {
        const it = itemsOf(s.items, p.kind).find((x) => x.id === id);
        return it ? [{ system: s.name, ...answerOf(it) }] : [];
      });
      cases.push({ kind: p.kind, id, ...question(p.first.get(id)!), answers });
    }
  }
  return cases;
}
