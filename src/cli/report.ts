import { writeReport } from '../report/report.js';
import { parse } from '../io/argv.js';

const USAGE = `chimed report RUN_DIR

Writes RUN_DIR/report/report.md and report.html from RUN_DIR/summary.json: the per-stage table
with 95% intervals and within-noise marks, the paired changes between stages, other systems'
rows, published figures on tagged benchmarks, case studies, and PNG charts (loss curves,
reward-model accuracy, DPO margins, metrics across stages, attitude scale).`;

export async function reportCommand(argv: string[]): Promise<number> {
  const a = parse(argv, {}, USAGE);
  if (a.help || !a.positionals[0]) {
    process.stdout.write(USAGE + '\n');
    return a.help ? 0 : 2;
  }
  const dir = await writeReport(a.positionals[0]);
  process.stdout.write(`report: ${dir}/report.md, ${dir}/report.html\n`);
  return 0;
}
