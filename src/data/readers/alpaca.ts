import { Fields, hasAny, historyMessages, rowFormat, withSystem } from './format.js';

/** Alpaca: {instruction, input?, output, history?: [[q, a]], system?}; input follows the instruction. */
export const alpacaFormat = rowFormat(
  'alpaca',
  'Alpaca JSONL: {instruction, input, output, history}',
  (o) => hasAny(o, ['instruction']) && hasAny(o, ['output']),
  (obj, ctx, line) => {
    const f = new Fields(obj);
    const instruction = f.text(['instruction']);
    const input = f.optionalText(['input']);
    const output = f.text(['output']);
    const history = historyMessages(f.get(['history']));
    const system = f.optionalText(['system']);
    const user = input && input.trim() ? `${instruction}\n${input}` : instruction;
    return {
      kind: 'conversation',
      record: {
        ...f.header(ctx, line),
        messages: withSystem(system, [...history, { role: 'user', content: user }, { role: 'assistant', content: output }]),
      },
    };
  },
);
