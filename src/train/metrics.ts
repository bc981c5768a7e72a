import fs from 'node:fs';
import path from 'node:path';
import { parseJsonl } from '../data/stage-files.js';
import { writeFileAtomic } from '../io/atomic.js';

export type MetricRecord = { stage: string; step: number } & Record<string, unknown>;

/** runs/NAME/metrics.jsonl: one JSON object per logged step or evaluation. */
export class MetricsLog {
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
  }

  append(rec: MetricRecord): void {
    fs.appendFileSync(this.file, JSON.stringify({ ...rec, time: new Date().toISOString() }) + '\n');
  }

  read(stage?: string): MetricRecord[] {
    if (!fs.existsSync(this.file)) return [];
    return parseJsonl(fs.readFileSync(this.file, 'utf8'), this.file)
      .map((r) => r.rec as MetricRecord)
      .filter((r) => stage === undefined || r.stage === stage);
  }

  /** Drops a stage's records after `step`: a resumed run re-logs them from its checkpoint. */
  async truncate(stage: string, step: number): Promise<void> {
    const all = this.read();
    const kept = all.filter((r) => r.stage !== stage || r.step <= step);
    if (kept.length !== all.length) await writeFileAtomic(this.file, kept.map((r) => JSON.stringify(r) + '\n').join(''));
  }
}
