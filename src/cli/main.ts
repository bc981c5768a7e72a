import { benchCommand } from '../../bench/index.js';
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

Usage: chimed COMMAND [options]   (chimed COMMAND --help for its options)

${commandList(commands)}`;

/**
 * `chimed ARGV...`: returns the exit code. Every error we raise names its file / field, so
 * only the message is printed (the stack with CHIMED_DEBUG=1); usage errors exit 2.
 */
export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv, commands, USAGE);
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`chimed: ${process.env.CHIMED_DEBUG ? (err.stack ?? err.message) : err.message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}
