/**
 * Data-parallel ranks over MPI (build/Release/chimed_mpi.node, native/mpi/mpi.cc): which rank
 * this process is, and the collectives the trainer, evaluation and rejection sampling need.
 * A process not started by mpirun (or started with one rank) never loads libmpi: it is rank 0
 * of 1 and every collective is the identity. One started as one of several ranks initialises
 * MPI on first use, finalises it at exit, and turns an uncaught error into MPI_Abort so the
 * other ranks stop too instead of waiting forever in the next collective.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from './addon.js';

export interface MpiInfo {
  /** The binding was built against an MPI library (mpi.h found at build time). */
  mpi: boolean;
  /** That library's version line, e.g. "Open MPI v4.1.4"; "" without MPI. */
  library: string;
  /** Why there is no MPI, for messages; "" with MPI. */
  reason: string;
}

interface MpiAddon {
  info(): { mpi: boolean; library: string };
  init(): { rank: number; size: number };
  finalize(): void;
  abort(code: number): void;
  allreduce(a: Float32Array | Float64Array, op: 'sum' | 'avg' | 'max' | 'min'): void;
  broadcast(a: Float32Array | Float64Array | Uint8Array, root: number): void;
  allgather(a: Uint8Array): Uint8Array[];
  barrier(): void;
}

/** The collectives every rank calls in the same order. With one rank each is the identity. */
export interface Dist {
  readonly rank: number;
  readonly size: number;
  /** Rank 0: the one that writes checkpoints, metrics, progress and reports. */
  readonly isRoot: boolean;
  /** In place: every rank ends with the element-wise sum over ranks. */
  allreduceSum(a: Float32Array | Float64Array): void;
  /** In place: every rank ends with the element-wise mean over ranks. */
  allreduceAverage(a: Float32Array | Float64Array): void;
  /** Every rank's JSON-serialisable value, in rank order. */
  allgather<T>(value: T): T[];
  /** Rank `root`'s value on every rank (the others pass anything, e.g. undefined); sent as JSON, for small values. */
  broadcast<T>(value: T, root?: number): T;
  /** In place: every rank's array ends equal to rank `root`'s (weights, optimizer moments). */
  broadcastArray(a: Float32Array | Float64Array, root?: number): void;
  barrier(): void;
}

export class DistError extends Error {}

/** An informational line on stderr, written once per job (by rank 0); warnings and errors each rank writes itself. */
export function say(line: string): void {
  if (dist().isRoot) process.stderr.write(`${line}\n`);
}

/**
 * The number of ranks the launcher started, from its environment: Open MPI's mpirun sets
 * OMPI_COMM_WORLD_SIZE, MPICH's Hydra and Slurm's PMI set PMI_SIZE. 1 when not launched by one.
 */
export function launchedRanks(env: NodeJS.ProcessEnv = process.env): number {
  for (const name of ['OMPI_COMM_WORLD_SIZE', 'PMI_SIZE']) {
    const n = Number(env[name]);
    if (Number.isInteger(n) && n >= 1) return n;
  }
  return 1;
}

let addon: MpiAddon | null | undefined;

/**
 * The binding, or null when it has none. CHIMED_NO_MPI=1 at run time makes a build with MPI
 * act as one without (the refusal below is then the same path a build without mpi.h takes).
 */
function loadAddon(): { addon: MpiAddon | null; reason: string } {
  if (process.env.CHIMED_NO_MPI) return { addon: null, reason: 'CHIMED_NO_MPI is set, which makes it act as a build without MPI' };
  if (addon === undefined) {
    const file = path.join(packageRoot(), 'build', 'Release', 'chimed_mpi.node');
    if (!existsSync(file)) throw new DistError(`chimed: the MPI binding ${file} is missing; rebuild the addon (npm run install)`);
    const a = createRequire(import.meta.url)(file) as MpiAddon;
    addon = a.info().mpi ? a : null;
  }
  return { addon, reason: addon ? '' : 'the addon was built without it (no mpi.h at build time)' };
}

export function mpiInfo(): MpiInfo {
  const { addon: a, reason } = loadAddon();
  return { mpi: a !== null, library: a ? a.info().library : '', reason };
}

/** One line for `chimed --version` and `bench kernels`. */
export function mpiSummary(): string {
  const i = mpiInfo();
  return i.mpi ? `MPI: ${i.library}` : `MPI: none (${i.reason}; one process per run)`;
}

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v ?? null));
const unjson = <T>(b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as T;

const single: Dist = {
  rank: 0,
  size: 1,
  isRoot: true,
  allreduceSum: () => {},
  allreduceAverage: () => {},
  allgather: (v) => [v],
  broadcast: (v) => v,
  broadcastArray: () => {},
  barrier: () => {},
};

function mpiDist(a: MpiAddon): Dist {
  const { rank, size } = a.init();
  return {
    rank,
    size,
    isRoot: rank === 0,
    allreduceSum: (x) => a.allreduce(x, 'sum'),
    allreduceAverage: (x) => a.allreduce(x, 'avg'),
    allgather: <T>(v: T) => a.allgather(json(v)).map((b) => unjson<T>(b)),
    broadcast: <T>(v: T, root = 0) => {
      const bytes = rank === root ? json(v) : new Uint8Array(0);
      const n = new Float64Array([bytes.length]);
      a.broadcast(n, root);
      const buf = rank === root ? bytes : new Uint8Array(n[0]);
      a.broadcast(buf, root);
      return unjson<T>(buf);
    },
    broadcastArray: (x, root = 0) => a.broadcast(x, root),
    barrier: () => a.barrier(),
  };
}

let current: Dist | undefined;

/**
 * This process's place among the ranks, set up on first call. Under a launcher with more than
 * one rank and no MPI in this build it refuses: N independent runs would each train on all
 * the data and write one run directory.
 */
export function dist(): Dist {
  if (current) return current;
  const n = launchedRanks();
  if (n === 1) return (current = single);
  const { addon: a, reason } = loadAddon();
  if (!a) {
    throw new DistError(
      `started as one of ${n} ranks (mpirun -np ${n}), but this chimed has no MPI: ${reason}. ` +
        `${n} independent runs would each train on all the data and write the same run directory, so none is started. ` +
        'Install Open MPI (apt-get install openmpi-bin libopenmpi-dev) and rebuild the addon (npm run install), or run with -np 1.',
    );
  }
  current = mpiDist(a);
  process.on('exit', () => a.finalize());
  // an error nothing caught (Node would exit, leaving the other ranks waiting) ends the job
  process.on('uncaughtException', (e) => abortRanks(`chimed: ${e.stack ?? e}`));
  return current;
}

/**
 * Ends every rank after a fatal error on this one: prints the message naming the rank, then
 * MPI_Abort, which makes the launcher kill the others (they may be blocked in a collective).
 * With one rank it only prints. Never returns when there are several ranks.
 */
export function abortRanks(message: string): void {
  const d = current;
  if (!d || d.size === 1) {
    process.stderr.write(`${message}\n`);
    return;
  }
  process.stderr.write(`chimed: rank ${d.rank} of ${d.size} failed: ${message.replace(/^chimed: /, '')}\n`);
  loadAddon().addon!.abort(1);
}

/**
 * Rank 0 runs `fn` first; the others run it after a barrier, when what it writes to the
 * shared run directory is in place (so they read it instead of writing it again).
 */
export async function rootFirst<T>(fn: () => Promise<T>): Promise<T> {
  const d = dist();
  if (d.isRoot) {
    const r = await fn();
    d.barrier();
    return r;
  }
  d.barrier();
  return fn();
}

/** Item i goes to rank i mod size (so long and short items spread evenly). */
function share<T>(items: readonly T[], d: Dist): T[] {
  return items.filter((_, i) => i % d.size === d.rank);
}

/** Every rank's results of its share, back in item order, on every rank (JSON-serialisable results). */
function gatherShares<R>(n: number, mine: R[], d: Dist): R[] {
  const parts = d.allgather(mine);
  return Array.from({ length: n }, (_, i) => parts[i % d.size][Math.floor(i / d.size)]);
}

/**
 * `fn` (one result per item, in order) over this rank's share of `items`; every rank gets all
 * results in item order. For evaluation and generation, whose items are independent.
 */
export function splitItems<T, R>(items: readonly T[], fn: (mine: T[]) => R[]): R[] {
  const d = dist();
  return d.size === 1 ? fn([...items]) : gatherShares(items.length, fn(share(items, d)), d);
}

export async function splitItemsAsync<T, R>(items: readonly T[], fn: (mine: T[]) => Promise<R[]>): Promise<R[]> {
  const d = dist();
  return d.size === 1 ? fn([...items]) : gatherShares(items.length, await fn(share(items, d)), d);
}

/**
 * Like splitItems, in whole batches of `unit` items: batch j (items from j * unit) goes to rank
 * j mod size, and `fn` gets it with its offset. Generation batches then hold the items and
 * draw the sampling seeds (seed + offset) they do in one process.
 */
export function splitBatches<T, R>(items: readonly T[], unit: number, fn: (batch: T[], offset: number) => R[]): R[] {
  const offsets = Array.from({ length: Math.ceil(items.length / unit) }, (_, j) => j * unit);
  return splitItems(offsets, (mine) => mine.map((o) => fn(items.slice(o, o + unit), o))).flat();
}
