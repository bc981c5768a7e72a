import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** node's parseArgs with errors phrased for users and typed numeric getters. */
export function parse(argv: string[], options: Options, usage: string) {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const str = (name: string): string | undefined => values[name] as string | undefined;
  const need = (name: string): string => {
    const v = str(name);
    if (v === undefined) throw new UsageError(`--${name} is required\n\n${usage}`);
    return v;
  };
  const num = (name: string, def?: number, check: (x: number) => boolean = Number.isFinite, what = 'a number'): number => {
    const v = str(name);
    if (v === undefined) {
      if (def === undefined) throw new UsageError(`--${name} is required\n\n${usage}`);
      return def;
    }
    const x = Number(v);
    if (v.trim() === '' || !check(x)) throw new UsageError(`--${name}: expected ${what}, got "${v}"`);
    return x;
  };
  const int = (name: string, def?: number) => num(name, def, (x) => Number.isInteger(x) && x > 0, 'a positive integer');
  const flag = (name: string): boolean => values[name] === true;
  const list = (name: string): string[] => (str(name) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return { help: values.help === true, positionals: parsed.positionals, str, need, num, int, flag, list };
}
