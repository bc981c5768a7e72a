// A stage run that knows what it was run from (the same for `chimed train STAGE` and `chimed
// run`): its lineage is the resolved settings, the seed, the inputs that are not files (chat
// template, merge) and the content hash of every file and folder it reads (data, the model it
// starts from, tokenizer, reward model). A re-run with the same lineage skips a finished stage
// or resumes an interrupted one; with any change it says what changed, moves the old results
// aside and runs the stage from scratch.
import path from 'node:path';
import type * as z from 'zod';
import { dist } from '../../engine/dist.js';
import { lineageOf, type Lineage } from '../../io/lineage.js';
import { RunDir, type DoneRecord } from '../../io/run-dir.js';
import { optionFields } from '../../io/schema-options.js';
import { reconcile, recordLineage } from '../lineage.js';
import { resolveSettings, type StageContext, type StageResult } from './common.js';
import type { Stage } from './index.js';

/** The fields of a schema whose values name files or folders (their argument is FILE, DIR or MODEL.json). */
const fileFields = (schema: z.ZodObject) =>
  new Set(
    optionFields(schema)
      .filter((f) => f.path.length === 1 && /^(FILE|DIR|MODEL\.json)\b/.test(f.arg))
      .map((f) => f.path[0]),
  );

const pathsOf = (v: unknown): string[] => (typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x) => typeof x === 'string') : []);

/** A stage's lineage for these settings and inputs. */
export function stageLineage(st: Stage, settings: Record<string, unknown>, ctx: StageContext & Record<string, unknown>): Lineage {
  const resolved = resolveSettings(st.config, settings, st.name) as Record<string, unknown>;
  const inFiles = fileFields(st.inputs),
    setFiles = fileFields(st.config);
  const files = [...inFiles].flatMap((k) => pathsOf(ctx[k]));
  files.push(...[...setFiles].flatMap((k) => pathsOf(resolved[k])));
  const facts = Object.fromEntries(
    Object.keys(st.inputs.shape).flatMap((k) => (inFiles.has(k) || ctx[k] === undefined ? [] : [[k, ctx[k]]])),
  );
  return lineageOf(ctx.runDir, { ...resolved, seed: ctx.seed, ...(Object.keys(facts).length ? { inputs: facts } : {}) }, files);
}

/**
 * Runs a stage in its run directory unless it already finished with the same lineage (then
 * its done.json stands); `follows` names the stages that re-run after it (for the message).
 */
export async function runStageTracked<C extends z.ZodObject, I extends z.ZodObject>(
  st: Stage<C, I>,
  settings: z.input<C>,
  ctx: StageContext & z.input<I>,
  follows: string[] = [],
): Promise<StageResult & { skipped: boolean }> {
  const stage = st as unknown as Stage;
  const dir = new RunDir(ctx.runDir).stage(st.name);
  // under MPI rank 0 decides (moving stale results aside) and records; every rank follows it
  const ranks = dist();
  let now: Lineage | undefined;
  let done: DoneRecord | null = null;
  if (ranks.isRoot) {
    now = stageLineage(stage, settings as Record<string, unknown>, ctx as StageContext & Record<string, unknown>);
    const step = { name: st.name, record: dir.lineage, outputs: [dir.dir], follows, metrics: (s: string) => s.split('/')[0] === st.name };
    done = (await reconcile(new RunDir(ctx.runDir), step, now)) ? dir.readDone() : null;
    if (!done) await recordLineage(step, now);
  }
  done = ranks.broadcast(done);
  // outputs are recorded relative to the run directory, which can move
  const inRun = (p: string) => path.join(ctx.runDir, p);
  if (done) {
    if (ranks.isRoot) process.stderr.write(`${st.name}: already done, skipping (${inRun(done.output)})\n`);
    return { output: inRun(done.output), final: inRun(done.final), skipped: true };
  }
  const res = await st.run(settings, ctx);
  const ofRun = (p: string) => path.relative(ctx.runDir, p);
  if (now) await dir.writeDone({ stage: st.name, output: ofRun(res.output), final: ofRun(res.final), lineage: now });
  return { ...res, skipped: false };
}
