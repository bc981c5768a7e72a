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
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from './atomic.js';

/**
 * What a finished stage leaves in done.json: the model folder the next stage starts from,
 * the inputs it read with their content hashes, and the resolved stage config it ran with.
 */
export interface DoneRecord {
  stage: string;
  output: string;
  inputs: Record<string, string>;
  config: Record<string, unknown>;
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

export class RunDir {
  constructor(readonly root: string) {}

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

/** SHA-1 of each input: a file's bytes, or a model folder's model.safetensors. */
export function inputHashes(inputs: string[]): Record<string, string> {
  return Object.fromEntries(
    inputs.map((f) => {
      const h = createHash('sha1');
      for (const p of [f, path.join(f, 'model.safetensors')]) if (fs.existsSync(p) && fs.statSync(p).isFile()) h.update(fs.readFileSync(p));
      return [f, h.digest('hex')];
    }),
  );
}
