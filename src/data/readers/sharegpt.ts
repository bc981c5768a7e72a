import { Fields, hasAny, rowFormat, toMessages, withSystem } from './format.js';

/** ShareGPT: {conversations: [{from: human|gpt|system, value}], system?}. */
export const sharegptFormat = rowFormat(
  'sharegpt',
  'ShareGPT JSONL: {conversations: [{from, value}]}',
  (o) => hasAny(o, ['conversations']) && !hasAny(o, ['chosen', 'response_chosen']),
  (obj, ctx, line) => {
    const f = new Fields(obj);
    const turns = toMessages(f.get(['conversations']), 'conversations');
    const system = f.optionalText(['system']);
    return { kind: 'conversation', record: { ...f.header(ctx, line), messages: withSystem(system, turns) } };
  },
);
