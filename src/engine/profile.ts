import fs from 'node:fs';
import type { FloatArray, Kernels } from './kernels.js';

/** Time and calls of one kernel kind in one phase; flops for GEMMs. */
export interface KernelTime {
  /** Wall-clock time. */
  ms: number;
  /** CPU time of the process's threads meanwhile: the work done, which other processes on a busy machine slow far less than the wall time. */
  cpuMs: number;
  calls: number;
  flops: number;
}

/** CPU time of this process (all threads) in ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
}

let schedstat: number | null | undefined;
const schedstatBuf = Buffer.alloc(128);

/**
 * Time the calling (main) thread has spent on a CPU, in ms (Linux schedstat, ns resolution), or
 * null where the kernel does not expose it. The main thread is charged nothing while it waits for
 * CPUs held by other processes, so on a shared machine this estimates the idle wall time: from
 * below, exactly when the parallel work is split evenly (a thread with the larger share makes the
 * idle wall longer). Process CPU time over the thread count is a worse estimate: it also halves
 * the single-threaded TypeScript.
 */
export function mainThreadCpuMs(): number | null {
  if (schedstat === undefined) {
    try {
      schedstat = fs.openSync('/proc/thread-self/schedstat', 'r');
    } catch {
      schedstat = null;
    }
  }
  if (schedstat === null) return null;
  const n = fs.readSync(schedstat, schedstatBuf, 0, schedstatBuf.length, 0);
  return Number(schedstatBuf.toString('latin1', 0, n).split(' ')[0]) / 1e6;
}

/**
 * Timing wrappers around a kernel set, for profiling only (the plain kernels carry no timers).
 * Every call is timed under the current `phase` and a kind: the kernel's name, and for GEMM its
 * transposition and the label `gemmLabel` gives its shape (its dispatch class, say), so a step
 * splits into "forward gemm NT-large", "backward attentionBackward", ...; whatever a phase
 * spends outside kernels is TypeScript (tape, ops, allocation).
 */
export class KernelProfile<F extends FloatArray> {
  readonly kernels: Kernels<F>;
  phase = 'other';
  private readonly times = new Map<string, Map<string, KernelTime>>();

  constructor(inner: Kernels<F>, gemmLabel: (transA: boolean, transB: boolean, M: number, N: number, K: number) => string = () => '') {
    const timed = (kind: string, flops: number, fn: () => void) => {
      const c0 = cpuMs(),
        t0 = process.hrtime.bigint();
      fn();
      const ms = Number(process.hrtime.bigint() - t0) / 1e6,
        cpu = cpuMs() - c0;
      let phase = this.times.get(this.phase);
      if (!phase) this.times.set(this.phase, (phase = new Map()));
      const t = phase.get(kind) ?? { ms: 0, cpuMs: 0, calls: 0, flops: 0 };
      phase.set(kind, { ms: t.ms + ms, cpuMs: t.cpuMs + cpu, calls: t.calls + 1, flops: t.flops + flops });
    };
    const wrapped: Record<string, unknown> = { name: inner.name, alloc: (n: number) => inner.alloc(n) };
    for (const key of Object.keys(inner) as (keyof Kernels<F>)[]) {
      const fn = inner[key];
      if (key === 'name' || key === 'alloc' || typeof fn !== 'function') continue;
      wrapped[key] =
        key === 'gemm'
          ? (tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, A: F, B: F, beta: number, C: F) =>
              timed(`gemm ${gemmLabel(tA, tB, M, N, K) || `${tA ? 'T' : 'N'}${tB ? 'T' : 'N'}`}`, 2 * M * N * K, () =>
                inner.gemm(tA, tB, M, N, K, alpha, A, B, beta, C),
              )
          : (...args: unknown[]) => {
              let r: unknown;
              timed(key, 0, () => {
                r = (fn as (...a: unknown[]) => unknown).apply(inner, args);
              });
              return r;
            };
    }
    this.kernels = wrapped as unknown as Kernels<F>;
  }

  /** Accumulated times per phase and kind (since construction or the last reset). */
  snapshot(): Map<string, Map<string, KernelTime>> {
    return new Map([...this.times].map(([p, m]) => [p, new Map([...m].map(([k, t]) => [k, { ...t }]))]));
  }

  reset(): void {
    this.times.clear();
  }
}
