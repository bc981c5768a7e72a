import type { KernelTime } from '../src/engine/profile.js';

// The --profile table of the benches (train, generate): KernelProfile's times per kernel kind
// and phase, averaged per step, with what each phase spends outside the kernels.

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** A row of the profile table: one kernel kind, wall ms per step in each phase, totals in wall and CPU time. */
export interface ProfileRow {
  kind: string;
  ms: Record<string, number>;
  total_ms: number;
  cpu_ms: number;
  /** Share of the step's wall time, and of its CPU time. */
  share: number;
  cpu_share: number;
  calls: number;
  gflops?: number;
}

export interface PhaseTime {
  ms: number;
  /** CPU time of all threads. */
  cpuMs: number;
}

/** The table's rows, one per kernel kind plus the TypeScript around the kernels, averaged over `steps`; shares are of `step`. */
export function profileRows(
  times: Map<string, Map<string, KernelTime>>,
  phases: Record<string, PhaseTime>,
  steps: number,
  step: PhaseTime,
): ProfileRow[] {
  const kinds = new Map<string, ProfileRow & { flops: number }>();
  for (const [phase, byKind] of times)
    for (const [kind, t] of byKind) {
      const row = kinds.get(kind) ?? { kind, ms: {}, total_ms: 0, cpu_ms: 0, share: 0, cpu_share: 0, calls: 0, flops: 0 };
      row.ms[phase] = (row.ms[phase] ?? 0) + t.ms / steps;
      row.total_ms += t.ms / steps;
      row.cpu_ms += t.cpuMs / steps;
      row.calls += t.calls / steps;
      row.flops += t.flops / steps;
      kinds.set(kind, row);
    }
  const ts: ProfileRow = { kind: 'TypeScript (outside kernels)', ms: {}, total_ms: 0, cpu_ms: 0, share: 0, cpu_share: 0, calls: 0 };
  for (const [phase, wall] of Object.entries(phases)) {
    const inKernels = [...(times.get(phase)?.values() ?? [])];
    ts.ms[phase] = Math.max(0, wall.ms - inKernels.reduce((s, t) => s + t.ms, 0) / steps);
    ts.total_ms += ts.ms[phase];
    ts.cpu_ms += Math.max(0, wall.cpuMs - inKernels.reduce((s, t) => s + t.cpuMs, 0) / steps);
  }
  const rows: ProfileRow[] = [...kinds.values()].map(({ flops, ...r }) =>
    flops > 0 ? { ...r, gflops: round(flops / 1e6 / r.total_ms) } : r,
  );
  rows.push(ts);
  for (const r of rows) {
    r.share = round((100 * r.total_ms) / step.ms);
    r.cpu_share = round((100 * r.cpu_ms) / step.cpuMs);
    r.total_ms = round(r.total_ms);
    r.cpu_ms = round(r.cpu_ms);
    r.calls = round(r.calls);
    for (const p of Object.keys(r.ms)) r.ms[p] = round(r.ms[p]);
  }
  return rows.sort((x, y) => y.cpu_ms - x.cpu_ms);
}

/** The rows as a text table; per: what the figures are averaged over (a training step, a generation run). */
export function profileTable(rows: ProfileRow[], phases: Record<string, PhaseTime>, per = 'step'): string {
  const names = Object.keys(phases);
  const head = [
    'kind'.padEnd(30),
    ...names.map((p) => p.padStart(10)),
    'wall'.padStart(9),
    '%wall'.padStart(7),
    'cpu'.padStart(9),
    '%cpu'.padStart(7),
    'calls'.padStart(7),
    'GFLOP/s'.padStart(9),
  ].join(' ');
  const line = (r: ProfileRow) =>
    [
      r.kind.padEnd(30),
      ...names.map((p) => String(r.ms[p] ?? '').padStart(10)),
      String(r.total_ms).padStart(9),
      `${r.share}%`.padStart(7),
      String(r.cpu_ms).padStart(9),
      `${r.cpu_share}%`.padStart(7),
      String(r.calls).padStart(7),
      String(r.gflops ?? '').padStart(9),
    ].join(' ');
  const wall = [
    'phase wall ms (cpu ms)'.padEnd(30),
    ...names.map((p) => `${round(phases[p].ms)} (${round(phases[p].cpuMs)})`.padStart(10)),
  ].join(' ');
  return [`(phase columns and wall: wall ms per ${per}; cpu: CPU ms of all threads per ${per})`, head, ...rows.map(line), wall].join('\n');
}
