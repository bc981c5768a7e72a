import type { FloatArray } from './kernels.js';

/**
 * A stack arena for activations (llm.c's single activation buffer, grown on demand).
 * Allocation is a bump of an offset; `mark`/`release` free everything allocated since a mark,
 * which is what per-block recomputation needs. After a step that needed more than one chunk,
 * `reset` merges them into one, so from the second step on every step runs in one buffer
 * with no allocation and no GC pressure.
 */
export class Workspace<F extends FloatArray> {
  private chunks: F[] = [];
  private chunk = 0;
  private offset = 0;
  private peak = 0;

  constructor(
    private readonly make: (n: number) => F,
    initial = 1 << 20,
  ) {
    this.chunks.push(make(initial));
  }

  alloc(n: number, zero = false): F {
    // 16-float alignment keeps every view on a 64-byte boundary for the SIMD kernels
    const size = (n + 15) & ~15;
    let cur = this.chunks[this.chunk];
    if (this.offset + size > cur.length) {
      this.chunk++;
      this.offset = 0;
      if (this.chunk === this.chunks.length || this.chunks[this.chunk].length < size) {
        this.chunks.splice(this.chunk, this.chunks.length - this.chunk, this.make(Math.max(size, cur.length)));
      }
      cur = this.chunks[this.chunk];
    }
    const view = cur.subarray(this.offset, this.offset + n) as F;
    this.offset += size;
    this.peak = Math.max(this.peak, this.used());
    if (zero) view.fill(0);
    return view;
  }

  mark(): [number, number] {
    return [this.chunk, this.offset];
  }

  release(mark: [number, number]): void {
    [this.chunk, this.offset] = mark;
  }

  /** Frees everything; consolidates the chunks into one buffer sized for the peak seen so far. */
  reset(): void {
    if (this.chunks.length > 1) this.chunks = [this.make(this.peak)];
    this.chunk = 0;
    this.offset = 0;
  }

  /** Floats currently allocated (chunk slack counted, so this is an upper bound). */
  used(): number {
    let n = this.offset;
    for (let i = 0; i < this.chunk; i++) n += this.chunks[i].length;
    return n;
  }

  capacity(): number {
    return this.chunks.reduce((s, c) => s + c.length, 0);
  }
}
