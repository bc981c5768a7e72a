import type { Message } from '../records.js';
import { asText, Fields, hasAny, historyMessages, rowFormat, withSystem } from './format.js';

const PROMPT = ['prompt', 'question', 'ask', 'query'];
const RESPONSE = ['response', 'answer', 'output'];

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
    const prompt = f.text(PROMPT);
    const responseKey = f.key(RESPONSE);
    const response = responseKey === undefined ? null : obj[responseKey];
    const history = historyMessages(f.get(['history']));
    const system = f.optionalText(['system']);
    const turns: Message[] = [...history, { role: 'user', content: prompt }];
    // null means "no reference answer"; an empty string is bad data and fails validation
    if (response !== null && response !== undefined) turns.push({ role: 'assistant', content: asText(response, responseKey!) });
    return { kind: 'conversation', record: { ...f.header(ctx, line), messages: withSystem(system, turns) } };
  },
);
