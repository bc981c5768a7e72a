import * as z from 'zod';
import { BuildConfigSchema } from '../data/build-config.js';
import { RunConfigSchema } from './config.js';

type Json = { [k: string]: unknown };

/** A type in words: "number ≥ 0", "cosine | linear | constant", "object", ... */
function typeOf(s: Json): string {
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((e) => String(e)).join(' \\| ');
  if (Array.isArray(s.anyOf)) return (s.anyOf as Json[]).map(typeOf).join(' or ');
  if (s.type === 'array') return `list of ${typeOf((s.items ?? {}) as Json)}`;
  const t = s.type === 'integer' ? 'integer' : String(s.type ?? 'any');
  const lo = typeof s.minimum === 'number' && s.minimum > -1e15 ? ` ≥ ${s.minimum}` : typeof s.exclusiveMinimum === 'number' ? ` > ${s.exclusiveMinimum}` : '';
  const hi = typeof s.maximum === 'number' && s.maximum < 1e15 ? ` ≤ ${s.maximum}` : typeof s.exclusiveMaximum === 'number' ? ` < ${s.exclusiveMaximum}` : '';
  return t + lo + hi;
}

function rows(s: Json, prefix: string, out: string[]): void {
  const props = (s.properties ?? {}) as Record<string, Json>;
  for (const [k, p] of Object.entries(props)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const def = p.default !== undefined ? `\`${JSON.stringify(p.default)}\`` : (s.required as string[] | undefined)?.includes(k) ? 'required' : '';
    out.push(`| \`${key}\` | ${typeOf(p)} | ${def} | ${String(p.description ?? '').replace(/\|/g, '\\|')} |`);
    const objects = [p, ...((p.anyOf ?? []) as Json[])].filter((x) => x.type === 'object' && x.properties);
    for (const o of objects) rows(o, key, out);
    if (p.type === 'array' && (p.items as Json | undefined)?.properties) rows(p.items as Json, `${key}[]`, out);
  }
}

function table(schema: z.ZodType, title: string, intro: string): string {
  const j = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
  const out = [`## ${title}`, '', intro, '', '| key | type | default | meaning |', '|---|---|---|---|'];
  rows(j, '', out);
  // the stages are a union by `type` (a discriminated union: JSON Schema's oneOf): one table per stage
  const items = (j.properties as Record<string, Json>).stages?.items as Json | undefined;
  const stages = (items?.oneOf ?? items?.anyOf) as Json[] | undefined;
  for (const st of stages ?? []) {
    const type = ((st.properties as Record<string, Json>).type.const as string);
    out.push('', `### stage \`${type}\``, '', '| key | type | default | meaning |', '|---|---|---|---|');
    rows(st, '', out);
  }
  return out.join('\n');
}

/** docs/config.md, generated from the zod schemas (`chimed run --reference`). */
export function configReference(): string {
  return [
    '# Configuration reference',
    '',
    'Generated from the schemas by `chimed run --reference`; do not edit by hand.',
    '',
    table(RunConfigSchema, '`chimed run CONFIG.yaml`', 'Unknown keys are errors. Defaults follow the papers (ChiMed-GPT, Qilin-Med).'),
    '',
    table(BuildConfigSchema, '`data` (also `chimed data build CONFIG`)', 'The data section of a run config, and the config of `chimed data build`.'),
    '',
  ].join('\n');
}
