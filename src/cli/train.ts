import type * as z from 'zod';
import { setThreads } from '../engine/native.js';
import { commandList, dispatch, parse, UsageError, type Command } from '../io/argv.js';
import { givenValues, helpLines, optionFields, parseGiven, parseOptions, type OptionField } from '../io/schema-options.js';
import { ContextSchema } from '../train/stages/common.js';
import { STAGES, type Stage } from '../train/stages/index.js';

/**
 * `chimed train STAGE`: the stage's flags are generated from its schemas: the inputs it
 * reads, its settings (the run config's stage keys, same names and defaults) and the run
 * context (--out, --seed, --threads).
 */
function stageCommand(st: Stage): Command {
  const sections: [string, z.ZodObject, OptionField[]][] = [
    ['Inputs', st.inputs, optionFields(st.inputs)],
    [`Settings (the run config's \`${st.name}\` stage keys, snake_case)`, st.config, optionFields(st.config)],
    ['Run', ContextSchema, optionFields(ContextSchema)],
  ];
  const usage = [`chimed train ${st.name} [options]`, st.about, ...sections.map(([title, , fields]) => `${title}:\n${helpLines(fields).join('\n')}`)].join('\n\n');
  return {
    summary: st.summary,
    async run(argv) {
      const a = parse(argv, Object.assign({}, ...sections.map(([, , fields]) => parseOptions(fields))), usage);
      if (a.help) { process.stdout.write(`${usage}\n`); return 0; }
      if (a.positionals.length) throw new UsageError(`unexpected argument "${a.positionals[0]}"\n\n${usage}`);
      const [inputs, config, context] = sections.map(([, schema, fields]) => parseGiven(schema, fields, givenValues(fields, a), usage));
      const ctx = context as z.output<typeof ContextSchema>;
      if (ctx.threads > 0) setThreads(ctx.threads);
      await st.run(config, { ...inputs, runDir: ctx.out, seed: ctx.seed });
      return 0;
    },
  };
}

const COMMANDS: Record<string, Command> = Object.fromEntries(Object.values(STAGES).map((st) => [st.name, stageCommand(st as Stage)]));

export function trainCommand(argv: string[]): Promise<number> {
  return dispatch(argv, COMMANDS, `chimed train STAGE [options]   (STAGE --help for its options)\n\n${commandList(COMMANDS)}`, 'training stage');
}
