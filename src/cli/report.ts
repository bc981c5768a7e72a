import { writeReport } from '../report/report.js';
import { parse } from '../io/argv.js';

const USAGE = `chimed report RUN_DIR

Writes RUN_DIR/report/report.md and report.html with the per-stage table and PNG charts
(loss curves, reward-model accuracy, DPO margins, metrics across stages, attitude scale).`;

export async function reportCommand(argv: string[]): Promise<number> {
  const a = parse(argv, {}, USAGE);
  if (a.help || !a.positionals[0]) { process.stdout.write(USAGE + '\n'); return a.help ? 0 : 2; }
  const dir = await writeReport(a.positionals[0]);
  process.stdout.write(`report: ${dir}/report.md, ${dir}/report.html\n`);
  return 0;
}
