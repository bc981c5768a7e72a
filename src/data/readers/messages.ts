import { Fields, hasAny, rowFormat, toMessages } from './format.js';

/** OpenAI chat JSONL: {messages: [{role, content}]}; also the project's own Conversation records. */
export const messagesFormat = rowFormat(
  'messages',
  'OpenAI-style JSONL: {messages: [{role, content}]}',
  (o) => hasAny(o, ['messages']),
  (obj, ctx, line) => {
    const f = new Fields(obj);
    const messages = toMessages(f.get(['messages']), 'messages');
    return { kind: 'conversation', record: { ...f.header(ctx, line), messages } };
  },
);
