// The run directory, named in one place: every file and folder a run writes, for the
// pipeline, the stages, the trainer, the data build and the report.
//
//   RUN/config.yaml              the resolved run config (every default written out)
//   RUN/corpus/                  the built-in corpus, when enabled
//   RUN/data/                    stage datasets (pt, sft, pref .jsonl), stats.json, tokens.json,
//                                rejects, dedup / decontam reports, pt_{train,eval}.bin
//   RUN/tokenizer/               tokenizer.json, tokenizer_config.json
//   RUN/stages/base/             the initial model (from model.config)
//   RUN/stages/STAGE/            checkpoint-STEP/, final/ (model or PEFT adapter), merged/
//                                (a LoRA stage's adapter merged into its base, the reward
//                                model's head included), args.json, done.json
//   RUN/stages/rs/round-N/       candidates.jsonl, summary.json, checkpoint-STEP/, final/,
//                                policy/ (the round's merged policy), done.json
//   RUN/eval/STAGE.json          evaluation after each stage (+ STAGE.items.jsonl, per item)
//   RUN/metrics.jsonl            one JSON object per logged step / evaluation
//   RUN/summary.json, summary.md, report/
//   RUN/.../lineage.json         what a result was made from (io/lineage.ts): stages/STAGE/,
//                                data/, corpus/, tokenizer/, stages/base/, eval/STAGE.lineage.json
//   RUN/stale-TIME/              results whose lineage changed, moved aside by a re-run (same
//                                layout, metrics.jsonl holding their metric records)
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from './atomic.js';
import type { Lineage } from './lineage.js';

/**
 * What a finished stage leaves in done.json: the model folder the next stage starts from and
 * its trained weights (the adapter under LoRA), both relative to the run directory, and its
 * lineage: the resolved settings it ran with and the content hashes of what it read.
 */
export interface DoneRecord {
  stage: string;
  output: string;
  final: string;
  lineage: Lineage;
}

const CHECKPOINT = /^checkpoint-(\d+)$/;

/** A folder the shared trainer writes into: checkpoints, final/, merged/, args.json, done.json. */
export class StageDir {
  constructor(readonly dir: string) {}

  /** The trained weights (a model, or a PEFT adapter under LoRA). */
  get final(): string {
    return path.join(this.dir, 'final');
  }

  /** A LoRA stage's adapter merged into its base model (the reward model's head included). */
  get merged(): string {
    return path.join(this.dir, 'merged');
  }

  /** The trainer settings and stage facts the stage ran with. */
  get args(): string {
    return path.join(this.dir, 'args.json');
  }

  get done(): string {
    return path.join(this.dir, 'done.json');
  }

  /** What the stage runs from (written when it starts, so a resume can tell it is the same run). */
  get lineage(): string {
    return path.join(this.dir, 'lineage.json');
  }

  checkpoint(step: number): string {
    return path.join(this.dir, `checkpoint-${step}`);
  }

  /** The checkpoint-STEP folders, oldest first (the trainer verifies one before resuming from it). */
  checkpoints(): { step: number; dir: string }[] {
    if (!fs.existsSync(this.dir)) return [];
    return fs
      .readdirSync(this.dir)
      .map((n) => ({ m: CHECKPOINT.exec(n), dir: path.join(this.dir, n) }))
      .filter((e): e is { m: RegExpExecArray; dir: string } => !!e.m && fs.statSync(e.dir).isDirectory())
      .map((e) => ({ step: Number(e.m[1]), dir: e.dir }))
      .sort((a, b) => a.step - b.step);
  }

  /** done.json, or null while the stage has not finished. */
  readDone(): DoneRecord | null {
    return fs.existsSync(this.done) ? (JSON.parse(fs.readFileSync(this.done, 'utf8')) as DoneRecord) : null;
  }

  writeDone(rec: DoneRecord): Promise<void> {
    return writeJsonAtomic(this.done, rec);
  }

  /** Round N of rejection sampling: its own trainer folder inside the stage's. */
  round(n: number): RoundDir {
    return new RoundDir(path.join(this.dir, `round-${n}`));
  }
}

/** One rejection-sampling round: candidates, the fine-tuning checkpoints and the round's policy. */
export class RoundDir extends StageDir {
  get candidates(): string {
    return path.join(this.dir, 'candidates.jsonl');
  }

  get summary(): string {
    return path.join(this.dir, 'summary.json');
  }

  /** The policy after the round (LoRA merged), where the next round starts. */
  get policy(): string {
    return path.join(this.dir, 'policy');
  }
}

/** When this process started: names its stale folder, so all it moves aside lands together. */
const STARTED = new Date().toISOString().replace(/[:.]/g, '-');

export class RunDir {
  constructor(readonly root: string) {}

  /** RUN/stale-TIME: where this run moves results whose lineage changed (one folder per run). */
  get stale(): string {
    return path.join(this.root, `stale-${STARTED}`);
  }

  /** Moves a file or folder of the run into the stale folder at the same relative place; returns where, or null if absent. */
  moveAside(p: string): string | null {
    if (!fs.existsSync(p)) return null;
    const at = path.join(this.stale, path.relative(this.root, p));
    let to = at;
    for (let n = 2; fs.existsSync(to); n++) to = `${at}.${n}`;
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.renameSync(p, to);
    return to;
  }

  get config(): string {
    return path.join(this.root, 'config.yaml');
  }

  get corpus(): string {
    return path.join(this.root, 'corpus');
  }

  get data(): string {
    return path.join(this.root, 'data');
  }

  /** A stage dataset: data/pt.jsonl, sft.jsonl, pref.jsonl. */
  dataset(name: 'pt' | 'sft' | 'pref'): string {
    return path.join(this.data, `${name}.jsonl`);
  }

  get stats(): string {
    return path.join(this.data, 'stats.json');
  }

  get tokens(): string {
    return path.join(this.data, 'tokens.json');
  }

  /** pt_{train,eval}.bin and their .json: the pre-training documents tokenised once. */
  get ptTokens(): string[] {
    return ['pt_train.bin', 'pt_eval.bin'].flatMap((f) => [path.join(this.data, f), path.join(this.data, `${f}.json`)]);
  }

  get tokenizer(): string {
    return path.join(this.root, 'tokenizer');
  }

  /** The initial model a run creates from model.config. */
  get base(): string {
    return path.join(this.root, 'stages', 'base');
  }

  /** stages/NAME; a nested name (rs/round-1) is a folder inside its stage's. */
  stage(name: string): StageDir {
    return new StageDir(path.join(this.root, 'stages', ...name.split('/')));
  }

  get evaluations(): string {
    return path.join(this.root, 'eval');
  }

  /** eval/NAME.json: a stage's (or a baseline's) metrics with their intervals. */
  evaluation(name: string): string {
    return path.join(this.evaluations, `${name}.json`);
  }

  /** eval/NAME.items.jsonl: the per-item results those metrics are computed from. */
  evaluationItems(name: string): string {
    return path.join(this.evaluations, `${name}.items.jsonl`);
  }

  /** eval/NAME.lineage.json: the model, files and settings an evaluation scored. */
  evaluationLineage(name: string): string {
    return path.join(this.evaluations, `${name}.lineage.json`);
  }

  /** lineage.json inside a step's output folder (data/, corpus/, tokenizer/, stages/base/). */
  lineage(dir: string): string {
    return path.join(dir, 'lineage.json');
  }

  get metrics(): string {
    return path.join(this.root, 'metrics.jsonl');
  }

  get summaryJson(): string {
    return path.join(this.root, 'summary.json');
  }

  get summaryMd(): string {
    return path.join(this.root, 'summary.md');
  }

  get report(): string {
    return path.join(this.root, 'report');
  }
}
