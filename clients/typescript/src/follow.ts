// `follow`: a local replica of one board, kept live over the WebSocket.
// Loads the board, subscribes with `since` = its version, folds each event
// once (duplicates skipped, a gap means reload), and after a disconnection
// reconnects with backoff and resumes from the version it has.
import { backoff, type Streamboard, type WebSocketConstructor, type WebSocketLike } from "./client.js";
import { isTransient } from "./errors.js";
import { apply, fromBoard, toBoard, type BoardState } from "./fold.js";
import type { Board, BoardEvent, Placement, ServerFrame, Watcher } from "./types.js";

/** `connecting`: first load; `live`: subscribed, events flow; `reconnecting`:
 * lost, trying again; `offline`: still trying, but for a while now (or the
 * board cannot be read); `closed`: `close()` was called. */
export type ConnectionState = "connecting" | "live" | "reconnecting" | "offline" | "closed";

/** Gets the board (`null` once deleted or gone) and the event that changed
 * it; no event on the first load, a reload, or an optimistic move. */
export type FollowListener = (board: Board | null, event?: BoardEvent) => void;

export interface FollowOptions {
  onState?: (state: ConnectionState) => void;
  /** Who watches the board now (`api` mode). */
  onWatchers?: (watchers: Watcher[]) => void;
  /** An optimistic move the server refused (412, 403, 422, ...): the card is back where it was. */
  onRollback?: (taskId: string, error: unknown) => void;
  /** Failures to read the board (e.g. 404): the follow keeps trying. */
  onError?: (error: unknown) => void;
}

/** Reconnection attempts after which the state says `offline`. */
const OFFLINE_AFTER = 3;

/** An optimistic move, shown until its event is folded or it is refused. */
export interface PendingMove {
  confirmedAt(version: number): void;
  refused(error: unknown): void;
}

export class LiveBoard {
  /** The board as the server's events made it (no optimistic moves). */
  state: BoardState | null = null;
  connection: ConnectionState = "connecting";
  watchers: Watcher[] = [];
  private readonly pending = new Map<string, { placement: Placement; version: number | null }>();
  private socket: WebSocketLike | null = null;
  private closed = false;
  private reload = true;
  private wakeUp: (() => void) | null = null;

  constructor(
    private readonly client: Streamboard,
    readonly boardId: string,
    private readonly listener: FollowListener,
    private readonly options: FollowOptions,
    private readonly Socket: WebSocketConstructor,
    private readonly forget: () => void,
  ) {}

  /** The board to show: the replica with pending optimistic moves applied. */
  get board(): Board | null {
    if (!this.state || this.state.deleted) return null;
    if (this.pending.size === 0) return toBoard(this.state);
    const shown: BoardState = { ...this.state, tasks: new Map(this.state.tasks) };
    for (const [taskId, { placement }] of this.pending) {
      const task = shown.tasks.get(taskId);
      if (task) shown.tasks.set(taskId, { ...task, ...placement });
    }
    return toBoard(shown);
  }

  close(): void {
    this.closed = true;
    this.forget();
    this.setConnection("closed");
    this.socket?.close(1000, "closed by the client");
    this.wakeUp?.();
  }

  /** @internal Starts the load / subscribe / reconnect loop. */
  start(): void {
    void this.run();
  }

  /** @internal Shows a move at once; `moveTask` then confirms or refuses it. */
  expect(taskId: string, placement: Placement): PendingMove {
    this.pending.set(taskId, { placement, version: null });
    this.emit();
    const current = () => this.pending.get(taskId)?.placement === placement;
    return {
      confirmedAt: (version) => {
        if (!current()) return;
        this.pending.set(taskId, { placement, version });
        this.settle();
      },
      refused: (error) => {
        if (!current()) return;
        this.pending.delete(taskId);
        this.options.onRollback?.(taskId, error);
        this.emit();
      },
    };
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.closed) {
      if (this.reload) {
        try {
          await this.load();
        } catch (error) {
          if (!isTransient(error)) this.options.onError?.(error);
          attempt++;
          this.setConnection(this.state === null && attempt <= OFFLINE_AFTER ? "connecting" : attempt > OFFLINE_AFTER ? "offline" : "reconnecting");
          await this.sleep(backoff(attempt, this.client.maxBackoffMs));
          continue;
        }
      }
      const subscribed = await this.listen();
      if (this.closed) break;
      attempt = subscribed ? 1 : attempt + 1;
      this.setConnection(attempt > OFFLINE_AFTER ? "offline" : "reconnecting");
      await this.sleep(backoff(attempt, this.client.maxBackoffMs));
    }
  }

  private async load(): Promise<void> {
    const board = await this.client.getBoard(this.boardId);
    this.state = fromBoard(board);
    this.reload = false;
    this.settle();
    this.emit();
  }

  /** One connection: subscribes from the replica's version and folds events
   * until the socket closes. Resolves whether it got as far as `subscribed`. */
  private listen(): Promise<boolean> {
    return new Promise((resolve) => {
      let subscribed = false;
      const socket = new this.Socket(this.client.socketUrl());
      this.socket = socket;
      const end = () => {
        socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
        if (this.socket === socket) this.socket = null;
        resolve(subscribed);
      };
      socket.onopen = () => {
        socket.send(JSON.stringify({ type: "subscribe", board_id: this.boardId, since: this.state?.version ?? 0, presence: this.client.mode === "api" }));
      };
      socket.onmessage = (message) => {
        let frame: ServerFrame;
        try {
          frame = JSON.parse(String(message.data)) as ServerFrame;
        } catch {
          return;
        }
        if ("board_id" in frame && frame.board_id !== undefined && frame.board_id !== this.boardId) return;
        switch (frame.type) {
          case "subscribed":
            subscribed = true;
            this.setConnection("live");
            if (frame.presence) this.setWatchers(frame.presence);
            this.client.connectionRestored();
            break;
          case "presence":
            this.setWatchers(frame.users);
            break;
          case "event": {
            const { event_type, type: _frame, ...envelope } = frame;
            const event = { ...envelope, type: event_type } as BoardEvent;
            if (!this.fold(event)) socket.close(1000, "history gap: reloading");
            break;
          }
          case "error":
            // `since` ahead of the board (its history was lost): start over
            // from a fresh read. Anything else: subscribe again.
            if (frame.code === "invalid_since" || frame.code === "not_found") this.reload = true;
            if (frame.code === "not_found") this.options.onError?.(frame);
            socket.close(1000, frame.code);
            break;
        }
      };
      socket.onclose = end;
      socket.onerror = () => {
        // A close event follows; some platforms skip it when connecting fails.
        if (socket.readyState === 3) end();
      };
    });
  }

  /** Folds one event; false on a gap the replica cannot bridge. */
  private fold(event: BoardEvent): boolean {
    if (!this.state) return false;
    if (event.version <= this.state.version) return true; // already folded
    if (event.version !== this.state.version + 1) {
      this.reload = true;
      return false;
    }
    this.state = apply(this.state, event);
    this.settle();
    this.emit(event);
    return true;
  }

  /** Drops optimistic moves whose own event is folded. */
  private settle(): void {
    const version = this.state?.version ?? 0;
    let settled = false;
    for (const [taskId, move] of this.pending) {
      if (move.version !== null && move.version <= version) {
        this.pending.delete(taskId);
        settled = true;
      }
    }
    if (settled) this.emit();
  }

  private emit(event?: BoardEvent): void {
    if (this.closed) return;
    this.listener(this.board, event);
  }

  private setConnection(state: ConnectionState): void {
    if (this.connection === state || this.connection === "closed") return;
    this.connection = state;
    this.options.onState?.(state);
  }

  private setWatchers(watchers: Watcher[]): void {
    this.watchers = watchers;
    this.options.onWatchers?.(watchers);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = null;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        this.wakeUp = null;
        resolve();
      };
    });
  }
}
