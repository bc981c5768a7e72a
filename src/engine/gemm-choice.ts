/**
 * Which GEMM path runs each shape class: the addon's built-in blocked GEMM or OpenBLAS. Both are
 * compiled in when the build found OpenBLAS, and neither wins everywhere (on Zen 4/5 the built-in
 * AVX-512 kernel is ~1.7x OpenBLAS 0.3.21's Haswell kernels; on older CPUs OpenBLAS may win), so
 * the faster one is measured on first use and remembered per machine.
 *
 * Order of precedence, per process and thread count:
 * 1. setGemmChoice(backends): a pinned table (a resumed run restores its recorded one);
 * 2. CHIMED_GEMM=builtin | openblas: that path everywhere (auto, the default, goes on);
 * 3. the per-machine cache, CHIMED_GEMM_CACHE (a file path, or "off"), by default
 *    $XDG_CACHE_HOME/chimed/gemm.json or ~/.cache/chimed/gemm.json, keyed by CPU model, thread
 *    count, SIMD features, OpenBLAS build and the addon binary;
 * 4. a measurement (gemmMeasure: the CPU time of each class's representative products on both paths,
 *    interleaved, best of 5; ~0.1 s on 2 idle cores), written to the cache.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon, addonFile, type GemmBackend, type GemmBackends } from './addon.js';
import type { FloatArray, Kernels } from './kernels.js';

export type { GemmBackend, GemmBackends } from './addon.js';

/** What a choice is for: the cache key's parts. */
export interface GemmMachine {
  cpu: string;
  threads: number;
  simd: string;
  /** OpenBLAS build description, null when the addon has no OpenBLAS. */
  openblas: string | null;
  /** First 16 hex digits of the addon binary's SHA-256 (a rebuilt kernel is measured again). */
  addon: string;
}

export type GemmMeasurement = Record<string, Record<GemmBackend, number | null>>;

export interface GemmChoice {
  backends: GemmBackends;
  /** set: setGemmChoice; env: CHIMED_GEMM; builtin-only: no OpenBLAS in this build; cache / measured. */
  source: 'set' | 'env' | 'builtin-only' | 'cache' | 'measured';
  machine: GemmMachine;
  /** Best CPU ms per class and path, when the choice was measured (now or when the cache entry was written). */
  measuredMs?: GemmMeasurement;
}

const MEASURE_ROUNDS = 5;
// OpenBLAS must win by more than this to be chosen: closer than that is measurement noise, and
// a stable choice keeps runs on one machine on one path.
const OPENBLAS_MARGIN = 0.97;
const CACHE_VERSION = 1;

let cpu: string | undefined;

function cpuModel(): string {
  cpu ??= readCpuModel();
  return cpu;
}

function readCpuModel(): string {
  const name = os.cpus()[0]?.model?.trim() || 'unknown CPU';
  try {
    // virtual machines often report a bare "AMD EPYC": family/model/stepping tell generations apart
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const field = (key: string) => new RegExp(`^${key}\\s*:\\s*(.+)$`, 'm').exec(info)?.[1].trim();
    const family = field('cpu family'),
      model = field('model'),
      stepping = field('stepping');
    if (family && model) return `${name} (family ${family} model ${model}${stepping ? ` stepping ${stepping}` : ''})`;
  } catch {
    // not Linux: the model name alone
  }
  return name;
}

let addonHash: string | undefined;

/** The machine and build a choice made now would be for. */
export function gemmMachine(): GemmMachine {
  const info = addon().info();
  addonHash ??= createHash('sha256').update(fs.readFileSync(addonFile())).digest('hex').slice(0, 16);
  return { cpu: cpuModel(), threads: info.threads, simd: info.simd, openblas: info.openblas, addon: addonHash };
}

function machineKey(m: GemmMachine): string {
  return [m.cpu, `${m.threads} threads`, m.simd, m.openblas ?? 'no OpenBLAS', `addon ${m.addon}`].join(' | ');
}

/** The cache file: CHIMED_GEMM_CACHE (a path, or "off" for none), else the user's cache directory. */
export function gemmCachePath(env: NodeJS.ProcessEnv = process.env): string | null {
  const set = env.CHIMED_GEMM_CACHE;
  if (set === 'off') return null;
  if (set) return path.resolve(set);
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'chimed', 'gemm.json');
}

/** The faster path per class; OpenBLAS only when it is clearly faster. */
export function chooseBackends(measured: GemmMeasurement): GemmBackends {
  const out: GemmBackends = {};
  for (const [cls, t] of Object.entries(measured)) {
    out[cls] = t.openblas !== null && t.builtin !== null && t.openblas < OPENBLAS_MARGIN * t.builtin ? 'openblas' : 'builtin';
  }
  return out;
}

function uniform(classes: string[], backend: GemmBackend): GemmBackends {
  return Object.fromEntries(classes.map((c) => [c, backend]));
}

function isBackends(v: unknown, classes: string[]): v is GemmBackends {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return classes.every((c) => o[c] === 'builtin' || o[c] === 'openblas');
}

interface CacheEntry {
  machine: GemmMachine;
  backends: GemmBackends;
  measuredMs: GemmMeasurement;
  at: string;
}

function readCache(file: string): Record<string, CacheEntry> {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (v?.version === CACHE_VERSION && typeof v.entries === 'object' && v.entries !== null) return v.entries;
  } catch {
    // missing or unreadable: measured again and rewritten
  }
  return {};
}

// Synchronous, because the first GEMM call decides; temp file + rename so that concurrent
// processes never read a partial file.
function writeCache(file: string, entries: Record<string, CacheEntry>): void {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify({ version: CACHE_VERSION, entries }, null, 1) + '\n');
    fs.renameSync(tmp, file);
  } catch (e) {
    process.stderr.write(
      `chimed: cannot write the GEMM choice cache ${file} (${(e as Error).message}); set CHIMED_GEMM_CACHE to another file or "off"\n`,
    );
  }
}

export interface DecideOptions {
  /** CHIMED_GEMM's value. */
  env: string | undefined;
  cacheFile: string | null;
  machine: GemmMachine;
  /** Every shape class of the addon. */
  classes: string[];
  measure: () => GemmMeasurement;
}

/** The choice for one machine and thread count, from the environment, the cache or a measurement. */
export function decideGemmChoice(o: DecideOptions): GemmChoice {
  const mode = o.env?.trim().toLowerCase() || 'auto';
  if (mode !== 'auto' && mode !== 'builtin' && mode !== 'openblas') {
    throw new Error(`CHIMED_GEMM must be auto, builtin or openblas, got "${o.env}"`);
  }
  if (mode === 'openblas' && !o.machine.openblas) {
    throw new Error(
      'CHIMED_GEMM=openblas, but this build of the addon has no OpenBLAS (cblas.h was not found when it was built): ' +
        'install libopenblas-dev and rebuild (npm run install), or unset CHIMED_GEMM',
    );
  }
  if (mode !== 'auto') return { backends: uniform(o.classes, mode), source: 'env', machine: o.machine };
  if (!o.machine.openblas) return { backends: uniform(o.classes, 'builtin'), source: 'builtin-only', machine: o.machine };
  const key = machineKey(o.machine);
  const entries = o.cacheFile ? readCache(o.cacheFile) : {};
  const hit = entries[key];
  if (hit && isBackends(hit.backends, o.classes))
    return { backends: hit.backends, source: 'cache', machine: o.machine, measuredMs: hit.measuredMs };
  const measuredMs = o.measure();
  const backends = chooseBackends(measuredMs);
  if (o.cacheFile)
    writeCache(o.cacheFile, { ...entries, [key]: { machine: o.machine, backends, measuredMs, at: new Date().toISOString() } });
  return { backends, source: 'measured', machine: o.machine, measuredMs };
}

// ---------------------------------------------------------------- process state

let pinned: GemmBackends | null = null;
const decided = new Map<number, GemmChoice>();
let applied: GemmChoice | null = null;

function current(): GemmChoice {
  const threads = addon().getThreads();
  if (applied && applied.machine.threads === threads) return applied;
  const machine = gemmMachine();
  let choice: GemmChoice;
  if (pinned) choice = { backends: pinned, source: 'set', machine };
  else {
    choice =
      decided.get(threads) ??
      decideGemmChoice({
        env: process.env.CHIMED_GEMM,
        cacheFile: gemmCachePath(),
        machine,
        classes: Object.keys(addon().getGemmBackends()),
        measure: () => addon().gemmMeasure(MEASURE_ROUNDS),
      });
    decided.set(threads, choice);
  }
  addon().setGemmBackends(choice.backends);
  applied = choice;
  return choice;
}

/** Makes sure the addon dispatches by the choice for the current thread count (cheap once decided). */
export function ensureGemmChoice(): void {
  current();
}

/** The GEMM path per shape class that this process uses now, and how it was decided. */
export function gemmChoice(): GemmChoice {
  return current();
}

/**
 * Pins the path of every class (whatever the thread count, environment or cache), e.g. to what a
 * checkpoint recorded; null unpins. Throws, changing nothing, when a class is missing or names
 * OpenBLAS in a build without it.
 */
export function setGemmChoice(backends: GemmBackends | null): void {
  if (backends) addon().setGemmBackends(backends); // validates
  pinned = backends ? { ...backends } : null;
  applied = null;
}

// ---------------------------------------------------------------- run records

/** What a run records about the engine it ran on (trainer_state.json, engine.json). */
export interface EngineRecord {
  kernels: string;
  cpu: string;
  threads: number;
  simd: string;
  openblas: string | null;
  gemm: GemmBackends;
  gemm_source: GemmChoice['source'];
}

/** The record for these kernels, or null for kernels without native state (the float64 reference). */
export function engineRecord(k: Kernels<FloatArray>): EngineRecord | null {
  if (k.name !== 'native') return null;
  const c = gemmChoice();
  return {
    kernels: k.name,
    cpu: c.machine.cpu,
    threads: c.machine.threads,
    simd: c.machine.simd,
    openblas: c.machine.openblas,
    gemm: c.backends,
    gemm_source: c.source,
  };
}

/**
 * Pins the GEMM paths a run recorded, so that a resumed run multiplies exactly as before.
 * Returns the problems that keep the resume from being bit-identical (another thread count, a
 * path this build lacks, an unknown record) for the caller to warn about; applies nothing it
 * cannot. Undo with setGemmChoice(previous).
 */
export function restoreEngineRecord(k: Kernels<FloatArray>, record: unknown): string[] {
  if (k.name !== 'native' || record === undefined) return [];
  const r = record as Partial<EngineRecord>;
  const classes = Object.keys(addon().getGemmBackends());
  if (!isBackends(r.gemm, classes))
    return ["the recorded GEMM choice is missing or names other shape classes; using this machine's choice"];
  const problems: string[] = [];
  const threads = addon().getThreads();
  if (r.threads !== threads) problems.push(`it ran on ${r.threads} threads, this run has ${threads}`);
  if (Object.values(r.gemm).includes('openblas') && !addon().info().openblas) {
    problems.push('it used OpenBLAS, which this build of the addon lacks; using the built-in GEMM');
    return problems;
  }
  setGemmChoice(r.gemm);
  return problems;
}

/** The currently pinned table (to restore after a temporary pin). */
export function pinnedGemmChoice(): GemmBackends | null {
  return pinned ? { ...pinned } : null;
}

/** One line for logs and benchmarks: "builtin (measured)", "builtin; openblas for NT-narrow (cache)". */
export function describeGemmChoice(c: GemmChoice): string {
  const byPath = (p: GemmBackend) => Object.keys(c.backends).filter((k) => c.backends[k] === p);
  const blas = byPath('openblas'),
    builtin = byPath('builtin');
  const text =
    blas.length === 0
      ? 'builtin'
      : builtin.length === 0
        ? 'openblas'
        : blas.length <= builtin.length
          ? `builtin; openblas for ${blas.join(', ')}`
          : `openblas; builtin for ${builtin.join(', ')}`;
  return `${text} (${c.source})`;
}
