// The outbox: writes go out one at a time, in the order they were made, each
// with one Idempotency-Key however often it is sent. A write that fails
// because the server cannot be reached waits and is sent again; one the
// server refuses is dropped. With a `storage`, a write is stored before it
// is first sent and removed once answered, so after an app restart the
// writes left are sent again with their keys: applied once, never twice.
import { Waker, backoff } from "./backoff.js";
import { StreamboardError, isTransient } from "./errors.js";
import type { Answer } from "./rest.js";
import type { Persistence, QueuedWrite } from "./storage.js";

export type Send = (write: QueuedWrite) => Promise<Answer<unknown>>;

/** What becomes of a write: its answer, or the server's refusal. */
export type Outcome = { write: QueuedWrite; answer: Answer<unknown> } | { write: QueuedWrite; refused: StreamboardError };

export class Outbox {
  private writes: QueuedWrite[] = [];
  private readonly waiting = new Map<string, { resolve: (answer: Answer<unknown>) => void; reject: (error: unknown) => void }>();
  private readonly restored: Promise<void>;
  private draining = false;
  private online = true;
  readonly waker = new Waker();

  constructor(
    private readonly send: Send,
    private readonly persistence: Persistence | null,
    private readonly maxBackoffMs: number,
    private readonly settled: (outcome: Outcome) => void,
  ) {
    this.restored = this.restore();
  }

  /** Writes not yet answered, oldest first (restored ones included). */
  get pending(): readonly QueuedWrite[] {
    return this.writes;
  }

  /** Resolves once the outbox stored before the last restart is loaded. */
  ready(): Promise<void> {
    return this.restored;
  }

  /** Queues a write; resolves with its answer, rejects with the refusal. */
  async add(write: QueuedWrite): Promise<Answer<unknown>> {
    await this.restored;
    this.writes.push(write);
    const answered = new Promise<Answer<unknown>>((resolve, reject) => this.waiting.set(write.key, { resolve, reject }));
    // Stored before it is first sent. A store that fails costs the restart
    // guarantee, not the write.
    await this.persistence?.saveOutbox(this.writes).catch(() => {});
    void this.drain();
    return answered;
  }

  setOnline(online: boolean): void {
    this.online = online;
    if (online) this.waker.wake();
  }

  /** Forgets the unsent writes (logout); their promises reject. */
  async discard(): Promise<void> {
    for (const write of [...this.writes]) this.finish(write, { write, refused: new StreamboardError(0, "discarded", "discarded on logout") });
    await this.persistence?.saveOutbox(this.writes);
  }

  private async restore(): Promise<void> {
    if (!this.persistence) return;
    try {
      this.writes = await this.persistence.loadOutbox();
    } catch {
      this.writes = []; // an unreadable store must not stop new writes
    }
    if (this.writes.length) void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      for (let write = this.writes[0]; write; write = this.writes[0]) await this.deliver(write);
    } finally {
      this.draining = false;
    }
  }

  /** Sends one write until it is answered or refused. */
  private async deliver(write: QueuedWrite): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      while (!this.online) await this.waker.sleep(60_000);
      try {
        this.finish(write, { write, answer: await this.send(write) });
        break;
      } catch (error) {
        if (!isTransient(error)) {
          this.finish(write, { write, refused: error as StreamboardError });
          break;
        }
        await this.waker.sleep(backoff(attempt, this.maxBackoffMs));
      }
    }
    await this.persistence?.saveOutbox(this.writes).catch(() => {});
  }

  private finish(write: QueuedWrite, outcome: Outcome): void {
    if (!this.writes.includes(write)) return; // discarded meanwhile
    this.writes = this.writes.filter((w) => w !== write);
    const waiter = this.waiting.get(write.key);
    this.waiting.delete(write.key);
    this.settled(outcome);
    if ("answer" in outcome) waiter?.resolve(outcome.answer);
    else waiter?.reject(outcome.refused);
  }
}

/** An Idempotency-Key: a random UUID (React Native may lack `crypto.randomUUID`). */
export function newKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, (ch) => {
    const r = (Math.random() * 16) | 0;
    return (ch === "x" ? r : (r & 0x3) | 0x8).toString(16);
  });
}
