import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A mistake in how a command was called; the CLI prints it with the usage and exits 2. */
export class UsageError extends Error {}

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Parsed = ReturnType<typeof parse>;

/** node's parseArgs with errors phrased for users and typed getters. */
export function parse(argv: string[], options: Options, usage: string) {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
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
  /** A number that may be absent (undefined then). */
  const optNum = (name: string, check: (x: number) => boolean = Number.isFinite, what = 'a number'): number | undefined => {
    const v = str(name);
    if (v === undefined) return undefined;
    const x = Number(v);
    if (v.trim() === '' || !check(x)) throw new UsageError(`--${name}: expected ${what}, got "${v}"`);
    return x;
  };
  const num = (name: string, def?: number, check?: (x: number) => boolean, what?: string): number => {
    const x = optNum(name, check, what);
    if (x !== undefined) return x;
    if (def === undefined) throw new UsageError(`--${name} is required\n\n${usage}`);
    return def;
  };
  const int = (name: string, def?: number) => num(name, def, isPositiveInt, 'a positive integer');
  const flag = (name: string): boolean => values[name] === true;
  const list = (name: string): string[] =>
    (str(name) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  /** Every value of an option declared `multiple: true`. */
  const many = (name: string): string[] => (values[name] as string[] | undefined) ?? [];
  return { help: values.help === true, positionals: parsed.positionals, values, str, need, optNum, num, int, flag, list, many };
}

export const isPositiveInt = (x: number) => Number.isInteger(x) && x > 0;

export interface Command {
  summary: string;
  run: (argv: string[]) => Promise<number>;
}

/** `  name     summary` lines of a command table. */
export function commandList(commands: Record<string, Command>): string {
  const w = Math.max(...Object.keys(commands).map((n) => n.length)) + 2;
  return Object.entries(commands)
    .map(([n, c]) => `  ${n.padEnd(w)}${c.summary}`)
    .join('\n');
}

/**
 * Runs `SUBCOMMAND ...args` from a table, the one dispatch every command with subcommands
 * uses: `--help` prints the usage (exit 0), no subcommand prints it and exits 1, an unknown
 * one is a usage error (exit 2).
 */
export async function dispatch(argv: string[], commands: Record<string, Command>, usage: string, what = 'command'): Promise<number> {
  const [name, ...rest] = argv;
  const cmd = name !== undefined && Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (cmd) return cmd.run(rest);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage}\n`);
    return name === undefined ? 1 : 0;
  }
  throw new UsageError(`unknown ${what} "${name}"\n\n${usage}`);
}
