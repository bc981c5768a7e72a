/** Raised when every slot is busy and the waiting line is full (the server answers 429). */
export class QueueFullError extends Error {}

/** Raised to waiters when the queue closes (shutdown; the server answers 503). */
export class QueueClosedError extends Error {}

interface Waiter {
  grant: () => void;
  fail: (e: unknown) => void;
}

/**
 * A FIFO admission queue: at most `concurrency` jobs run at once and at most `maxWaiting`
 * wait for a slot; anything beyond is refused at once instead of piling up unbounded work
 * on a CPU that generates one token at a time. (p-queue and friends have no bound on the
 * waiting line nor per-waiter cancellation, which are the two things this is for.)
 */
export class RequestQueue {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  private closed = false;

  constructor(
    readonly concurrency: number,
    readonly maxWaiting: number,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0)
      throw new RangeError(`queue size must be a non-negative integer, got ${maxWaiting}`);
  }

  get stats() {
    return { running: this.running, waiting: this.waiting.length, concurrency: this.concurrency, max_waiting: this.maxWaiting };
  }

  /**
   * Resolves with a release function once a slot is free. Throws QueueFullError at once when
   * the line is full; rejects with the signal's reason if it aborts while waiting.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.closed) return Promise.reject(new QueueClosedError('the server is shutting down'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.running < this.concurrency) return Promise.resolve(this.take());
    if (this.waiting.length >= this.maxWaiting) {
      return Promise.reject(
        new QueueFullError(`the server is busy: ${this.running} running and ${this.waiting.length} waiting (the limit); retry later`),
      );
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      const w: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.take());
        },
        fail: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  /** Runs fn in a slot, releasing it however fn ends. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Refuses new work and fails everything still waiting; running jobs finish. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.fail(new QueueClosedError('the server is shutting down'));
  }

  private take(): () => void {
    this.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      const next = this.waiting.shift();
      if (next) next.grant();
    };
  }
}
