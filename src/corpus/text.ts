// Chinese list phrasing and template filling shared by every generator.

/** "A", "A和B", "A、B和C". */
export function listZh(items: readonly string[]): string {
  if (items.length <= 1) return items[0] ?? '';
  return `${items.slice(0, -1).join('、')}和${items[items.length - 1]}`;
}

/** "A", "A或B", "A、B或C". */
export function orZh(items: readonly string[]): string {
  if (items.length <= 1) return items[0] ?? '';
  return `${items.slice(0, -1).join('、')}或${items[items.length - 1]}`;
}

/** Replaces {key} placeholders; a placeholder without a value is a programming error. */
export function fill(template: string, vars: Readonly<Record<string, string>>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => {
    const v = vars[k];
    if (v === undefined) throw new Error(`template "${template}" needs {${k}}`);
    return v;
  });
}

/** Length in code points, the unit NER offsets count. */
export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}
