// Finds added tokens (<|im_start|>, ...) in text the way the Rust crate's AddedVocabulary
// does: leftmost-longest, non-overlapping matches; lstrip/rstrip swallow the whitespace
// beside a match; a single_word token only counts where no word character touches it.

import { escapeLiteral } from './regex.js';

export interface AddedTokenRule {
  id: number;
  content: string;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

const WHITE = /\p{White_Space}/u;
const WORD = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}]/u;

export class AddedTokenMatcher {
  private readonly re: RegExp;
  private readonly byContent = new Map<string, AddedTokenRule>();
  private readonly plain: boolean;

  constructor(rules: readonly AddedTokenRule[]) {
    for (const r of rules) this.byContent.set(r.content, r);
    // Longest first, so the alternation picks the longest token at the leftmost position.
    const contents = [...this.byContent.keys()].sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
    this.re = new RegExp(contents.map(escapeLiteral).join('|'), 'gu');
    this.plain = rules.every((r) => !r.lstrip && !r.rstrip && !r.singleWord);
  }

  /** Calls onText for each stretch between tokens (never empty) and onToken for each token. */
  split(text: string, onText: (s: string) => void, onToken: (id: number) => void): void {
    const re = this.re;
    re.lastIndex = 0;
    let textStart = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const rule = this.byContent.get(m[0])!;
      let start = m.index;
      let end = start + m[0].length;
      if (!this.plain) {
        if (rule.singleWord && (WORD.test(text[start - 1] ?? '') || WORD.test(text[end] ?? ''))) continue;
        if (rule.lstrip) while (start > textStart && WHITE.test(text[start - 1])) start--;
        if (rule.rstrip) while (end < text.length && WHITE.test(text[end])) end++;
        re.lastIndex = end;
      }
      if (start > textStart) onText(text.slice(textStart, start));
      onToken(rule.id);
      textStart = end;
    }
    if (textStart < text.length) onText(textStart === 0 ? text : text.slice(textStart));
  }
}
