// Waiting between attempts, for the outbox and for follows.

/** Exponential backoff with jitter: 250 ms, 500 ms, ... up to `max`. */
export function backoff(attempt: number, max: number): number {
  const base = Math.min(max, 250 * 2 ** Math.min(attempt, 10));
  return base / 2 + Math.random() * (base / 2);
}

/** Sleeps that end after their time, or all at once on `wake()` (the
 * connection is back, the app came online, the follow was closed). */
export class Waker {
  private readonly sleepers = new Set<() => void>();

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  wake(): void {
    for (const done of [...this.sleepers]) done();
  }
}
