import { benchContention } from './contention.js';
import { benchDataCommand } from './data.js';
import { benchGenerate } from './generate.js';
import { benchKernels } from './kernels.js';
import { benchMcq } from './mcq.js';
import { benchMpi } from './mpi.js';
import { benchParity } from './parity.js';
import { benchServe } from './serve.js';
import { benchTokenize } from './tokenize.js';
import { benchTrain } from './train.js';
import { commandList, dispatch } from '../src/io/argv.js';

/** `npm run bench -- NAME ...` and `chimed bench NAME ...` share this table. */
export const benches: Record<string, { summary: string; run: (argv: string[]) => Promise<unknown> }> = {
  train: { summary: 'training step throughput and memory of a LLaMA configuration', run: benchTrain },
  contention: {
    summary: 'MCQ scoring items/s alone, two processes at once, and next to a busy chimed serve (shares of solo)',
    run: benchContention,
  },
  data: { summary: 'import and dedup MB/s', run: benchDataCommand },
  generate: { summary: 'prefill/decode tokens/s vs llama.cpp (node-llama-cpp) on the same f32 model', run: benchGenerate },
  kernels: { summary: 'GEMM GFLOP/s (OpenBLAS and built-in) and attention forward/backward times', run: benchKernels },
  mpi: {
    summary: 'data-parallel training tokens/s: 1 rank x N threads vs N ranks x 1 thread (mpirun), all-reduce ms/step and its share',
    run: benchMpi,
  },
  mcq: { summary: 'MCQ log-likelihood scoring items/s (k-shot prompts)', run: benchMcq },
  parity: {
    summary: 'tokenizer parity (records, id and decode mismatches) vs @huggingface/tokenizers and SentencePiece on the shared data',
    run: benchParity,
  },
  serve: { summary: 'N concurrent streaming clients on loopback: requests/s, time to first token, p50/p95 latency', run: benchServe },
  tokenize: { summary: 'encode MB/s vs @huggingface/tokenizers on the same text and vocabulary', run: benchTokenize },
};

const runs = Object.fromEntries(
  Object.entries(benches).map(([n, b]) => [
    n,
    {
      summary: b.summary,
      run: async (argv: string[]) => {
        await b.run(argv);
        return 0;
      },
    },
  ]),
);

export function benchCommand(argv: string[]): Promise<number> {
  return dispatch(argv, runs, `chimed bench NAME [options] --json\n\n${commandList(runs)}`, 'benchmark');
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await benchCommand(process.argv.slice(2));
