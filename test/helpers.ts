import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FrozenWeight } from '../src/engine/frozen.js';
import type { Llama } from '../src/model/llama.js';

/** The repository root (tests run from dist/test). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** ../shared/data/REL, or null when the shared data is absent (a clone outside the workplace). */
export function sharedData(rel = ''): string | null {
  const p = path.resolve(repoRoot, '../shared/data', rel);
  return fs.existsSync(p) ? p : null;
}

/** ../shared/models (public config.json files of real base models), or null when absent. */
export function sharedModels(): string | null {
  const p = path.resolve(repoRoot, '../shared/models');
  return fs.existsSync(p) ? p : null;
}

export function tmpDir(prefix = 'chimed-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

const bin = path.join(repoRoot, 'bin/chimed.js');

export function runCli(args: string[], opts: { env?: Record<string, string> } = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, CHIMED_QUIET: '1', ...opts.env },
    maxBuffer: 64 << 20,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts the CLI and sends it `signal` once `until` sees the condition it waits for; resolves with the exit code and stderr. */
export async function runCliKilledWhen(
  args: string[],
  until: () => boolean,
  signal: NodeJS.Signals = 'SIGKILL',
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, CHIMED_QUIET: '1' },
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let sent = false;
  const timer = setInterval(() => {
    if (!sent && until()) {
      sent = true;
      child.kill(signal);
    }
  }, 5);
  const code = await exited;
  clearInterval(timer);
  return { code, stderr };
}

/** A few dozen KB of Chinese medical prose, deterministic. */
export function medicalText(paragraphs = 60): string {
  const diseases = ['高血压', '糖尿病', '肺炎', '胃炎', '偏头痛', '哮喘', '贫血', '痛风'];
  const symptoms = ['头痛', '乏力', '咳嗽', '发热', '腹痛', '气短', '关节肿痛', '口渴'];
  const drugs = ['氨氯地平', '二甲双胍', '阿莫西林', '奥美拉唑', '布洛芬', '沙丁胺醇', '硫酸亚铁', '秋水仙碱'];
  const out: string[] = [];
  for (let i = 0; i < paragraphs; i++) {
    const k = i % diseases.length,
      j = (i * 3) % symptoms.length;
    out.push(
      `${diseases[k]}是一种常见疾病，患者常出现${symptoms[k]}和${symptoms[j]}等症状。` +
        `治疗上可在医生指导下使用${drugs[k]}，并注意饮食与休息。如症状加重，应及时就医。`,
    );
  }
  return out.join('\n\n') + '\n';
}

/**
 * The seed of a test whose assertion is a training outcome: `def`, or CHIMED_TEST_SEED when
 * set. Each such margin is measured over several seeds (written next to the assertion), and
 * the test is re-run under other seeds with this variable to check it holds beyond one float path.
 */
export function trainingSeed(def: number): number {
  const v = process.env.CHIMED_TEST_SEED;
  if (v === undefined || v === '') return def;
  if (!/^\d+$/.test(v)) throw new Error(`CHIMED_TEST_SEED: expected a non-negative integer, got "${v}"`);
  return Number(v);
}

/** |actual - expected| <= atol + rtol * |expected| everywhere (infinities must match exactly). */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, rtol = 1e-5, atol = 1e-5): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i],
      e = expected[i];
    if (!Number.isFinite(e)) {
      assert.equal(a, e, `${label}[${i}]`);
      continue;
    }
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) assert.fail(`${label}[${i}]: got ${a}, expected ${e} (diff ${Math.abs(a - e)})`);
  }
}

/** A parameter's values as float32, whether the model keeps it f32 or frozen in its stored dtype. */
export function valuesOf(model: Llama<Float32Array>, name: string): Float32Array {
  const W = model.params.weight(name);
  return W instanceof FrozenWeight ? W.toF32() : W.data;
}
