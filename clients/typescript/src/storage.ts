// What survives an app restart, when the app gives a `storage`: the outbox
// of unsent writes and the last known state of followed boards. Each key is
// written in order, the newest value winning over ones not yet written.
import { fromBoard, toBoard, type BoardState } from "./fold.js";
import type { Board, Placement } from "./types.js";

/** The AsyncStorage shape (`@react-native-async-storage/async-storage`, or
 * any store with these three async methods). */
export interface KeyValueStorage {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
  removeItem(key: string): Promise<void>;
}

/** A browser's `localStorage` (or `sessionStorage`) in the AsyncStorage shape. */
export function fromWebStorage(storage: Pick<Storage, "getItem" | "setItem" | "removeItem">): KeyValueStorage {
  return {
    getItem: async (key) => storage.getItem(key),
    setItem: async (key, value) => storage.setItem(key, value),
    removeItem: async (key) => storage.removeItem(key),
  };
}

/** A write waiting in the outbox, as stored: enough to send it again after
 * a restart with the same `Idempotency-Key`. */
export interface QueuedWrite {
  key: string;
  method: "post" | "patch" | "delete";
  /** The route without the mode's prefix, e.g. `/boards/{board_id}/tasks`. */
  route: string;
  path: Record<string, string>;
  body?: unknown;
  /** A move, shown on the board until the server answers. */
  move?: { board_id: string; task_id: string } & Placement;
  queued_at: string;
}

/** How many followed boards are kept; the least recently saved goes first. */
export const CACHED_BOARDS = 20;
const FORMAT = 1;

export class Persistence {
  private readonly pending = new Map<string, string | null>();
  private readonly flushing = new Map<string, Promise<void>>();
  private index: string[] | null = null;

  constructor(private readonly storage: KeyValueStorage, private readonly namespace: string) {}

  async loadOutbox(): Promise<QueuedWrite[]> {
    const stored = await this.read<{ writes: QueuedWrite[] }>(this.key("outbox"));
    return stored?.writes ?? [];
  }

  /** Resolves once `writes` (or a newer outbox) is stored. */
  saveOutbox(writes: QueuedWrite[]): Promise<void> {
    return this.put(this.key("outbox"), writes.length ? JSON.stringify({ v: FORMAT, writes }) : null);
  }

  async loadBoard(boardId: string): Promise<BoardState | null> {
    const stored = await this.read<{ board: Board }>(this.key(`board:${boardId}`));
    return stored ? fromBoard(stored.board) : null;
  }

  async saveBoard(state: BoardState): Promise<void> {
    const index = (await this.boards()).filter((id) => id !== state.id);
    index.unshift(state.id);
    const dropped = index.splice(CACHED_BOARDS);
    this.index = index;
    await Promise.all([
      this.put(this.key(`board:${state.id}`), JSON.stringify({ v: FORMAT, board: toBoard(state) })),
      this.put(this.key("boards"), JSON.stringify(index)),
      ...dropped.map((id) => this.put(this.key(`board:${id}`), null)),
    ]);
  }

  async forgetBoard(boardId: string): Promise<void> {
    this.index = (await this.boards()).filter((id) => id !== boardId);
    await Promise.all([this.put(this.key(`board:${boardId}`), null), this.put(this.key("boards"), JSON.stringify(this.index))]);
  }

  /** Forgets everything stored under this namespace (on logout). */
  async clear(): Promise<void> {
    const boards = await this.boards();
    this.index = [];
    await Promise.all([this.key("outbox"), this.key("boards"), ...boards.map((id) => this.key(`board:${id}`))].map((key) => this.put(key, null)));
  }

  private key(name: string): string {
    return `${this.namespace}:${name}`;
  }

  private async boards(): Promise<string[]> {
    this.index ??= (await this.read<string[]>(this.key("boards"))) ?? [];
    return this.index;
  }

  /** A stored value of this format, or null (absent, unreadable, older format). */
  private async read<T>(key: string): Promise<T | null> {
    const text = await this.storage.getItem(key);
    if (text === null) return null;
    try {
      const value = JSON.parse(text);
      if (Array.isArray(value)) return value as T;
      return value?.v === FORMAT ? (value as T) : null;
    } catch {
      return null;
    }
  }

  /** Stores `value` (null removes the key); resolves once it or a newer value is written. */
  private put(key: string, value: string | null): Promise<void> {
    this.pending.set(key, value);
    return this.flush(key);
  }

  private flush(key: string): Promise<void> {
    const running = this.flushing.get(key);
    if (running) return running.then(() => this.flush(key));
    if (!this.pending.has(key)) return Promise.resolve();
    const run = (async () => {
      while (this.pending.has(key)) {
        const next = this.pending.get(key)!;
        this.pending.delete(key);
        if (next === null) await this.storage.removeItem(key);
        else await this.storage.setItem(key, next);
      }
    })().finally(() => this.flushing.delete(key));
    this.flushing.set(key, run);
    return run;
  }
}
