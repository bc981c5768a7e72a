import { DataError } from './errors.js';
import { JsonlWriter } from './jsonl-writer.js';

/** A row that did not become a record, and why. */
export interface Reject {
  file: string;
  line: number;
  reason: string;
  /** The offending input, truncated. */
  raw: string;
}

const RAW_MAX_CHARS = 300;
const EXAMPLES_PER_FILE = 5;

export class RejectRateError extends DataError {}

/**
 * Collects rejects: to rejects.jsonl when given a path, else in memory (`entries`). Counts and
 * the first few reasons per file are always kept so summaries and errors can quote them.
 */
export class RejectSink {
  readonly entries: Reject[] = [];
  private writer?: JsonlWriter;
  private perFile = new Map<string, { count: number; examples: Reject[] }>();
  total = 0;

  constructor(readonly path?: string) {
    if (path) this.writer = new JsonlWriter(path);
  }

  async add(r: Reject): Promise<void> {
    const entry = { ...r, raw: r.raw.length > RAW_MAX_CHARS ? r.raw.slice(0, RAW_MAX_CHARS) + '…' : r.raw };
    this.total++;
    const f = this.perFile.get(r.file) ?? { count: 0, examples: [] };
    f.count++;
    if (f.examples.length < EXAMPLES_PER_FILE) f.examples.push(entry);
    this.perFile.set(r.file, f);
    if (this.writer) await this.writer.write(entry);
    else this.entries.push(entry);
  }

  countFor(file: string): number {
    return this.perFile.get(file)?.count ?? 0;
  }

  examplesFor(file: string): Reject[] {
    return this.perFile.get(file)?.examples ?? [];
  }

  async close(): Promise<void> {
    await this.writer?.close();
  }
}
