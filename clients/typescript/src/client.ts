// The SDK's entry point: one method per route of the contract (REST through
// openapi-fetch, src/rest.ts), writes through the outbox (src/outbox.ts),
// and `follow` for live boards (src/follow.ts).
import { StreamboardError } from "./errors.js";
import { fromBoard } from "./fold.js";
import { LiveBoard, type FollowHost, type FollowListener, type FollowOptions, type QueuedMove, type WebSocketConstructor } from "./follow.js";
import { Outbox, newKey, type Outcome } from "./outbox.js";
import { positionFor, type Drop } from "./position.js";
import { Rest, type Answer, type BodyOf, type FetchLike, type InitOf, type RouteOf } from "./rest.js";
import { Persistence, type KeyValueStorage, type QueuedWrite } from "./storage.js";
import type {
  AnalyticsRange,
  Board,
  BoardEvent,
  CreateBoardRequest,
  CreateTaskRequest,
  FlowReport,
  Member,
  Mode,
  Moment,
  Role,
  Session,
  Task,
  UpdateBoardRequest,
  UpdateTaskRequest,
  User,
} from "./types.js";

export interface StreamboardOptions {
  /** The server, e.g. `http://192.168.1.20:8080`; `""` on a page the server serves. */
  baseUrl: string;
  /** `quick`: the in-memory boards under `/quick`, no login; `api`: event-sourced boards under `/api`. */
  mode: Mode;
  /** A session token (`api`); `login`/`register` set it. Without one, a
   * browser page relies on the `token` cookie. */
  token?: string;
  /** Defaults to the platform's `WebSocket` (Node before 22: inject `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Defaults to the platform's `fetch`. */
  fetch?: FetchLike;
  /** Longest wait between reconnection or retry attempts (default 5000 ms). */
  maxBackoffMs?: number;
  /** Keeps the outbox of unsent writes and the last state of followed boards
   * across app restarts (AsyncStorage, or `fromWebStorage(localStorage)`). */
  storage?: KeyValueStorage;
  /** Prefix of the storage keys (default `streamboard:<mode>:<baseUrl>`). */
  storageKey?: string;
  /** A queued write the server refused, restored ones included (their
   * callers are gone after a restart; this is where the app hears of it). */
  onWriteRefused?: (write: QueuedWrite, error: StreamboardError) => void;
}

export interface BoardPage {
  boards: Board[];
  next_cursor?: string;
}

export interface EventPage {
  events: BoardEvent[];
  next_after: number | null;
}

type Mutating = "post" | "patch" | "delete";

export class Streamboard implements FollowHost {
  readonly baseUrl: string;
  readonly mode: Mode;
  token: string | undefined;
  readonly maxBackoffMs: number;
  readonly persistence: Persistence | null;
  private isOnline = true;
  private readonly rest: Rest;
  private readonly outbox: Outbox;
  private readonly socketImpl: WebSocketConstructor | undefined;
  private readonly follows = new Set<LiveBoard>();
  private readonly onWriteRefused: StreamboardOptions["onWriteRefused"];

  constructor(options: StreamboardOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.mode = options.mode;
    this.token = options.token;
    this.maxBackoffMs = options.maxBackoffMs ?? 5000;
    this.onWriteRefused = options.onWriteRefused;
    const fetchImpl = options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (!fetchImpl) throw new Error("no fetch: pass options.fetch");
    this.rest = new Rest(this.baseUrl, this.mode, fetchImpl, () => this.token);
    this.socketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    this.persistence = options.storage ? new Persistence(options.storage, options.storageKey ?? `streamboard:${this.mode}:${this.baseUrl}`) : null;
    this.outbox = new Outbox((write) => this.send(write), this.persistence, this.maxBackoffMs, (outcome) => this.settled(outcome));
  }

  // --- Accounts (`api` mode) ------------------------------------------------

  async register(username: string, password: string): Promise<Session> {
    return this.startSession((await this.api().call("post", "/auth/register", { body: { username, password } })).body);
  }

  async login(username: string, password: string): Promise<Session> {
    return this.startSession((await this.api().call("post", "/auth/login", { body: { username, password } })).body);
  }

  /** Revokes the token (and clears the cookie); the client forgets it, its
   * unsent writes and the boards it stored. */
  async logout(): Promise<void> {
    await this.api().call("post", "/auth/logout");
    this.token = undefined;
    await this.outbox.discard();
    await this.persistence?.clear();
  }

  /** The signed-in user, or `null` without a valid token or cookie. */
  async me(): Promise<User | null> {
    try {
      return (await this.api().call("get", "/me")).body;
    } catch (error) {
      if (error instanceof StreamboardError && error.status === 401) return null;
      throw error;
    }
  }

  private startSession(session: Session): Session {
    this.token = session.token;
    return session;
  }

  // --- Boards ---------------------------------------------------------------

  async listBoards(cursor?: string): Promise<BoardPage> {
    return (await this.rest.call("get", "/boards", { params: { query: cursor ? { cursor } : {} } })).body;
  }

  async getBoard(boardId: string): Promise<Board> {
    return (await this.rest.call("get", "/boards/{board_id}", { params: { path: { board_id: boardId } } })).body;
  }

  async createBoard(board: CreateBoardRequest): Promise<Board> {
    return (await this.write("post", "/boards", { body: board })).body;
  }

  async updateBoard(boardId: string, patch: UpdateBoardRequest): Promise<Board> {
    return (await this.write("patch", "/boards/{board_id}", { params: { path: { board_id: boardId } }, body: patch })).body;
  }

  async deleteBoard(boardId: string): Promise<void> {
    await this.write("delete", "/boards/{board_id}", { params: { path: { board_id: boardId } } });
  }

  async events(boardId: string, after = 0, limit?: number): Promise<EventPage> {
    const query = limit ? { after, limit } : { after };
    const { body } = await this.rest.call("get", "/boards/{board_id}/events", { params: { path: { board_id: boardId }, query } });
    return body as EventPage;
  }

  // --- The board's past (docs/ANALYTICS.md) -------------------------------------

  /** Flow metrics over `[from, to)` (default the 30 days before now): work
   * in progress, cumulative flow, lead and cycle times, throughput, aging
   * work and a forecast. In `api` mode for members and analytics tokens. */
  async analytics(boardId: string, range: AnalyticsRange = {}): Promise<FlowReport> {
    const query = { from: rfc3339(range.from), to: rfc3339(range.to), seed: range.seed };
    return (await this.rest.call("get", "/boards/{board_id}/analytics", { params: { path: { board_id: boardId }, query } })).body;
  }

  /** The board as it was at a version, or `{asOf}` a time: the same JSON
   * as `getBoard` answered then. 404 outside the board's life; 410 for a
   * quick-win version older than the events the server keeps. */
  async boardAt(boardId: string, moment: Moment): Promise<Board> {
    return (await this.rest.call("get", "/boards/{board_id}", { params: { path: { board_id: boardId }, query: momentQuery(moment) } })).body;
  }

  /** A task as it was at a version (or `{asOf}` a time); 404 where it did not exist. */
  async taskAt(boardId: string, taskId: string, moment: Moment): Promise<Task> {
    const path = { board_id: boardId, task_id: taskId };
    return (await this.rest.call("get", "/boards/{board_id}/tasks/{task_id}", { params: { path, query: momentQuery(moment) } })).body;
  }

  // --- Members (`api` mode) -------------------------------------------------

  async members(boardId: string): Promise<Member[]> {
    return (await this.api().call("get", "/boards/{board_id}/members", { params: { path: { board_id: boardId } } })).body.members;
  }

  /** Adds a member by username (or user id), or changes their role. */
  async addMember(boardId: string, who: { username: string } | { user_id: string }, role: Exclude<Role, "owner">): Promise<Member> {
    this.api();
    return (await this.write("post", "/boards/{board_id}/members", { params: { path: { board_id: boardId } }, body: { ...who, role } })).body;
  }

  async removeMember(boardId: string, userId: string): Promise<void> {
    this.api();
    await this.write("delete", "/boards/{board_id}/members/{user_id}", { params: { path: { board_id: boardId, user_id: userId } } });
  }

  // --- Tasks ----------------------------------------------------------------

  async createTask(boardId: string, task: CreateTaskRequest): Promise<Task> {
    return (await this.write("post", "/boards/{board_id}/tasks", { params: { path: { board_id: boardId } }, body: task })).body;
  }

  async updateTask(boardId: string, taskId: string, patch: UpdateTaskRequest): Promise<Task> {
    const path = { board_id: boardId, task_id: taskId };
    return (await this.write("patch", "/boards/{board_id}/tasks/{task_id}", { params: { path }, body: patch })).body;
  }

  async deleteTask(boardId: string, taskId: string): Promise<void> {
    await this.write("delete", "/boards/{board_id}/tasks/{task_id}", { params: { path: { board_id: boardId, task_id: taskId } } });
  }

  /**
   * Moves a card: to the end of `status`, or `before`/`after` another card of
   * it. The position is computed from the board as this client shows it (a
   * followed board's replica with the moves still queued, else a fresh
   * read). Followed boards show the move at once; it is confirmed by its
   * event or rolled back (with the reason, see `FollowOptions.onRollback`)
   * when the server refuses it.
   */
  async moveTask(boardId: string, taskId: string, drop: Drop): Promise<Task> {
    const seen = this.followsOf(boardId).map((f) => f.view()).find((view) => view !== null) ?? fromBoard(await this.getBoard(boardId));
    const position = positionFor(seen, taskId, drop);
    const path = { board_id: boardId, task_id: taskId };
    const move = { board_id: boardId, task_id: taskId, status: drop.status, position };
    return (await this.write("patch", "/boards/{board_id}/tasks/{task_id}", { params: { path }, body: { status: drop.status, position } }, move)).body;
  }

  // --- Live ------------------------------------------------------------------

  /**
   * Follows a board: `listener` gets the board at once and after every
   * change, with the event that made it. Resumes after disconnections from
   * the last version it has (no gap, no duplicate). `close()` stops it.
   */
  follow(boardId: string, listener: FollowListener, options: FollowOptions = {}): LiveBoard {
    if (!this.socketImpl) throw new Error("no WebSocket: pass options.WebSocket");
    const live = new LiveBoard(this, boardId, listener, options, this.socketImpl, () => this.follows.delete(live));
    this.follows.add(live);
    live.start();
    return live;
  }

  /** Whether the app said it is online (`setOnline`). */
  get online(): boolean {
    return this.isOnline;
  }

  /**
   * What the app knows of the network (NetInfo) and of being in the
   * foreground (AppState). `false` closes the follows' sockets and holds
   * queued writes; `true` reconnects and sends them at once, without waiting
   * out a backoff.
   */
  setOnline(online: boolean): void {
    if (online === this.isOnline) return;
    this.isOnline = online;
    this.outbox.setOnline(online);
    for (const live of this.follows) live.setOnline(online);
  }

  /** Resolves once the outbox stored before a restart is loaded (at once without a `storage`). */
  ready(): Promise<void> {
    return this.outbox.ready();
  }

  /** Writes not yet answered by the server, oldest first. */
  get queuedWrites(): readonly QueuedWrite[] {
    return this.outbox.pending;
  }

  /** The WebSocket URL for this mode (`/quick/ws` or `/ws`, with the token). */
  socketUrl(): string {
    const base = this.baseUrl || (globalThis as { location?: { origin: string } }).location?.origin || "";
    const ws = base.replace(/^http/, "ws");
    if (this.mode === "quick") return `${ws}/quick/ws`;
    return this.token ? `${ws}/ws?token=${encodeURIComponent(this.token)}` : `${ws}/ws`;
  }

  /** @internal A follow got its connection back: queued writes go now. */
  connectionRestored(): void {
    this.outbox.waker.wake();
  }

  /** @internal */
  async queuedMoves(boardId: string): Promise<QueuedMove[]> {
    await this.outbox.ready();
    return this.outbox.pending.flatMap(({ key, move }) =>
      move?.board_id === boardId ? [{ key, task_id: move.task_id, placement: { status: move.status, position: move.position } }] : [],
    );
  }

  // --- Writes ------------------------------------------------------------------

  /** A write: into the outbox, shown at once when it is a move. */
  private async write<M extends Mutating, R extends RouteOf<M>>(method: M, route: R, init: InitOf<M, R>, move?: QueuedWrite["move"]): Promise<Answer<BodyOf<M, R>>> {
    const { params, body } = init as { params?: { path?: Record<string, string> }; body?: unknown };
    const write: QueuedWrite = { key: newKey(), method, route, path: params?.path ?? {}, body, queued_at: new Date().toISOString() };
    if (move) {
      write.move = move;
      const placement = { status: move.status, position: move.position };
      this.followsOf(move.board_id).forEach((live) => live.expect({ key: write.key, task_id: move.task_id, placement }));
    }
    return (await this.outbox.add(write)) as Answer<BodyOf<M, R>>;
  }

  private send(write: QueuedWrite): Promise<Answer<unknown>> {
    const init = { params: { path: write.path }, body: write.body, headers: { "idempotency-key": write.key } };
    return this.rest.call(write.method, write.route as never, init as never);
  }

  private settled(outcome: Outcome): void {
    const { write } = outcome;
    if ("refused" in outcome) this.onWriteRefused?.(write, outcome.refused);
    if (!write.move) return;
    const result = "answer" in outcome ? { version: outcome.answer.version } : { refused: outcome.refused };
    this.followsOf(write.move.board_id).forEach((live) => live.settled(write.key, write.move!.task_id, result));
  }

  private followsOf(boardId: string): LiveBoard[] {
    return [...this.follows].filter((live) => live.boardId === boardId);
  }

  /** The REST client, for routes only `/api` has. */
  private api(): Rest {
    if (this.mode !== "api") throw new Error("accounts and members are `api` mode only");
    return this.rest;
  }
}

/** The query of a past moment: `at=<version>` or `as_of=<RFC 3339>`. */
function momentQuery(moment: Moment): { at: number } | { as_of: string } {
  return typeof moment === "number" ? { at: moment } : { as_of: rfc3339(moment.asOf)! };
}

function rfc3339(time: string | Date | undefined): string | undefined {
  return time instanceof Date ? time.toISOString() : time;
}
