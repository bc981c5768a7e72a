// A node:test reporter (next to spec, see package.json's test script) that ends the run with
// the slowest test files and every skipped test with its reason. Files run one at a time
// (--test-concurrency=1) and their events stream live, so a file's wall time, process start
// and module loading included, runs from the previous file's last event to its own last one.
import path from 'node:path';

interface TestEvent {
  type: string;
  data: { name?: string; file?: string; skip?: string | boolean; nesting?: number };
}

const SLOWEST = 10;

export default async function* slowestFiles(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const wall = new Map<string, number>();
  const skipped: string[] = [];
  let last = performance.now();
  for await (const ev of source) {
    const file = ev.data.file;
    if (!file || !['test:pass', 'test:fail', 'test:start', 'test:diagnostic'].includes(ev.type)) continue;
    const now = performance.now();
    wall.set(file, (wall.get(file) ?? 0) + now - last);
    last = now;
    if (ev.type === 'test:pass' && ev.data.skip !== undefined) {
      skipped.push(`  ${path.basename(file)}: ${ev.data.name} (${ev.data.skip === true ? 'no reason given' : ev.data.skip})`);
    }
  }
  const rows = [...wall].sort((a, b) => b[1] - a[1]).slice(0, SLOWEST);
  yield `\nslowest test files (wall time, process start included):\n${rows.map(([f, ms]) => `  ${(ms / 1000).toFixed(1).padStart(6)} s  ${path.basename(f)}`).join('\n')}\n`;
  yield `skipped tests: ${skipped.length}\n${skipped.join('\n')}${skipped.length ? '\n' : ''}`;
}
