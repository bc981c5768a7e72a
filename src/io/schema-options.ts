// Command-line options generated from a zod object schema, so a setting has one spelling,
// one default and one description: `--kebab-case` flags from snake_case keys, help lines
// from the descriptions, values parsed into the schema's types and validated by the schema
// (errors name the flag). A field may rename its flag with `.meta({ flag })` and name its
// value in the help with `.meta({ arg })`.
//
//   boolean            --key (a default of true gives --no-key)
//   number / integer   --key X (a nullable number is null unless given)
//   string / enum      --key S
//   list of strings    --key A,B,C (a list or a named string, e.g. all-linear: --key all-linear)
//   {object}           --key V1:V2 in the object's key order (rope_scaling: --rope-scaling linear:2)
//   false | {object}   an optional feature: --key / --no-key, and --key-FIELD for its fields
//                      (giving one turns the feature on)
import * as z from 'zod';
import { UsageError, type Options, type Parsed } from './argv.js';

type Json = Record<string, unknown>;

export interface OptionField {
  /** Path of the value in the parsed object, e.g. ['lora', 'r']. */
  path: string[];
  flag: string;
  kind: 'boolean' | 'number' | 'integer' | 'string' | 'list' | 'feature' | 'tuple';
  values?: string[];
  required: boolean;
  default?: unknown;
  description: string;
  /** The value's name in the help (N, X, FILE, ...). */
  arg: string;
  /** A feature's own fields. */
  fields?: OptionField[];
  /** A list's named alternatives (all-linear); a tuple's parts, in order. */
  names?: string[];
  parts?: { key: string; numeric: boolean }[];
}

const kebab = (key: string) => key.replace(/_/g, '-');

function fieldsOfJson(j: Json, parent: OptionField | null): OptionField[] {
  const props = (j.properties ?? {}) as Record<string, Json>;
  const required = (j.required ?? []) as string[];
  return Object.entries(props).map(([key, p]) => {
    const flag = typeof p.flag === 'string' ? p.flag : parent ? `${parent.flag}-${kebab(key)}` : kebab(key);
    const base = {
      path: [...(parent?.path ?? []), key],
      flag,
      required: required.includes(key),
      default: p.default,
      description: String(p.description ?? ''),
    };
    const anyOf = (p.anyOf ?? []) as Json[];
    const object = anyOf.find((x) => x.type === 'object');
    if (object && anyOf.some((x) => x.const === false)) {
      const f: OptionField = { ...base, kind: 'feature', arg: '' };
      f.fields = fieldsOfJson(object, f);
      return f;
    }
    const types = ([] as unknown[]).concat(p.type ?? anyOf.map((x) => x.type)).filter((t) => t !== 'null');
    const t = String(types[0] ?? 'string');
    if (t === 'boolean') return { ...base, kind: 'boolean', arg: '' };
    if (types.includes('array')) {
      const names = anyOf.filter((x) => typeof x.const === 'string').map((x) => String(x.const));
      return { ...base, kind: 'list', names, arg: [typeof p.arg === 'string' ? `${p.arg}[,${p.arg}...]` : 'A,B,...', ...names].join('|') };
    }
    if (t === 'object') {
      const props = Object.entries((p.properties ?? {}) as Record<string, Json>);
      const parts = props.map(([key, q]) => ({ key, numeric: q.type === 'number' || q.type === 'integer' }));
      return { ...base, kind: 'tuple', parts, arg: typeof p.arg === 'string' ? p.arg : props.map(([k]) => k.toUpperCase()).join(':') };
    }
    if (t === 'number' || t === 'integer')
      return { ...base, kind: t, arg: typeof p.arg === 'string' ? p.arg : t === 'integer' ? 'N' : 'X' };
    const values = Array.isArray(p.enum) ? p.enum.map(String) : undefined;
    return { ...base, kind: 'string', values, arg: typeof p.arg === 'string' ? p.arg : values ? values.join('|') : 'S' };
  });
}

/** The option fields of an object schema. */
export function optionFields(schema: z.ZodType): OptionField[] {
  return fieldsOfJson(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json, null);
}

/** A default as the help and the docs show it: 2e-5, 0.05, a,b, off, on. */
export function formatDefault(v: unknown): string {
  if (v === false) return 'off';
  if (v === true) return 'on';
  if (v === null) return 'none';
  if (typeof v === 'number') return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential() : String(v);
  if (Array.isArray(v)) return v.join(',');
  if (typeof v === 'object') return 'on';
  return String(v);
}

const negates = (f: OptionField) => f.kind === 'feature' || (f.kind === 'boolean' && f.default === true);

/** The flag spelling(s) of a field: `--lora / --no-lora`, `--lr X`. */
export function flagSpelling(f: OptionField): string {
  if (f.kind === 'boolean') return f.default === true ? `--no-${f.flag}` : `--${f.flag}`;
  if (f.kind === 'feature') return `--${f.flag} / --no-${f.flag}`;
  return `--${f.flag} ${f.arg}`;
}

const flat = (fields: OptionField[]): OptionField[] => fields.flatMap((f) => [f, ...flat(f.fields ?? [])]);

/** parseArgs options for the fields. */
export function parseOptions(fields: OptionField[]): Options {
  const out: Options = {};
  for (const f of flat(fields)) {
    if (f.kind === 'boolean' || f.kind === 'feature') {
      if (f.kind === 'feature' || f.default !== true) out[f.flag] = { type: 'boolean' };
      if (negates(f)) out[`no-${f.flag}`] = { type: 'boolean' };
    } else out[f.flag] = { type: 'string' };
  }
  return out;
}

/** Help lines: flag, description, default (shown once, here). */
export function helpLines(fields: OptionField[], indent = '  '): string[] {
  const rows = flat(fields).map((f) => {
    const def =
      f.default !== undefined && f.kind !== 'boolean' ? ` (default ${formatDefault(f.default)})` : f.required ? ' (required)' : '';
    return [flagSpelling(f), `${f.description}${def}`];
  });
  const w = Math.min(28, Math.max(...rows.map((r) => r[0].length)) + 2);
  return rows.map(([a, b]) => (a.length + 2 > w ? `${indent}${a}\n${indent}${' '.repeat(w)}${b}` : `${indent}${a.padEnd(w)}${b}`));
}

function valueOf(f: OptionField, a: Parsed): unknown {
  const v = a.str(f.flag);
  if (v === undefined) return undefined;
  if (f.kind === 'list')
    return f.names?.includes(v.trim())
      ? v.trim()
      : v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
  if (f.kind === 'tuple') {
    const parts = f.parts ?? [];
    const vs = v.split(':').map((s) => s.trim());
    if (vs.length !== parts.length || vs.some((s, i) => s === '' || (parts[i].numeric && !Number.isFinite(Number(s)))))
      throw new UsageError(`--${f.flag}: expected ${f.arg}, got "${v}"`);
    return Object.fromEntries(parts.map((p, i) => [p.key, p.numeric ? Number(vs[i]) : vs[i]]));
  }
  if (f.kind === 'number' || f.kind === 'integer') {
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x) || (f.kind === 'integer' && !Number.isInteger(x))) {
      throw new UsageError(`--${f.flag}: expected ${f.kind === 'integer' ? 'an integer' : 'a number'}, got "${v}"`);
    }
    return x;
  }
  return v;
}

/** The values given on the command line, shaped like the schema's input (absent ones left out). */
export function givenValues(fields: OptionField[], a: Parsed): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const key = f.path.at(-1)!;
    if (f.kind === 'feature') {
      const inner = givenValues(f.fields ?? [], a);
      const on = a.flag(f.flag) || Object.keys(inner).length > 0;
      if (a.flag(`no-${f.flag}`)) {
        if (on) throw new UsageError(`--no-${f.flag} cannot go with --${f.flag} or its settings`);
        out[key] = false;
      } else if (on) out[key] = inner;
    } else if (f.kind === 'boolean') {
      if (a.flag(f.flag)) out[key] = true;
      if (a.flag(`no-${f.flag}`)) out[key] = false;
    } else {
      const v = valueOf(f, a);
      if (v !== undefined) out[key] = v;
    }
  }
  return out;
}

/**
 * Parses the given values with the schema: defaults filled in, every problem a usage error
 * naming its flag.
 */
export function parseGiven<S extends z.ZodType>(schema: S, fields: OptionField[], raw: unknown, usage: string): z.output<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const byPath = new Map(flat(fields).map((f) => [f.path.join('.'), f]));
  const msg = r.error.issues
    .map((i) => {
      const keys = i.path.map(String);
      // the flag of the longest path prefix, the rest named after it (--rope-scaling factor)
      let n = keys.length;
      while (n > 0 && !byPath.has(keys.slice(0, n).join('.'))) n--;
      const f = byPath.get(keys.slice(0, n).join('.'));
      if (f?.required && n === keys.length && i.code === 'invalid_type' && i.input === undefined) return `--${f.flag} is required`;
      const rest = keys.slice(n).join('.');
      return `${f ? `--${f.flag}${rest ? ` ${rest}` : ''}` : rest || 'options'}: ${i.message}`;
    })
    .join('\n');
  throw new UsageError(`${msg}\n\n${usage}`);
}
