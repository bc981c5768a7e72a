import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as z from 'zod';
import { readStageArgv, stageUsage } from '../src/cli/train.js';
import { UsageError } from '../src/io/argv.js';
import { optionFields, type OptionField } from '../src/io/schema-options.js';
import { ContextSchema } from '../src/train/stages/common.js';
import { STAGES, type Stage } from '../src/train/stages/index.js';

const stages = Object.values(STAGES) as Stage[];
/** The flags each stage needs (its required inputs and --out). */
const REQUIRED: Record<string, string[]> = {
  pt: ['--data', 'd.jsonl'],
  sft: ['--data', 'd.jsonl', '--model', 'm'],
  rm: ['--data', 'd.jsonl', '--model', 'm'],
  rs: ['--prompts', 'p.jsonl', '--reward', 'rm', '--model', 'm'],
  dpo: ['--data', 'd.jsonl', '--model', 'm'],
};
const required = (st: Stage) => ['--out', 'run', ...REQUIRED[st.name]];
const settings = (st: Stage, argv: string[]) => readStageArgv(st, [...required(st), ...argv])!.settings;

test("the command line and the run config share each default: no flags give the schema's defaults", () => {
  for (const st of stages) assert.deepEqual(settings(st, []), st.config.parse({}), st.name);
  assert.deepEqual(readStageArgv(STAGES.pt as Stage, required(STAGES.pt as Stage))!.context, { out: 'run', seed: 42, threads: 0 });
});

test('flags map to the settings: kebab-case keys, LoRA fields, renamed flags, nullable numbers', () => {
  const sft = settings(STAGES.sft as Stage, [
    '--lr',
    '1e-3',
    '--max-steps',
    '7',
    '--lora-r',
    '4',
    '--target-modules',
    'q_proj,v_proj',
    '--train-on-prompt',
  ]);
  assert.deepEqual(
    [sft.lr, sft.max_steps, sft.lora, sft.train_on_prompt],
    [1e-3, 7, { r: 4, alpha: 32, dropout: 0.05, target_modules: ['q_proj', 'v_proj'] }, true],
  );
  assert.equal(settings(STAGES.dpo as Stage, ['--no-lora']).lora, false);
  assert.equal((settings(STAGES.dpo as Stage, ['--lora-alpha', '8']).lora as { alpha: number }).alpha, 8);
  const rs = settings(STAGES.rs as Stage, ['--limit', '5', '--threshold', '0.5', '--k', '2']);
  assert.deepEqual([rs.prompts, rs.threshold, rs.k], [5, 0.5, 2]);
  // a list or its named alternative; an object as its values joined by ':'
  assert.equal(
    (settings(STAGES.sft as Stage, ['--lora', '--target-modules', 'all-linear']).lora as { target_modules: unknown }).target_modules,
    'all-linear',
  );
  assert.deepEqual(settings(STAGES.pt as Stage, ['--rope-scaling', 'yarn:2']).rope_scaling, { type: 'yarn', factor: 2 });
  assert.equal(settings(STAGES.pt as Stage, []).rope_scaling, undefined);
});

test('bad flags are usage errors naming the flag', () => {
  const sft = STAGES.sft as Stage;
  const cases: [string[], RegExp][] = [
    [['--lr', 'fast'], /--lr: expected a number, got "fast"/],
    [['--batch-size', '0'], /--batch-size: Too small/],
    [['--batch-size', '2.5'], /--batch-size: expected an integer/],
    [['--schedule', 'step'], /--schedule: Invalid option/],
    [['--no-lora', '--lora-r', '4'], /--no-lora cannot go with --lora/],
    [['--frobnicate'], /Unknown option '--frobnicate'/],
    [['--rope-scaling', 'yarn'], /--rope-scaling: expected TYPE:FACTOR, got "yarn"/],
    [['--rope-scaling', 'yarn:x'], /--rope-scaling: expected TYPE:FACTOR, got "yarn:x"/],
    [['--rope-scaling', 'cubic:2'], /--rope-scaling type: Invalid option/],
    [['--rope-scaling', 'linear:1'], /--rope-scaling factor: Too small/],
  ];
  for (const [argv, re] of cases)
    assert.throws(
      () => readStageArgv(sft, [...required(sft), ...argv]),
      (e: Error) => e instanceof UsageError && re.test(e.message),
      argv.join(' '),
    );
  assert.throws(() => readStageArgv(sft, ['--out', 'run']), /--data is required/);
});

test('every setting and input has a description, and --help shows each default once', () => {
  const flat = (fs: OptionField[]): OptionField[] => fs.flatMap((f) => [f, ...flat(f.fields ?? [])]);
  for (const st of stages) {
    for (const schema of [st.config, st.inputs, ContextSchema] as z.ZodObject[]) {
      for (const f of flat(optionFields(schema))) assert.ok(f.description, `${st.name}: ${f.path.join('.')} has no description`);
    }
    const help = stageUsage(st);
    assert.equal(help.match(/--lr X +peak learning rate \(default [\d.e-]+\)/g)?.length, 1, st.name);
  }
  assert.match(stageUsage(STAGES.dpo as Stage), /--lora-alpha X +the update is scaled by alpha \/ r \(default 16\)/);
});
