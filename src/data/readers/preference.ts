import type { ChatMessage } from '../records.js';
import { describe } from '../records.js';
import { asText, Fields, hasAny, historyMessages, isObj, RecordError, rowFormat, toMessages, withSystem } from './format.js';

const CHOSEN = ['chosen', 'response_chosen'];
const REJECTED = ['rejected', 'response_rejected'];

/** A chosen/rejected answer: a string, or a message list whose last assistant turn is the answer. */
function answerOf(v: unknown, field: string): { text: string; context?: ChatMessage[] } {
  if (Array.isArray(v) && v.length && isObj(v[0])) {
    const msgs = toMessages(v, field);
    const last = msgs[msgs.length - 1];
    if (last.role !== 'assistant') throw new RecordError(`${field}: the last message must be the assistant's answer`);
    return { text: last.content, context: msgs.slice(0, -1) };
  }
  return { text: asText(v, field) };
}

/**
 * Preference pairs: {conversations (ShareGPT, ending on the human turn) | prompt | question,
 * chosen | response_chosen, rejected | response_rejected, history?, system?}. A prompt may be
 * a string or a message list (the project's own records); chosen/rejected may be whole
 * conversations, whose shared head is then the prompt.
 */
export const preferenceFormat = rowFormat(
  'preference',
  'preference JSONL: {conversations|prompt|question, chosen|response_chosen, rejected|response_rejected}',
  (o) => hasAny(o, CHOSEN) && hasAny(o, REJECTED),
  (obj, ctx, line) => {
    const f = new Fields(obj);
    const chosen = answerOf(f.get(CHOSEN), f.key(CHOSEN)!);
    const rejected = answerOf(f.get(REJECTED), f.key(REJECTED)!);
    const system = f.optionalText(['system']);
    const history = historyMessages(f.get(['history']));
    const convKey = f.key(['conversations']);
    const promptKey = f.key(['prompt', 'question', 'instruction']);
    let prompt: ChatMessage[];
    if (convKey !== undefined) {
      prompt = toMessages(obj[convKey], convKey);
    } else if (promptKey !== undefined) {
      const p = obj[promptKey];
      prompt = Array.isArray(p) ? toMessages(p, promptKey) : [{ role: 'user', content: asText(p, promptKey) }];
      const input = f.optionalText(['input']);
      if (input && prompt.length === 1) prompt[0].content += `\n${input}`;
    } else if (chosen.context?.length) {
      prompt = chosen.context;
    } else {
      throw new RecordError(
        `missing prompt: expected conversations, prompt or question (keys: ${Object.keys(obj).join(', ') || describe(obj)})`,
      );
    }
    // a system turn inside the prompt list stays first; a separate `system` field goes in front
    const hasSystem = prompt[0]?.role === 'system';
    const head = hasSystem ? [prompt[0]] : [];
    const rest = hasSystem ? prompt.slice(1) : prompt;
    prompt = [...(hasSystem ? head : withSystem(system, [])), ...history, ...rest];
    return {
      kind: 'preference',
      record: { ...f.header(ctx, line), prompt, chosen: chosen.text, rejected: rejected.text },
    };
  },
);
