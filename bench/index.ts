import { benchDataCommand } from './data.js';
import { benchGenerate } from './generate.js';
import { benchKernels } from './kernels.js';
import { benchMcq } from './mcq.js';
import { benchParity } from './parity.js';
import { benchServe } from './serve.js';
import { benchTokenize } from './tokenize.js';
import { benchTrain } from './train.js';

/** `npm run bench -- NAME ...` and `chimed bench NAME ...` share this table. */
export const benches: Record<string, { summary: string; run: (argv: string[]) => Promise<unknown> }> = {
  train: { summary: 'training step throughput and memory of a LLaMA configuration', run: benchTrain },
  data: { summary: 'import and dedup MB/s', run: benchDataCommand },
  generate: { summary: 'prefill/decode tokens/s vs llama.cpp (node-llama-cpp) on the same f32 model', run: benchGenerate },
  kernels: { summary: 'GEMM GFLOP/s (OpenBLAS and built-in) and attention forward/backward times', run: benchKernels },
  mcq: { summary: 'MCQ log-likelihood scoring items/s (k-shot prompts)', run: benchMcq },
  parity: { summary: 'tokenizer parity (records, id and decode mismatches) vs @huggingface/tokenizers and SentencePiece on the shared data', run: benchParity },
  serve: { summary: 'N concurrent streaming clients on loopback: requests/s, time to first token, p50/p95 latency', run: benchServe },
  tokenize: { summary: 'encode MB/s vs @huggingface/tokenizers on the same text and vocabulary', run: benchTokenize },
};

export async function benchCommand(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const b = name ? benches[name] : undefined;
  if (!b) {
    process.stdout.write(`chimed bench NAME [options] --json\n\n${Object.entries(benches).map(([n, x]) => `  ${n.padEnd(10)} ${x.summary}`).join('\n')}\n`);
    return name ? 1 : 0;
  }
  await b.run(rest);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await benchCommand(process.argv.slice(2));
