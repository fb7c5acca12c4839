// `follow`: a local replica of one board, kept live over the WebSocket.
// Shows the board it stored last time at once (with a `storage`), else loads
// it; subscribes with `since` = its version, folds each event once
// (duplicates skipped, a gap means reload), and after a disconnection
// reconnects with backoff and resumes from the version it has. A board the
// server refuses (404, 403, 401) ends the follow: it says why, once.
import { Waker, backoff } from "./backoff.js";
import { StreamboardError, isTransient } from "./errors.js";
import { apply, fromBoard, toBoard, type BoardState } from "./fold.js";
import type { Persistence } from "./storage.js";
import type { Board, BoardEvent, Mode, Placement, ServerFrame, Watcher } from "./types.js";

/** `connecting`: first load; `live`: subscribed, events flow; `reconnecting`:
 * lost, trying again; `offline`: still trying but for a while now, or the
 * app said it is offline (`setOnline(false)`); `failed`: the server refused
 * the board (`error` says why) and the follow stopped; `closed`: `close()`
 * was called. */
export type ConnectionState = "connecting" | "live" | "reconnecting" | "offline" | "failed" | "closed";

/** Gets the board (`null` once deleted, gone or refused) and the event that
 * changed it; no event on the first load, a reload, or an optimistic move. */
export type FollowListener = (board: Board | null, event?: BoardEvent) => void;

export interface FollowOptions {
  onState?: (state: ConnectionState) => void;
  /** Who watches the board now (`api` mode). */
  onWatchers?: (watchers: Watcher[]) => void;
  /** An optimistic move the server refused (412, 403, 422, ...): the card is back where it was. */
  onRollback?: (taskId: string, error: unknown) => void;
  /** Why the follow failed (404, 403, 401): called once, and the follow stops. */
  onError?: (error: unknown) => void;
}

/** The WebSocket the SDK uses (browsers, React Native and the `ws` package all have it). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** A move waiting for the server's answer, from the outbox. */
export interface QueuedMove {
  key: string;
  task_id: string;
  placement: Placement;
}

/** What a follow needs from its client. */
export interface FollowHost {
  readonly mode: Mode;
  readonly maxBackoffMs: number;
  readonly online: boolean;
  readonly persistence: Persistence | null;
  getBoard(boardId: string): Promise<Board>;
  socketUrl(): string;
  /** Moves of this board still in the outbox (restored after a restart included). */
  queuedMoves(boardId: string): Promise<QueuedMove[]>;
  /** The follow is subscribed again: queued writes may go now. */
  connectionRestored(): void;
}

/** Connection attempts after which the state says `offline` and the board
 * is read again over HTTP (which tells a refused token or a gone board from
 * an unreachable server). */
const OFFLINE_AFTER = 3;
/** How long changes gather before the board is stored. */
const SAVE_DELAY_MS = 250;

export class LiveBoard {
  /** The board as the server's events made it (no optimistic moves). */
  state: BoardState | null = null;
  connection: ConnectionState = "connecting";
  watchers: Watcher[] = [];
  /** Why the follow failed (`connection` is `failed`). */
  error: unknown = null;
  private readonly pending = new Map<string, { key: string; placement: Placement; version: number | null }>();
  private readonly waker = new Waker();
  private socket: WebSocketLike | null = null;
  private reload = true;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly host: FollowHost,
    readonly boardId: string,
    private readonly listener: FollowListener,
    private readonly options: FollowOptions,
    private readonly Socket: WebSocketConstructor,
    private readonly forget: () => void,
  ) {}

  /** The board to show: the replica with pending optimistic moves applied. */
  get board(): Board | null {
    const view = this.view();
    return view ? toBoard(view) : null;
  }

  /** The replica with pending moves applied, as the fold keeps it. */
  view(): BoardState | null {
    if (!this.state || this.state.deleted) return null;
    if (this.pending.size === 0) return this.state;
    const shown: BoardState = { ...this.state, tasks: new Map(this.state.tasks) };
    for (const [taskId, { placement }] of this.pending) {
      const task = shown.tasks.get(taskId);
      if (task) shown.tasks.set(taskId, { ...task, ...placement });
    }
    return shown;
  }

  close(): void {
    if (this.stopped) return;
    this.setConnection("closed");
    this.stop();
  }

  /** @internal Starts the restore / load / subscribe / reconnect loop. */
  start(): void {
    void this.run();
  }

  /** @internal The app went offline (sockets closed, no attempts) or came back (at once). */
  setOnline(online: boolean): void {
    if (online) this.waker.wake();
    else this.socket?.close(1000, "offline");
  }

  /** @internal Shows a move at once, until `settled` says what became of it. */
  expect(move: QueuedMove): void {
    this.pending.set(move.task_id, { key: move.key, placement: move.placement, version: null });
    this.emit();
  }

  /** @internal A queued move was answered (at the board version it made) or refused. */
  settled(key: string, taskId: string, outcome: { version: number | null } | { refused: unknown }): void {
    const move = this.pending.get(taskId);
    if (move?.key !== key) return; // a later move of the card supersedes it
    if ("refused" in outcome) {
      this.pending.delete(taskId);
      this.options.onRollback?.(taskId, outcome.refused);
      this.emit();
    } else {
      move.version = outcome.version ?? 0;
      this.settle();
    }
  }

  private get stopped(): boolean {
    return this.connection === "closed" || this.connection === "failed";
  }

  private async run(): Promise<void> {
    await this.restore();
    let attempt = 0;
    while (!this.stopped) {
      if (!this.host.online) {
        this.setConnection("offline");
        await this.waker.sleep(60_000);
        attempt = 0;
        continue;
      }
      if (this.reload || attempt >= OFFLINE_AFTER) {
        try {
          await this.load();
        } catch (error) {
          if (!isTransient(error)) return this.fail(error);
          attempt++;
          this.setConnection(this.state === null && attempt <= OFFLINE_AFTER ? "connecting" : attempt > OFFLINE_AFTER ? "offline" : "reconnecting");
          await this.waker.sleep(backoff(attempt, this.host.maxBackoffMs));
          continue;
        }
      }
      const subscribed = await this.listen();
      if (this.stopped) break;
      attempt = subscribed ? 1 : attempt + 1;
      this.setConnection(attempt > OFFLINE_AFTER ? "offline" : "reconnecting");
      await this.waker.sleep(backoff(attempt, this.host.maxBackoffMs));
    }
  }

  /** The board stored last time and the moves still queued: shown before any network. */
  private async restore(): Promise<void> {
    const [cached, moves] = await Promise.all([
      this.host.persistence?.loadBoard(this.boardId).catch(() => null) ?? null,
      this.host.queuedMoves(this.boardId),
    ]);
    if (this.stopped) return;
    for (const move of moves) this.pending.set(move.task_id, { key: move.key, placement: move.placement, version: null });
    if (cached) {
      this.state = cached;
      this.reload = false;
    }
    if (cached || moves.length) this.emit();
  }

  private async load(): Promise<void> {
    const board = await this.host.getBoard(this.boardId);
    if (this.stopped) return;
    this.state = fromBoard(board);
    this.reload = false;
    this.settle();
    this.emit();
    this.saveSoon();
  }

  /** One connection: subscribes from the replica's version and folds events
   * until the socket closes. Resolves whether it got as far as `subscribed`. */
  private listen(): Promise<boolean> {
    return new Promise((resolve) => {
      let subscribed = false;
      const socket = new this.Socket(this.host.socketUrl());
      this.socket = socket;
      const end = () => {
        socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
        if (this.socket === socket) this.socket = null;
        resolve(subscribed);
      };
      socket.onopen = () => {
        socket.send(JSON.stringify({ type: "subscribe", board_id: this.boardId, since: this.state?.version ?? 0, presence: this.host.mode === "api" }));
      };
      socket.onmessage = (message) => {
        if (this.receive(socket, String(message.data)) === "subscribed") subscribed = true;
      };
      socket.onclose = end;
      socket.onerror = () => {
        // A close event follows; some platforms skip it when connecting fails.
        if (socket.readyState === 3) end();
      };
    });
  }

  /** Handles one frame; says which type it was. */
  private receive(socket: WebSocketLike, text: string): string | undefined {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return undefined;
    }
    if ("board_id" in frame && frame.board_id !== undefined && frame.board_id !== this.boardId) return undefined;
    switch (frame.type) {
      case "subscribed":
        this.setConnection("live");
        if (frame.presence) this.setWatchers(frame.presence);
        this.host.connectionRestored();
        break;
      case "presence":
        this.setWatchers(frame.users);
        break;
      case "event": {
        const { event_type, type: _frame, ...envelope } = frame;
        if (!this.fold({ ...envelope, type: event_type } as BoardEvent)) socket.close(1000, "history gap: reloading");
        break;
      }
      case "resync":
        // The server's copy of the board was restored or diverged: read it again.
        this.reload = true;
        socket.close(1000, "resync: reloading");
        break;
      case "error":
        if (frame.code === "not_found") {
          this.fail(new StreamboardError(404, "not_found", frame.message));
        } else {
          // `since` ahead of the board (its history was lost): start over from
          // a fresh read. Anything else: subscribe again.
          if (frame.code === "invalid_since") this.reload = true;
          socket.close(1000, frame.code);
        }
        break;
    }
    return frame.type;
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
    this.saveSoon();
    return true;
  }

  /** The server refused the board: say why once, forget it, stop. */
  private fail(error: unknown): void {
    if (this.stopped) return;
    this.error = error;
    const gone = error instanceof StreamboardError && (error.status === 404 || error.status === 403);
    if (gone) {
      this.state = null;
      void this.host.persistence?.forgetBoard(this.boardId).catch(() => {});
    }
    this.setConnection("failed");
    this.options.onError?.(error);
    if (gone) this.listener(null);
    this.stop();
  }

  private stop(): void {
    this.forget();
    this.socket?.close(1000, "closed by the client");
    this.waker.wake();
    if (this.saveTimer) this.flushSave();
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

  private saveSoon(): void {
    if (!this.host.persistence || this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.flushSave(), SAVE_DELAY_MS);
  }

  private flushSave(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    const state = this.state;
    if (state && !state.deleted) void this.host.persistence?.saveBoard(state).catch(() => {});
    else if (state?.deleted) void this.host.persistence?.forgetBoard(this.boardId).catch(() => {});
  }

  private emit(event?: BoardEvent): void {
    if (this.stopped) return;
    this.listener(this.board, event);
  }

  private setConnection(state: ConnectionState): void {
    if (this.connection === state || this.stopped) return;
    this.connection = state;
    this.options.onState?.(state);
  }

  private setWatchers(watchers: Watcher[]): void {
    this.watchers = watchers;
    this.options.onWatchers?.(watchers);
  }
}
