// Re-runs that re-make exactly what changed: a step (a training stage, the data build, the
// tokenizer, an evaluation) compares the lineage its outputs were made with against today's;
// outputs made from something else are moved aside, never deleted, and the step runs again.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { lineageChanges, readLineage, type Lineage } from '../io/lineage.js';
import type { RunDir } from '../io/run-dir.js';
import { MetricsLog } from './metrics.js';

export interface Step {
  /** How messages name the step: "pt", "data", "eval sft". */
  name: string;
  /** Where its lineage record lives (inside an output, or beside them). */
  record: string;
  /** The files and folders it makes. */
  outputs: string[];
  /** Its metric records in metrics.jsonl (stage field), moved aside with its outputs. */
  metrics?: (stage: string) => boolean;
  /** The steps that follow and re-run when this one does (named in the message). */
  follows?: string[];
  /** What the message says is done about it (default: re-running NAME). */
  verb?: string;
}

const log = (s: string) => process.stderr.write(`${s}\n`);

/**
 * Whether the step's outputs were made from `now`: true when its record matches (the outputs
 * stand, or an interrupted run of it may resume). Otherwise says why (what changed, or that no
 * record vouches for outputs found), moves the outputs, the record and the step's metric
 * records into RUN/stale-TIME/, and returns false: the step runs from scratch.
 */
export async function reconcile(run: RunDir, step: Step, now: Lineage): Promise<boolean> {
  const before = readLineage(step.record);
  const found = [...step.outputs, step.record].filter((p) => fs.existsSync(p));
  const changes = before ? lineageChanges(before, now) : found.length ? ['no lineage record (an older or unfinished run made it)'] : [];
  if (before && !changes.length) return true;
  if (!found.length) return false;
  const follows = step.follows?.length ? ` and what follows: ${step.follows.join(', ')}` : '';
  log(`${step.name}: ${changes.join('; ')}; ${step.verb ?? `re-running ${step.name}`}${follows}`);
  const moved = found.filter((p) => !found.some((q) => q !== p && isInside(p, q))).map((p) => run.moveAside(p)!);
  if (step.metrics) await moveMetricsAside(run, step.metrics);
  const where = path.relative(process.cwd(), run.stale);
  const what = moved.map((p) => path.relative(run.stale, p)).join(', ');
  log(`${step.name}: the previous results are kept in ${where.startsWith('..') ? run.stale : where}: ${what}`);
  return false;
}

/** Writes a step's lineage record (after its outputs, for a step that cannot resume; before, for one that can). */
export function recordLineage(step: Pick<Step, 'record'>, lineage: Lineage): Promise<void> {
  fs.mkdirSync(path.dirname(step.record), { recursive: true });
  return writeJsonAtomic(step.record, lineage);
}

const isInside = (p: string, dir: string) => {
  const rel = path.relative(dir, p);
  return !!rel && !rel.startsWith('..') && !path.isAbsolute(rel);
};

/** A step's records out of RUN/metrics.jsonl into RUN/stale-TIME/metrics.jsonl. */
async function moveMetricsAside(run: RunDir, mine: (stage: string) => boolean): Promise<void> {
  const log = new MetricsLog(run.metrics);
  const all = log.read();
  const moved = all.filter((r) => mine(r.stage));
  if (!moved.length) return;
  const line = (r: object) => JSON.stringify(r) + '\n';
  fs.mkdirSync(run.stale, { recursive: true });
  fs.appendFileSync(path.join(run.stale, 'metrics.jsonl'), moved.map(line).join(''));
  await writeFileAtomic(
    run.metrics,
    all
      .filter((r) => !mine(r.stage))
      .map(line)
      .join(''),
  );
}
