import type * as z from 'zod';
import { setThreads } from '../engine/native.js';
import { commandList, dispatch, parse, UsageError, type Command } from '../io/argv.js';
import { givenValues, helpLines, optionFields, parseGiven, parseOptions, type OptionField } from '../io/schema-options.js';
import { ContextSchema, warnStepsAndEpochs } from '../train/stages/common.js';
import { STAGES, type Stage } from '../train/stages/index.js';
import { runStageTracked } from '../train/stages/tracked.js';

/**
 * `chimed train STAGE`: the stage's flags are generated from its schemas: the inputs it
 * reads, its settings (the run config's stage keys, same names and defaults) and the run
 * context (--out, --seed, --threads).
 */
function sectionsOf(st: Stage): [string, z.ZodObject, OptionField[]][] {
  return [
    ['Inputs', st.inputs, optionFields(st.inputs)],
    [`Settings (the run config's \`${st.name}\` stage keys, snake_case)`, st.config, optionFields(st.config)],
    ['Run', ContextSchema, optionFields(ContextSchema)],
  ];
}

export function stageUsage(st: Stage): string {
  return [
    `chimed train ${st.name} [options]`,
    st.about,
    ...sectionsOf(st).map(([title, , fields]) => `${title}:\n${helpLines(fields).join('\n')}`),
  ].join('\n\n');
}

/** The command line of `chimed train STAGE` as the stage's inputs, settings and run context; null for --help. */
export function readStageArgv(st: Stage, argv: string[]) {
  const sections = sectionsOf(st);
  const usage = stageUsage(st);
  const a = parse(argv, Object.assign({}, ...sections.map(([, , fields]) => parseOptions(fields))), usage);
  if (a.help) return null;
  if (a.positionals.length) throw new UsageError(`unexpected argument "${a.positionals[0]}"\n\n${usage}`);
  const given = sections.map(([, , fields]) => givenValues(fields, a));
  warnStepsAndEpochs(given[1] as Record<string, unknown>, `train ${st.name}`, (k) => `--${k.replace(/_/g, '-')}`);
  const [inputs, settings, context] = sections.map(([, schema, fields], i) => parseGiven(schema, fields, given[i], usage));
  return { inputs, settings, context: context as z.output<typeof ContextSchema> };
}

function stageCommand(st: Stage): Command {
  return {
    summary: st.summary,
    async run(argv) {
      const r = readStageArgv(st, argv);
      if (!r) {
        process.stdout.write(`${stageUsage(st)}\n`);
        return 0;
      }
      if (r.context.threads > 0) setThreads(r.context.threads);
      await runStageTracked(st, r.settings, { ...r.inputs, runDir: r.context.out, seed: r.context.seed });
      return 0;
    },
  };
}

const COMMANDS: Record<string, Command> = Object.fromEntries(Object.values(STAGES).map((st) => [st.name, stageCommand(st as Stage)]));

export function trainCommand(argv: string[]): Promise<number> {
  return dispatch(
    argv,
    COMMANDS,
    `chimed train STAGE [options]   (STAGE --help for its options)\n\n${commandList(COMMANDS)}`,
    'training stage',
  );
}
