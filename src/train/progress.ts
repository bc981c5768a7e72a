import cliProgress from 'cli-progress';

/**
 * A progress bar with loss, tokens/s and ETA on a terminal; on a pipe or in CI, a plain line
 * every ~5% so logs stay readable.
 */
export class Progress {
  private bar: cliProgress.SingleBar | null = null;
  private lastLine = -1;
  private done = 0;
  private readonly t0 = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly start = 0,
    private readonly quiet = !!process.env.CHIMED_QUIET,
  ) {
    if (!quiet && process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          format: `${label} [{bar}] {value}/{total} | {stats} | ETA {eta_formatted}`,
          stream: process.stderr,
          hideCursor: true,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, start, { stats: '' });
    }
  }

  update(done: number, s: { loss?: number; tokensPerS?: number; extra?: string }): void {
    const stats = [
      s.loss !== undefined ? `loss ${s.loss.toFixed(4)}` : '',
      s.tokensPerS !== undefined ? `${Math.round(s.tokensPerS).toLocaleString('en-US')} tok/s` : '',
      s.extra ?? '',
    ]
      .filter(Boolean)
      .join(' | ');
    this.done = done;
    if (this.bar) {
      this.bar.update(done, { stats });
      return;
    }
    if (this.quiet) return;
    const pct = Math.floor((20 * done) / this.total);
    if (pct !== this.lastLine || done === this.total) {
      this.lastLine = pct;
      const elapsed = (Date.now() - this.t0) / 1000;
      const eta = done > this.start ? (elapsed / (done - this.start)) * (this.total - done) : 0;
      process.stderr.write(`${this.label} ${done}/${this.total} | ${stats} | ETA ${formatSeconds(eta)}\n`);
    }
  }

  /** A line printed above the bar (evaluation results). */
  note(text: string): void {
    if (this.quiet) return;
    if (this.bar) this.bar.stop();
    process.stderr.write(`${this.label}: ${text}\n`);
    if (this.bar) this.bar.start(this.total, this.done, { stats: '' });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60),
    sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
