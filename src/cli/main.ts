import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchCommand } from '../../bench/index.js';
import { packageRoot } from '../engine/addon.js';
import { abortRanks, dist, launchedRanks, mpiSummary } from '../engine/dist.js';
import { nativeInfo, setThreads } from '../engine/native.js';
import { commandList, dispatch, UsageError, type Command } from '../io/argv.js';
import { dataCommand } from './data.js';
import { evalCommand } from './eval.js';
import { exportCommand } from './export.js';
import { chatCommand, generateCommand } from './generate.js';
import { initCommand } from './init.js';
import { demoCommand, runCommand } from './run.js';
import { reportCommand } from './report.js';
import { scoreCommand } from './score.js';
import { serveCommand } from './serve.js';
import { tokenizerCommand } from './tokenizer.js';
import { trainCommand } from './train.js';

const commands: Record<string, Command> = {
  demo: { summary: 'the whole regime on the built-in medical corpus (about 10 min on 2 cores; --fast about 1)', run: demoCommand },
  run: { summary: 'the whole regime from a YAML config; resumes', run: runCommand },
  data: { summary: 'import, build (dedup + decontamination), dedup, decontam, stats', run: dataCommand },
  tokenizer: { summary: 'train a byte-level BPE tokenizer; encode text', run: tokenizerCommand },
  init: { summary: 'write a random-initialised model in HF layout', run: initCommand },
  train: { summary: 'train one stage: pt, sft, rm, rs, dpo', run: trainCommand },
  score: { summary: 'per-token log-probabilities of a text under a model', run: scoreCommand },
  eval: { summary: 'evaluate: mcq, gen (BLEU/ROUGE), ner, scale (attitudes), ppl', run: evalCommand },
  report: { summary: 'report.md / report.html with charts for a run directory', run: reportCommand },
  generate: { summary: 'answer prompts (file or argument) with a model, JSONL out', run: generateCommand },
  chat: { summary: 'multi-turn chat in the terminal, streamed', run: chatCommand },
  serve: { summary: 'OpenAI-compatible API + web chat and preference annotation at /', run: serveCommand },
  export: {
    summary: 'export models: hf, gguf (f32/f16/q8_0), merge (LoRA into its base); llamafactory (a run for GPU clusters)',
    run: exportCommand,
  },
  bench: { summary: 'benchmarks printing figures (train, kernels, tokenize, data, generate, mcq, serve)', run: benchCommand },
};

const USAGE = `chimed — train a Chinese medical LLM end to end on CPU

Usage: chimed COMMAND [options]   (chimed COMMAND --help for its options; chimed --version)

${commandList(commands)}`;

/**
 * `chimed ARGV...`: returns the exit code. Every error we raise names its file / field, so
 * only the message is printed (the stack with CHIMED_DEBUG=1); usage errors exit 2.
 */
export async function main(argv: string[]): Promise<number> {
  try {
    if (argv[0] === '--version') {
      process.stdout.write(versionText());
      return 0;
    }
    if (launchedRanks() > 1) startRanks(argv[0]);
    return await dispatch(argv, commands, USAGE);
  } catch (e) {
    const err = e as Error;
    // with several ranks this ends them all (they may wait for this one in a collective)
    abortRanks(`chimed: ${process.env.CHIMED_DEBUG ? (err.stack ?? err.message) : err.message}`);
    return err instanceof UsageError ? 2 : 1;
  }
}

/** The commands that run as several MPI ranks (data-parallel training); the rest run as one process. */
const RANKED = new Set(['train', 'run', 'demo', 'bench']);

/**
 * Joins the other ranks (refusing when this build has no MPI: engine/dist.ts). Rank 0 alone
 * prints results: the others' stdout is dropped, their stderr (warnings, errors) kept.
 */
function startRanks(command: string | undefined): void {
  const d = dist();
  if (command && !RANKED.has(command) && commands[command])
    throw new UsageError(`chimed ${command} runs as one process; start it without mpirun (or with -np 1)`);
  if (!d.isRoot) process.stdout.write = () => true;
  // ranks sharing a machine share its cores, unless told otherwise (OMP_NUM_THREADS, --threads)
  const local = Number(process.env.OMPI_COMM_WORLD_LOCAL_SIZE ?? process.env.MPI_LOCALNRANKS);
  if (process.env.OMP_NUM_THREADS === undefined && local > 1) setThreads(Math.max(1, Math.floor(os.availableParallelism() / local)));
}

function versionText(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  const n = nativeInfo();
  return `chimed ${pkg.version}\nnative: ${n.simd}, ${n.threads} threads; OpenBLAS: ${n.openblas ?? 'not linked'}\n${mpiSummary()}\n`;
}
