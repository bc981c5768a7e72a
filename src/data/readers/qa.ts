import type { ChatMessage } from '../records.js';
import { asText, Fields, findKey, hasAny, historyMessages, rowFormat, withSystem } from './format.js';

const PROMPT = ['prompt', 'question', 'ask', 'query'];
const RESPONSE = ['response', 'answer', 'output'];
// Doctor-patient sites (Toyhom's CSVs) put "无" (none) in the question body when the title
// already is the question.
const PLACEHOLDER = /^\s*(无|没有|none|null|n\/a)?\s*$/i;

/**
 * Question/answer rows: the normalised {prompt, response, history?} JSONL and doctor-patient
 * CSVs such as Toyhom's (department, title, ask, answer). A row without a response (an
 * evaluation prompt set) becomes a conversation that ends on the user turn.
 */
export const qaFormat = rowFormat(
  'qa',
  'question/answer rows: {prompt|question|ask, response|answer|output, history?, system?} (JSONL or CSV)',
  (o) => hasAny(o, PROMPT),
  (obj, ctx, line) => {
    const f = new Fields(obj);
    let prompt = f.text(PROMPT);
    const title = obj[findKey(obj, ['title']) ?? ''];
    if (typeof title === 'string' && title.trim() && PLACEHOLDER.test(prompt)) prompt = title; // title stays in meta
    const responseKey = f.key(RESPONSE);
    const response = responseKey === undefined ? null : obj[responseKey];
    const history = historyMessages(f.get(['history']));
    const system = f.optionalText(['system']);
    const turns: ChatMessage[] = [...history, { role: 'user', content: prompt }];
    // null means "no reference answer"; an empty string is bad data and fails validation
    if (response !== null && response !== undefined) turns.push({ role: 'assistant', content: asText(response, responseKey!) });
    return { kind: 'conversation', record: { ...f.header(ctx, line), messages: withSystem(system, turns) } };
  },
);
