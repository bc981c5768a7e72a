// What container readers (JSONL, JSON array, CSV, plain text) hand to format readers: parsed
// values with the line they start on, or a parse error for that line.

export type RawRow = { line: number; value: unknown; raw: string } | { line: number; error: string; raw: string };

export const isRowError = (r: RawRow): r is { line: number; error: string; raw: string } => 'error' in r;
