import { Fields, hasAny, rowFormat } from './format.js';

/** Plain-text records: {text, id?, title?}. */
export const documentFormat = rowFormat(
  'document',
  'text JSONL: {text}',
  (o) => hasAny(o, ['text', 'content']),
  (obj, ctx, line) => {
    const f = new Fields(obj);
    const text = f.text(['text', 'content']); // read fields before header() collects the rest into meta
    return { kind: 'document', record: { ...f.header(ctx, line), text } };
  },
);
