// Token overlap of two texts, shared by the evaluation's ROUGE-L (eval/textgen.ts) and rejection
// sampling's judge (train/rejection.ts), which watches how far greedy answers move from the
// reference answers.

const CHAR_TOKEN = /[A-Za-z0-9]+|\S/gu;

/** Characters, with runs of Latin letters and digits kept as one token (the metrics' default). */
export function charTokens(text: string): string[] {
  return text.match(CHAR_TOKEN) ?? [];
}

/** Length of the longest common subsequence, with one DP row (O(|a|·|b|) time, O(|b|) memory). */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  const row = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    let diag = 0; // row[j-1] from the previous i
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = a[i - 1] === b[j - 1] ? diag + 1 : Math.max(up, row[j - 1]);
      diag = up;
    }
  }
  return row[b.length];
}
