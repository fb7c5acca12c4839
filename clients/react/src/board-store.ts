// One follow per board and client, shared by every component that shows the
// board, in the shape React's useSyncExternalStore reads: `subscribe` and a
// snapshot that changes identity only when something changed. The follow
// starts with the first subscriber and closes a moment after the last one
// leaves (so a remount, e.g. React's StrictMode, reuses it).
import type { Board, ConnectionState, LiveBoard, Streamboard, Watcher } from "@streamboard/client";

/** What a component knows of a followed board. */
export interface BoardSnapshot {
  /** `null` until it is loaded, and once deleted, gone or refused. */
  board: Board | null;
  connection: ConnectionState;
  /** Who is watching (`api` mode). */
  watchers: Watcher[];
  /** Why the follow failed (`connection` is `failed`): 404, 403, 401. */
  error: unknown;
  /** The last optimistic move the server refused; the card is back in place. */
  rollback: { taskId: string; error: unknown } | null;
}

export interface BoardStore {
  subscribe(listener: () => void): () => void;
  getSnapshot(): BoardSnapshot;
}

/** How long a follow outlives its last subscriber. */
const LINGER_MS = 1000;

const IDLE: BoardSnapshot = { board: null, connection: "connecting", watchers: [], error: null, rollback: null };

class Entry implements BoardStore {
  snapshot: BoardSnapshot = IDLE;
  private live: LiveBoard | null = null;
  private readonly listeners = new Set<() => void>();
  private linger: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly client: Streamboard, private readonly boardId: string, private readonly forget: () => void) {}

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    if (this.linger) clearTimeout(this.linger);
    this.linger = null;
    this.live ??= this.follow();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.linger = setTimeout(() => this.close(), LINGER_MS);
    };
  };

  getSnapshot = (): BoardSnapshot => this.snapshot;

  private follow(): LiveBoard {
    return this.client.follow(this.boardId, (board) => this.update({ board }), {
      onState: (connection) => this.update({ connection }),
      onWatchers: (watchers) => this.update({ watchers }),
      onRollback: (taskId, error) => this.update({ rollback: { taskId, error } }),
      onError: (error) => this.update({ error }),
    });
  }

  private update(change: Partial<BoardSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...change };
    for (const listener of [...this.listeners]) listener();
  }

  private close(): void {
    this.live?.close();
    this.live = null;
    this.forget();
  }
}

const stores = new WeakMap<Streamboard, Map<string, Entry>>();

/** The shared store of `boardId` for `client`. */
export function boardStore(client: Streamboard, boardId: string): BoardStore {
  let boards = stores.get(client);
  if (!boards) stores.set(client, (boards = new Map()));
  let entry = boards.get(boardId);
  if (!entry) {
    const created = new Entry(client, boardId, () => boards.delete(boardId));
    boards.set(boardId, created);
    entry = created;
  }
  return entry;
}
