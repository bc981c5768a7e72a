// `chimed export llamafactory RUN_DIR --out DIR`: a chimed run continued on GPUs with
// LLaMA-Factory. DIR gets the run's curated stage datasets (after dedup and decontamination)
// in LLaMA-Factory's layouts with their dataset_info.json, one training YAML per stage with
// the run's resolved hyperparameters, a DeepSpeed ZeRO config and a README with the commands.
// `chimed data build` reads DIR/data/dataset_info.json back (src/data/dataset-info.ts).
import fs from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { DataError } from '../data/errors.js';
import { openImport } from '../data/import.js';
import { JsonlWriter } from '../data/jsonl-writer.js';
import type { FormatName } from '../data/readers/format.js';
import { DATASET_INFO_FILE, type DatasetInfoEntry } from '../data/readers/llamafactory.js';
import type { ChatMessage, Tagged } from '../data/records.js';
import { readJsonl } from '../data/stage-files.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { RunDir } from '../io/run-dir.js';
import { ChatTemplate } from '../tokenizer/chat-template.js';
import { hasTokenizerFiles, Tokenizer } from '../tokenizer/index.js';
import type { RoundRecord } from '../train/rejection.js';
import { readRunConfig, type RunConfig } from './config.js';
import { llamaFactoryPlan, renderYaml, zeroConfig, type LfStep } from './llamafactory-args.js';
import { matchLlamaFactoryTemplate, type TemplateMatch } from './llamafactory-template.js';

/** The commit of hiyouga/LLaMA-Factory whose argument, dataset and template names this export uses. */
export const LLAMAFACTORY_COMMIT = 'ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30';

export interface LfExportOptions {
  out: string;
  /** model_name_or_path of the first stage (default: the run's base model folder). */
  model?: string;
  /** DeepSpeed ZeRO stage (default 3: shards weights, gradients and optimizer state, for full 7B+ training). */
  zero?: 2 | 3;
}

export interface LfDataset {
  name: string;
  file: string;
  records: number;
  entry: DatasetInfoEntry;
}

export interface LfExportResult {
  datasets: LfDataset[];
  steps: LfStep[];
  template: TemplateMatch | null;
  model: string;
  /** What the export could not carry over (also in the README). */
  notes: string[];
}

// chimed records keep their own keys: messages as {role, content}, named by these tags
const MESSAGE_TAGS = { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', system_tag: 'system' };
const ENTRY: Record<'pt' | 'sft' | 'pref', (file: string) => DatasetInfoEntry> = {
  pt: (file_name) => ({ file_name, columns: { prompt: 'text' } }),
  sft: (file_name) => ({ file_name, formatting: 'sharegpt', columns: { messages: 'messages' }, tags: MESSAGE_TAGS }),
  pref: (file_name) => ({
    file_name,
    formatting: 'sharegpt',
    ranking: true,
    columns: { messages: 'messages', chosen: 'chosen', rejected: 'rejected' },
    tags: MESSAGE_TAGS,
  }),
};

/** One LLaMA-Factory row per record; `meta` stays behind (LLaMA-Factory's loader wants one schema for every row). */
function lfRow(t: Tagged): Record<string, unknown> {
  const { id, source } = t.record;
  switch (t.kind) {
    case 'document':
      return { id, source, text: t.record.text };
    case 'conversation':
      return { id, source, messages: t.record.messages };
    case 'preference':
      return {
        id,
        source,
        messages: t.record.prompt,
        chosen: { role: 'assistant', content: t.record.chosen },
        rejected: { role: 'assistant', content: t.record.rejected },
      };
    default:
      throw new Error(`unexpected ${t.kind} record in a training dataset`);
  }
}

async function writeRows(file: string, rows: AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>): Promise<number> {
  const w = new JsonlWriter(file);
  try {
    for await (const r of rows) await w.write(r);
    await w.close();
  } catch (err) {
    await w.abort();
    throw err;
  }
  return w.count;
}

/** A stage dataset of the run (RUN/data/STAGE.jsonl, the project's records) as LLaMA-Factory rows. */
async function* stageRows(file: string, format: FormatName): AsyncGenerator<Record<string, unknown>> {
  // the build wrote these records, so any row that does not read back is an error, not a reject
  for await (const rec of await openImport(file, { format, maxRejectRate: 0 })) yield lfRow(rec);
}

/** The answers each rejection-sampling round kept, as SFT conversations (RUN/stages/rs/round-N/candidates.jsonl). */
async function rsRounds(run: RunDir, cfg: RunConfig): Promise<{ round: number; rows: Record<string, unknown>[] }[]> {
  const rs = cfg.stages.find((s) => s.type === 'rs');
  const out: { round: number; rows: Record<string, unknown>[] }[] = [];
  for (let round = 1; rs && round <= rs.rounds; round++) {
    const file = run.stage('rs').round(round).candidates;
    if (!fs.existsSync(file)) break;
    const rows: Record<string, unknown>[] = [];
    for (const { rec, where } of await readJsonl(file)) {
      const r = rec as unknown as RoundRecord;
      if (!Array.isArray(r.prompt) || !Array.isArray(r.candidates) || !Array.isArray(r.kept))
        throw new DataError(`${where}: expected {id, prompt, candidates, kept}`);
      for (const k of r.kept) {
        const answer = r.candidates[k]?.text;
        if (typeof answer !== 'string') throw new DataError(`${where}: kept index ${k} names no candidate`);
        const messages: ChatMessage[] = [...r.prompt, { role: 'assistant', content: answer }];
        rows.push({ id: `${r.id}.rs${round}.${k}`, source: `rs-round-${round}`, messages });
      }
    }
    out.push({ round, rows });
  }
  return out;
}

/** Exports a run directory for LLaMA-Factory; see the file comment. */
export async function exportLlamaFactory(runDir: string, o: LfExportOptions): Promise<LfExportResult> {
  const run = new RunDir(runDir);
  const configFile = run.config;
  if (!fs.existsSync(configFile)) throw new DataError(`${runDir}: not a run directory (no config.yaml); run "chimed run" first`);
  const cfg = readRunConfig(configFile);
  const dataDir = path.join(o.out, 'data');
  await mkdir(dataDir, { recursive: true });

  const datasets: LfDataset[] = [];
  const add = async (
    name: string,
    kind: keyof typeof ENTRY,
    rows: AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>,
  ) => {
    const file = `${name}.jsonl`;
    const records = await writeRows(path.join(dataDir, file), rows);
    if (records) datasets.push({ name, file, records, entry: ENTRY[kind](file) });
    else fs.rmSync(path.join(dataDir, file)); // LLaMA-Factory cannot load an empty dataset
    return records ? name : undefined;
  };
  const names: { pt?: string; sft?: string; pref?: string; rs: string[] } = { rs: [] };
  for (const [stage, format] of [
    ['pt', 'document'],
    ['sft', 'messages'],
    ['pref', 'preference'],
  ] as const) {
    const file = run.dataset(stage);
    if (fs.existsSync(file)) names[stage] = await add(`${cfg.name}_${stage}`, stage, stageRows(file, format));
  }
  for (const { round, rows } of await rsRounds(run, cfg)) {
    const name = await add(`${cfg.name}_rs_round${round}`, 'sft', rows);
    if (name) names.rs.push(name);
  }
  await writeJsonAtomic(path.join(dataDir, DATASET_INFO_FILE), Object.fromEntries(datasets.map((d) => [d.name, d.entry])));

  const tokDir = run.tokenizer;
  if (!hasTokenizerFiles(tokDir)) throw new DataError(`${tokDir}: no tokenizer yet; let "chimed run" prepare it first`);
  const tok = Tokenizer.fromDir(tokDir);
  const template = matchLlamaFactoryTemplate(ChatTemplate.forModel(tok, tokDir), { bos: tok.bosToken, eos: tok.eosToken });
  const base = 'path' in cfg.model ? cfg.model.path : path.resolve(run.base);
  const model = o.model ?? base;
  const zero = o.zero ?? 3;
  const deepspeed = `ds_z${zero}_config.json`;
  const steps = llamaFactoryPlan(cfg, {
    model,
    template: template?.name ?? null,
    trustRemoteCode: needsRemoteCode(model),
    datasets: names,
    deepspeed,
  });
  for (const s of steps) await writeFileAtomic(path.join(o.out, s.file), renderYaml(s.sections));
  await writeJsonAtomic(path.join(o.out, deepspeed), zeroConfig(zero));
  const notes: string[] = [];
  const rs = cfg.stages.find((st) => st.type === 'rs');
  if (rs && names.rs.length < rs.rounds) {
    notes.push(
      `The run has kept answers for ${names.rs.length} of its ${rs.rounds} rejection-sampling rounds (RUN/stages/rs/round-N/candidates.jsonl); finish the run in chimed to export the rest.`,
    );
  }
  const result = { datasets, steps, template, model, notes };
  await writeFileAtomic(path.join(o.out, 'README.md'), readme(runDir, cfg, result, zero, tok));
  return result;
}

/** Baichuan checkpoints ship their modelling code: transformers loads it only with trust_remote_code. */
function needsRemoteCode(model: string): boolean {
  const file = path.join(model, 'config.json');
  if (!fs.existsSync(file)) return /baichuan/i.test(model); // a hub id
  const c = JSON.parse(fs.readFileSync(file, 'utf8'));
  return /baichuan/i.test(`${c.model_type ?? ''} ${(c.architectures ?? []).join(' ')}`);
}

function readme(runDir: string, cfg: RunConfig, r: LfExportResult, zero: number, tok: Tokenizer): string {
  const table = [
    '| dataset | file | records | layout |',
    '|---|---|---|---|',
    ...r.datasets.map(
      (d) =>
        `| ${d.name} | data/${d.file} | ${d.records} | ${d.entry.formatting ?? 'alpaca'}${d.entry.ranking ? ' ranking' : ''}${d.entry.formatting ? '' : ' (pre-training text)'} |`,
    ),
  ];
  const tpl = r.template
    ? `The YAMLs use LLaMA-Factory's \`${r.template.name}\` template: it lays conversations out as the model's own chat template does${r.template.exact ? '' : ' (up to whitespace)'}.`
    : `No LLaMA-Factory template (at commit ${LLAMAFACTORY_COMMIT.slice(0, 8)}) lays conversations out as this model's chat template does, so the YAMLs leave \`template\` unset: LLaMA-Factory then builds one from the \`chat_template\` in the model's tokenizer_config.json (${new RunDir(runDir).tokenizer} holds the run's). Set \`template:\` yourself if one of its templates fits your base model.`;
  const lines = r.steps.map((s) => [
    s.command === 'train' ? `FORCE_TORCHRUN=1 llamafactory-cli train ${s.file}` : `llamafactory-cli export ${s.file}`,
    s.command === 'train' ? s.stage : `merge the ${s.stage} LoRA adapter into its base`,
  ]);
  const width = Math.max(...lines.map(([c]) => c.length));
  const commands = lines.map(([c, what]) => `${c.padEnd(width)}  # ${what}`);
  const first = r.steps.find((s) => s.command === 'train');
  return `# ${cfg.name}: hand-off to LLaMA-Factory

Exported by \`chimed export llamafactory ${runDir}\`. The datasets are the run's stage datasets after
deduplication and decontamination; the YAMLs carry its resolved hyperparameters
(${new RunDir(runDir).config}). Names follow LLaMA-Factory at commit ${LLAMAFACTORY_COMMIT}.

## Data (data/dataset_info.json)

${table.join('\n')}

Messages keep chimed's \`{role, content}\` keys; \`tags\` in dataset_info.json maps them. Each
rejection-sampling round's answers kept by the run's reward model are an SFT dataset of their own.
To bring LLaMA-Factory data into chimed, list a dataset_info.json as a source of \`chimed data build\`.

## Template

${tpl}

## Train

Run from this folder (paths are relative to it), in this order; each stage starts from the model the
previous one left, LoRA adapters merged first as chimed merges them:

\`\`\`sh
${commands.join('\n')}
\`\`\`

\`FORCE_TORCHRUN=1\` is needed with DeepSpeed (ds_z${zero}_config.json, ZeRO-${zero}); LLaMA-Factory starts torchrun
on every GPU of the machine. Several machines: add \`NNODES=2 NODE_RANK=0 MASTER_ADDR=host MASTER_PORT=29500\`
(NODE_RANK=1 on the second). With torchrun directly:

\`\`\`sh
torchrun --nnodes 1 --nproc_per_node 8 -m llamafactory.launcher ${first?.file ?? 'pt.yaml'}
\`\`\`

## Differences from the chimed run

- The first stage starts from \`${r.model}\`${r.model.startsWith(path.resolve(runDir)) ? " (the run's random-initialised base; pass --model to point at the real checkpoint or hub id)" : ''}.
- \`per_device_train_batch_size\` is the run's batch size: with N GPUs the global batch is N times larger; divide it (or \`gradient_accumulation_steps\`) to keep the run's.
- chimed trains in float32; the YAMLs set \`bf16: true\`. Its cosine schedule decays to 0.1 × lr (\`cosine_with_min_lr\`); transformers' \`linear\` decays to 0.
- \`val_size\` holds out the share chimed holds out for its eval loss (a different random split).
- \`warmup_ratio\` (LLaMA-Factory's examples use it) is deprecated in transformers 5, announced for removal in 5.2: if your transformers refuses it, rename it \`warmup_steps\` (there a float below 1 is a ratio).
- Rejection sampling itself (sampling and scoring with the reward model) stays in chimed: the rs YAMLs fine-tune on the answers the run kept. The reward model (rm.yaml) serves LLaMA-Factory's PPO (\`reward_model: saves/rm\`) or evaluation.
- Tokenizer: bos ${tok.bosToken ?? '(none)'}, eos ${tok.eosToken}; the model folders carry tokenizer.json and tokenizer_config.json.
${r.notes.map((n) => `- ${n}\n`).join('')}`;
}
