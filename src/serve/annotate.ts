// Preference annotation: prompts from a file, k sampled replies per prompt, the annotator's
// verdict saved append-only as the normalised preference JSONL that `chimed train rm` and
// `chimed train dpo` read directly.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { AppendOnlyJsonl, moveIncompleteLastLine, partialFile, type AppendOptions } from '../io/append-jsonl.js';
import { generateRepliesAsync } from '../model/chat.js';
import type { ChatModel } from '../model/load.js';
import type { ChatMessage } from '../tokenizer/chat-template.js';
import { DataError } from '../data/errors.js';
import { jsonlRecords, parseJsonl, promptOf, utf8Lines } from '../data/stage-files.js';

export interface AnnotationPrompt {
  index: number;
  id: string;
  /** The conversation so far, ending with the user turn to answer. */
  messages: ChatMessage[];
}

/**
 * Prompts to annotate. JSONL (`.jsonl` / `.json`): `{id?, prompt, history?, system?}` or
 * `{id?, messages}` ending with a user turn; any other file: one prompt per non-empty line.
 */
export async function readAnnotationPrompts(file: string): Promise<AnnotationPrompt[]> {
  if (!fs.existsSync(file)) throw new DataError(`${file}: no such prompts file`);
  const rows: { id?: string; messages: ChatMessage[]; where: string; line: number }[] = [];
  if (/\.jsonl?$/i.test(file)) {
    for await (const { rec, where, line } of jsonlRecords(file))
      rows.push({ id: rec.id === undefined ? undefined : String(rec.id), messages: promptOf(rec, where, false), where, line });
  } else {
    for await (const { line, text } of utf8Lines(file))
      if (text.trim()) rows.push({ messages: [{ role: 'user', content: text.trim() }], where: `${file}:${line}`, line });
  }
  const seen = new Map<string, number>();
  const out = rows.map((r, index) => {
    const id = r.id ?? String(index);
    if (seen.has(id)) throw new DataError(`${r.where}: duplicate id "${id}" (first on line ${seen.get(id)})`);
    seen.set(id, r.line);
    return { index, id, messages: r.messages };
  });
  if (!out.length) throw new DataError(`${file}: no prompts`);
  return out;
}

/** `prompt_id`s already recorded in a file this annotator wrote before (resuming a session). */
async function recordedPromptIds(file: string): Promise<Set<string>> {
  if (!fs.existsSync(file)) return new Set();
  const text = fs.readFileSync(file, 'utf8');
  return new Set(
    parseJsonl(text, file)
      .filter((r) => r.rec.prompt_id !== undefined)
      .map((r) => String(r.rec.prompt_id)),
  );
}

/**
 * A prompt in the normalised preference shape `{prompt, history?, system?}` when its turns
 * alternate user / assistant, else as `{messages}` (which the trainers also accept).
 */
export function preferencePrompt(
  messages: ChatMessage[],
): { prompt: string; history?: [string, string][]; system?: string } | { messages: ChatMessage[] } {
  const sys = messages[0]?.role === 'system' ? messages[0].content : undefined;
  const turns = sys === undefined ? messages : messages.slice(1);
  const history: [string, string][] = [];
  for (let i = 0; i + 1 < turns.length; i += 2) {
    if (turns[i].role !== 'user' || turns[i + 1].role !== 'assistant') return { messages };
    history.push([turns[i].content, turns[i + 1].content]);
  }
  if (turns.length % 2 !== 1 || turns.at(-1)!.role !== 'user') return { messages };
  return { prompt: turns.at(-1)!.content, ...(history.length ? { history } : {}), ...(sys !== undefined ? { system: sys } : {}) };
}

/** What the annotator decided about one set of sampled replies. */
export interface Verdict {
  /** Index of the better reply, or null when all are bad. */
  choice: number | null;
  /** The annotator's own version of the better reply (or, with choice null, a good reply). */
  edited?: string;
}

export class VerdictError extends Error {}

/**
 * Preference pairs from a verdict: the chosen text (the picked reply, or the annotator's edit)
 * against every distinct other reply. Empty when all were bad and no better reply was written.
 */
export function preferencePairs(p: AnnotationPrompt, responses: string[], v: Verdict, time = new Date()): Record<string, unknown>[] {
  if (v.choice !== null && (!Number.isInteger(v.choice) || v.choice < 0 || v.choice >= responses.length)) {
    throw new VerdictError(`choice must be null or an index below ${responses.length}, got ${v.choice}`);
  }
  const edited = v.edited?.trim() ? v.edited : undefined;
  const chosen = edited ?? (v.choice === null ? undefined : responses[v.choice]);
  if (chosen === undefined) return [];
  const rejected = [...new Set(responses)].filter((r) => r !== chosen);
  if (!rejected.length) throw new VerdictError('the replies are identical to the chosen one: edit it into a better reply, or mark all bad');
  const shape = preferencePrompt(p.messages);
  return rejected.map((r, j) => ({
    id: rejected.length === 1 ? p.id : `${p.id}-${j + 1}`,
    prompt_id: p.id,
    ...shape,
    chosen,
    rejected: r,
    edited: edited !== undefined && (v.choice === null || edited !== responses[v.choice]),
    annotated_at: time.toISOString(),
  }));
}

export interface SampleOptions {
  k: number;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
  signal?: AbortSignal;
}

/**
 * k replies to one conversation, drawn again with new seeds (up to 3 rounds) while fewer than
 * k are distinct: identical replies make no preference pair. May return fewer than k.
 */
export async function sampleDistinct(chat: ChatModel, messages: ChatMessage[], o: SampleOptions): Promise<string[]> {
  const distinct = new Set<string>();
  for (let round = 0; round < 3 && distinct.size < o.k && !o.signal?.aborted; round++) {
    const [gens] = await generateRepliesAsync(chat.model, chat.tokenizer, chat.template, [messages], {
      n: o.k,
      temperature: o.temperature,
      topP: o.topP,
      maxNewTokens: o.maxNewTokens,
      seed: o.seed + round * 7919,
      signal: o.signal,
    });
    for (const g of gens) if (distinct.size < o.k && g.text) distinct.add(g.text);
  }
  return [...distinct];
}

export interface AnnotatorOptions extends AppendOptions {
  promptsFile: string;
  outFile: string;
}

const MAX_PENDING = 256;

/**
 * One annotation session over a prompts file. Sampled replies stay on the server under a
 * pair id until a verdict arrives, so what is saved is exactly what the model produced.
 */
export class Annotator {
  private readonly pending = new Map<string, { index: number; responses: string[] }>();

  private constructor(
    readonly prompts: AnnotationPrompt[],
    private readonly out: AppendOnlyJsonl,
    private readonly bad: AppendOnlyJsonl,
    private readonly done: Set<string>,
  ) {}

  /** Where verdicts of "all bad" without a better reply go (they make no pair). */
  static badFile(outFile: string): string {
    return outFile.replace(/\.jsonl$/i, '') + '.both-bad.jsonl';
  }

  static async open(o: AnnotatorOptions): Promise<Annotator> {
    const prompts = await readAnnotationPrompts(o.promptsFile);
    const files = [o.outFile, Annotator.badFile(o.outFile)];
    const warn = o.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
    const done = new Set<string>();
    for (const f of files) {
      // a device or pipe would swallow saves (/dev/null) or never end when read (/dev/zero)
      if (fs.existsSync(f) && !fs.statSync(f).isFile()) throw new DataError(`${f}: not a regular file; annotations must go to a file`);
      // a save cut short by a crash: kept aside, never appended onto nor discarded
      const moved = await moveIncompleteLastLine(f);
      if (moved) warn(`${f}: the last line was incomplete (${moved} bytes of a save cut short); moved it to ${partialFile(f)}`);
      for (const id of await recordedPromptIds(f)) done.add(id);
    }
    const [out, bad] = await Promise.all(files.map((f) => AppendOnlyJsonl.open(f, { ...o, warn })));
    return new Annotator(prompts, out, bad, done);
  }

  get outFile(): string {
    return this.out.file;
  }

  progress() {
    return { done: this.prompts.filter((p) => this.done.has(p.id)).length, total: this.prompts.length };
  }

  /** The first prompt not yet annotated after index `after` (wrapping round), or null when all are. */
  next(after = -1): AnnotationPrompt | null {
    const N = this.prompts.length;
    for (let i = 1; i <= N; i++) {
      const p = this.prompts[(((after + i) % N) + N) % N];
      if (!this.done.has(p.id)) return p;
    }
    return null;
  }

  prompt(index: number): AnnotationPrompt {
    const p = this.prompts[index];
    if (!p) throw new VerdictError(`no prompt with index ${index} (there are ${this.prompts.length})`);
    return p;
  }

  /** Keeps sampled replies until a verdict; returns the pair id the verdict must name. */
  hold(index: number, responses: string[]): string {
    const id = randomBytes(9).toString('base64url');
    this.pending.set(id, { index, responses });
    // a page closed mid-annotation never sends a verdict: forget the oldest such pairs
    while (this.pending.size > MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
    return id;
  }

  /** Records a verdict: pairs to the preference file, or the replies to the all-bad file. */
  async save(pairId: string, v: Verdict): Promise<{ pairs: number }> {
    const held = this.pending.get(pairId);
    if (!held) throw new VerdictError(`unknown or already saved pair id "${pairId}"`);
    const p = this.prompts[held.index];
    const pairs = preferencePairs(p, held.responses, v);
    // taken before the write, so a verdict sent twice at once is saved once
    this.pending.delete(pairId);
    try {
      if (pairs.length) await this.out.append(pairs);
      else
        await this.bad.append([
          {
            id: p.id,
            prompt_id: p.id,
            ...preferencePrompt(p.messages),
            responses: held.responses,
            verdict: 'all_bad',
            annotated_at: new Date().toISOString(),
          },
        ]);
    } catch (e) {
      this.pending.set(pairId, held);
      throw e;
    }
    this.done.add(p.id);
    return { pairs: pairs.length };
  }

  async close(): Promise<void> {
    await Promise.all([this.out.close(), this.bad.close()]);
  }
}
