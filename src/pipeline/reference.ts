import * as z from 'zod';
import { BuildConfigSchema } from '../data/build-config.js';
import { flagSpelling, optionFields, type OptionField } from '../io/schema-options.js';
import { ContextSchema } from '../train/stages/common.js';
import { STAGES, type Stage } from '../train/stages/index.js';
import { RunConfigSchema } from './config.js';

type Json = { [k: string]: unknown };

/** A type in words: "number ≥ 0", "cosine | linear | constant", "object", ... */
function typeOf(s: Json): string {
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((e) => String(e)).join(' | ');
  if (Array.isArray(s.anyOf)) return (s.anyOf as Json[]).map(typeOf).join(' or ');
  if (Array.isArray(s.type)) return s.type.map((t) => typeOf({ ...s, type: t })).join(' or ');
  if (s.type === 'array') return `list of ${typeOf((s.items ?? {}) as Json)}`;
  const t = s.type === 'integer' ? 'integer' : String(s.type ?? 'any');
  if (t === 'null') return 'null';
  const lo =
    typeof s.minimum === 'number' && s.minimum > -1e15
      ? ` ≥ ${s.minimum}`
      : typeof s.exclusiveMinimum === 'number'
        ? ` > ${s.exclusiveMinimum}`
        : '';
  const hi =
    typeof s.maximum === 'number' && s.maximum < 1e15
      ? ` ≤ ${s.maximum}`
      : typeof s.exclusiveMaximum === 'number'
        ? ` < ${s.exclusiveMaximum}`
        : '';
  return t + lo + hi;
}

const cell = (text: unknown) =>
  String(text ?? '')
    .replace(/\|/g, '\\|')
    .replace(/\n/g, ' ');

/**
 * Table rows for the properties of a JSON schema, nested objects flattened to dotted keys;
 * with `flags`, a column with each key's command-line flag.
 */
function rows(s: Json, prefix: string, out: string[], flags?: Map<string, OptionField>): void {
  const props = (s.properties ?? {}) as Record<string, Json>;
  for (const [k, p] of Object.entries(props)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const def =
      p.default !== undefined ? `\`${JSON.stringify(p.default)}\`` : (s.required as string[] | undefined)?.includes(k) ? 'required' : '';
    const flag = flags ? [flags.get(key) ? `\`${flagSpelling(flags.get(key)!)}\`` : ''] : [];
    out.push(`| ${[`\`${key}\``, ...flag, typeOf(p), def, p.description].map(cell).join(' | ')} |`);
    const objects = [p, ...((p.anyOf ?? []) as Json[])].filter((x) => x.type === 'object' && x.properties);
    for (const o of objects) rows(o, key, out, flags);
    if (p.type === 'array' && (p.items as Json | undefined)?.properties) rows(p.items as Json, `${key}[]`, out, flags);
  }
}

const jsonSchema = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
const flat = (fields: OptionField[]): OptionField[] => fields.flatMap((f) => [f, ...flat(f.fields ?? [])]);
const flagMap = (schema: z.ZodObject) => new Map(flat(optionFields(schema)).map((f) => [f.path.join('.'), f]));

function table(schema: z.ZodType, title: string, intro: string): string {
  const out = [`## ${title}`, '', intro, '', '| key | type | default | meaning |', '|---|---|---|---|'];
  rows(jsonSchema(schema), '', out);
  return out.join('\n');
}

/** A stage's settings (YAML key and CLI flag side by side) and the inputs only the CLI / API name. */
function stageSection(st: Stage): string {
  const out = [
    `### \`${st.name}\`: ${st.summary}`,
    '',
    st.about.replace(/\n/g, ' '),
    '',
    '| key | `chimed train` flag | type | default | meaning |',
    '|---|---|---|---|---|',
  ];
  rows(jsonSchema(st.config), '', out, flagMap(st.config));
  out.push(
    '',
    `Inputs of \`chimed train ${st.name}\` (the pipeline supplies them from the run directory):`,
    '',
    '| flag | API key | type | meaning |',
    '|---|---|---|---|',
  );
  const props = (jsonSchema(st.inputs).properties ?? {}) as Record<string, Json>;
  for (const f of optionFields(st.inputs)) {
    const p = props[f.path[0]];
    out.push(
      `| ${[`\`${flagSpelling(f)}\``, `\`${f.path[0]}\``, typeOf(p), `${p.description ?? ''}${f.required ? ' (required)' : ''}`].map(cell).join(' | ')} |`,
    );
  }
  return out.join('\n');
}

/** docs/config.md, generated from the zod schemas (`chimed run --reference`). */
export function configReference(): string {
  const context = optionFields(ContextSchema).map(
    (f) => `\`${flagSpelling(f)}\` (${f.description}${f.default !== undefined ? `; default ${JSON.stringify(f.default)}` : ''})`,
  );
  return [
    '# Configuration reference',
    '',
    'Generated from the schemas by `chimed run --reference`; do not edit by hand.',
    '',
    table(RunConfigSchema, '`chimed run CONFIG.yaml`', 'Unknown keys are errors. Defaults follow the papers (ChiMed-GPT, Qilin-Med).'),
    '',
    '## Stages',
    '',
    'Each entry of `stages` is one stage: `type` and its settings. The same settings, with the same defaults, are the ' +
      'flags of `chimed train STAGE` (snake_case keys become kebab-case flags) and the `config` of the stage functions ' +
      `in the package API (\`runPt\`, \`runSft\`, \`runRm\`, \`runRs\`, \`runDpo\`). Every \`chimed train\` command also takes ${context.join(', ')}; ` +
      'in a run config these are the run directory, `seed` and `threads`.',
    '',
    ...Object.values(STAGES).flatMap((st) => [stageSection(st as Stage), '']),
    table(
      BuildConfigSchema,
      '`data` (also `chimed data build CONFIG`)',
      'The data section of a run config, and the config of `chimed data build`.',
    ),
    '',
  ].join('\n');
}
