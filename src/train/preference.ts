import type { ChatMessage, ChatTemplate, TemplateTokenizer } from '../tokenizer/chat-template.js';
import type { TokenBatch } from '../model/llama.js';

/** One side of a pair: the whole conversation's ids and the [start, end) of the final answer. */
export interface EncodedResponse {
  ids: number[];
  start: number;
  end: number;
}

export interface PreferencePair {
  prompt: ChatMessage[];
  chosen: EncodedResponse;
  rejected: EncodedResponse;
}

/**
 * Encodes prompt + answer with the chat template; the prompt keeps its last maxSource tokens
 * and the answer its first maxTarget (its end-of-turn marker may be cut then).
 */
export function encodeResponse(
  tok: TemplateTokenizer,
  template: ChatTemplate,
  prompt: ChatMessage[],
  answer: string,
  maxSource: number,
  maxTarget: number,
): EncodedResponse {
  const enc = template.encodeConversation(tok, [...prompt, { role: 'assistant', content: answer }]);
  const [s, e] = enc.spans[enc.spans.length - 1];
  const from = Math.max(0, s - maxSource),
    to = Math.min(e, s + maxTarget);
  return { ids: enc.ids.slice(from, to), start: s - from, end: to - from };
}

/** Rows of a pair batch: chosen answers in rows [0, n), rejected in [n, 2n). */
export function collatePairs(pairs: PreferencePair[]) {
  return collateResponses([...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)]);
}

/**
 * Right-padded rows of encoded answers. `segment` maps each target position inside a final
 * answer to its row (-1 elsewhere), so segmentSum gives each answer's log-probability;
 * `last` is each row's last real token (where a reward model reads).
 */
export function collateResponses(rows: EncodedResponse[]): {
  batch: TokenBatch;
  targets: Int32Array;
  segment: Int32Array;
  last: Int32Array;
} {
  const B = rows.length,
    T = Math.max(...rows.map((r) => r.ids.length));
  const ids = new Int32Array(B * T),
    pos = new Int32Array(B * T),
    targets = new Int32Array(B * T).fill(-100);
  const segment = new Int32Array(B * T).fill(-1),
    last = new Int32Array(B);
  rows.forEach((r, b) => {
    last[b] = r.ids.length - 1;
    for (let t = 0; t < T; t++) {
      pos[b * T + t] = t;
      if (t < r.ids.length) ids[b * T + t] = r.ids[t];
      // position t predicts token t+1: answer tokens are start..end-1
      if (t + 1 >= r.start && t + 1 < r.end) {
        targets[b * T + t] = r.ids[t + 1];
        segment[b * T + t] = b;
      }
    }
  });
  return { batch: { ids, pos, B, T }, targets, segment, last };
}
