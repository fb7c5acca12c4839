// The REST side of the SDK: one method per route of the contract, with
// Idempotency-Key on every mutation, retries of transient failures with the
// same key (a retry after a lost response is safe), and mutations queued in
// order while the server cannot be reached.
import { StreamboardError, isTransient } from "./errors.js";
import { fromBoard } from "./fold.js";
import { LiveBoard, type FollowListener, type FollowOptions } from "./follow.js";
import { positionFor, type Drop } from "./position.js";
import type {
  Board,
  BoardEvent,
  CreateBoardRequest,
  CreateTaskRequest,
  Member,
  Mode,
  Role,
  Session,
  Task,
  UpdateBoardRequest,
  UpdateTaskRequest,
  User,
} from "./types.js";

/** The part of the platform's `WebSocket` the SDK uses (browsers, React
 * Native and the `ws` package all have it). */
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
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface StreamboardOptions {
  /** The server, e.g. `http://127.0.0.1:8080`; `""` on a page the server serves. */
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
}

export interface BoardPage {
  boards: Board[];
  next_cursor?: string;
}

export interface EventPage {
  events: BoardEvent[];
  next_after: number | null;
}

/** A mutation's answer: the JSON body and the board version it reflects (ETag). */
interface Answer<T> {
  body: T;
  version: number | null;
}

/** A mutation waiting for the server, sent in order. */
interface Queued {
  run: () => Promise<void>;
}

export class Streamboard {
  readonly baseUrl: string;
  readonly mode: Mode;
  token: string | undefined;
  readonly maxBackoffMs: number;
  private readonly fetchImpl: FetchLike;
  private readonly socketImpl: WebSocketConstructor | undefined;
  private readonly follows = new Set<LiveBoard>();
  private readonly queue: Queued[] = [];
  private draining = false;
  private wake: (() => void) | null = null;

  constructor(options: StreamboardOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.mode = options.mode;
    this.token = options.token;
    this.maxBackoffMs = options.maxBackoffMs ?? 5000;
    const platformFetch = (globalThis as { fetch?: FetchLike }).fetch;
    const fetchImpl = options.fetch ?? platformFetch;
    if (!fetchImpl) throw new Error("no fetch: pass options.fetch");
    this.fetchImpl = (input, init) => fetchImpl(input, init);
    this.socketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  }

  private get prefix(): string {
    return this.mode === "quick" ? "/quick" : "/api";
  }

  // --- Accounts (`api` mode) ------------------------------------------------

  async register(username: string, password: string): Promise<Session> {
    return this.startSession("/api/auth/register", username, password);
  }

  async login(username: string, password: string): Promise<Session> {
    return this.startSession("/api/auth/login", username, password);
  }

  /** Revokes the token (and clears the cookie); the client forgets it. */
  async logout(): Promise<void> {
    await this.request("POST", "/api/auth/logout");
    this.token = undefined;
  }

  /** The signed-in user, or `null` without a valid token or cookie. */
  async me(): Promise<User | null> {
    try {
      return (await this.request<User>("GET", "/api/me")).body;
    } catch (error) {
      if (error instanceof StreamboardError && error.status === 401) return null;
      throw error;
    }
  }

  private async startSession(path: string, username: string, password: string): Promise<Session> {
    const { body } = await this.request<Session>("POST", path, { username, password });
    this.token = body.token;
    return body;
  }

  // --- Boards ---------------------------------------------------------------

  async listBoards(cursor?: string): Promise<BoardPage> {
    const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
    return (await this.request<BoardPage>("GET", `${this.prefix}/boards${query}`)).body;
  }

  async getBoard(boardId: string): Promise<Board> {
    return (await this.request<Board>("GET", this.boardPath(boardId))).body;
  }

  async createBoard(board: CreateBoardRequest): Promise<Board> {
    return (await this.mutate<Board>("POST", `${this.prefix}/boards`, board)).body;
  }

  async updateBoard(boardId: string, patch: UpdateBoardRequest): Promise<Board> {
    return (await this.mutate<Board>("PATCH", this.boardPath(boardId), patch)).body;
  }

  async deleteBoard(boardId: string): Promise<void> {
    await this.mutate("DELETE", this.boardPath(boardId));
  }

  async events(boardId: string, after = 0, limit?: number): Promise<EventPage> {
    const query = `?after=${after}` + (limit ? `&limit=${limit}` : "");
    return (await this.request<EventPage>("GET", `${this.boardPath(boardId)}/events${query}`)).body;
  }

  // --- Members (`api` mode) -------------------------------------------------

  async members(boardId: string): Promise<Member[]> {
    return (await this.request<{ members: Member[] }>("GET", `/api/boards/${boardId}/members`)).body.members;
  }

  /** Adds a member by username (or user id), or changes their role. */
  async addMember(boardId: string, who: { username: string } | { user_id: string }, role: Exclude<Role, "owner">): Promise<Member> {
    return (await this.mutate<Member>("POST", `/api/boards/${boardId}/members`, { ...who, role })).body;
  }

  async removeMember(boardId: string, userId: string): Promise<void> {
    await this.mutate("DELETE", `/api/boards/${boardId}/members/${userId}`);
  }

  // --- Tasks ----------------------------------------------------------------

  async createTask(boardId: string, task: CreateTaskRequest): Promise<Task> {
    return (await this.mutate<Task>("POST", `${this.boardPath(boardId)}/tasks`, task)).body;
  }

  async updateTask(boardId: string, taskId: string, patch: UpdateTaskRequest): Promise<Task> {
    return (await this.mutate<Task>("PATCH", this.taskPath(boardId, taskId), patch)).body;
  }

  async deleteTask(boardId: string, taskId: string): Promise<void> {
    await this.mutate("DELETE", this.taskPath(boardId, taskId));
  }

  /**
   * Moves a card: to the end of `status`, or `before`/`after` another card of
   * it. The position is computed from the board as this client sees it (a
   * followed board's replica, else a fresh read). Followed boards show the
   * move at once; it is confirmed by its event or rolled back (with the
   * reason, see `FollowOptions.onRollback`) when the server refuses it.
   */
  async moveTask(boardId: string, taskId: string, drop: Drop): Promise<Task> {
    const live = [...this.follows].filter((f) => f.boardId === boardId);
    const seen = live.find((f) => f.state !== null)?.state ?? fromBoard(await this.getBoard(boardId));
    const position = positionFor(seen, taskId, drop);
    const moves = live.map((f) => f.expect(taskId, { status: drop.status, position }));
    try {
      const answer = await this.mutate<Task>("PATCH", this.taskPath(boardId, taskId), { status: drop.status, position });
      moves.forEach((move) => move.confirmedAt(answer.version ?? 0));
      return answer.body;
    } catch (error) {
      moves.forEach((move) => move.refused(error));
      throw error;
    }
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

  /** The WebSocket URL for this mode (`/quick/ws` or `/ws`, with the token). */
  socketUrl(): string {
    const base = this.baseUrl || (globalThis as { location?: { origin: string } }).location?.origin || "";
    const ws = base.replace(/^http/, "ws");
    if (this.mode === "quick") return `${ws}/quick/ws`;
    return this.token ? `${ws}/ws?token=${encodeURIComponent(this.token)}` : `${ws}/ws`;
  }

  /** Called by a follow that got its connection back: queued mutations go now. */
  connectionRestored(): void {
    this.wake?.();
  }

  // --- HTTP ------------------------------------------------------------------

  private boardPath(boardId: string): string {
    return `${this.prefix}/boards/${boardId}`;
  }

  private taskPath(boardId: string, taskId: string): string {
    return `${this.boardPath(boardId)}/tasks/${taskId}`;
  }

  /** A mutation: queued behind earlier ones, sent with one Idempotency-Key
   * however often it is retried, retried while the server is unreachable. */
  private mutate<T>(method: string, path: string, body?: unknown): Promise<Answer<T>> {
    const key = newKey();
    return new Promise<Answer<T>>((resolve, reject) => {
      this.queue.push({
        run: async () => {
          for (let attempt = 0; ; attempt++) {
            try {
              resolve(await this.request<T>(method, path, body, { "idempotency-key": key }));
              return;
            } catch (error) {
              if (!isTransient(error)) {
                reject(error);
                return;
              }
              await this.pause(backoff(attempt, this.maxBackoffMs));
            }
          }
        },
      });
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length > 0) await this.queue.shift()!.run();
    } finally {
      this.draining = false;
    }
  }

  /** Waits `ms`, or less when a follow reconnects. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.wake === done) self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }

  private async request<T>(method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<Answer<T>> {
    const headers: Record<string, string> = { accept: "application/json", ...extra };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = JSON.stringify(body);
    const response = await this.fetchImpl(`${this.baseUrl}${path}`, init);
    const text = await response.text();
    const json = text ? safeJson(text) : undefined;
    if (!response.ok) {
      const error = (json as { error?: { code?: string; message?: string; details?: any } } | undefined)?.error;
      throw new StreamboardError(response.status, error?.code ?? "http_" + response.status, error?.message ?? (text || response.statusText), error?.details);
    }
    const etag = response.headers.get("etag");
    const version = etag ? Number(etag.replace(/\D/g, "")) : null;
    return { body: json as T, version };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Exponential backoff with jitter: 250 ms, 500 ms, ... up to `max`. */
export function backoff(attempt: number, max: number): number {
  const base = Math.min(max, 250 * 2 ** Math.min(attempt, 10));
  return base / 2 + Math.random() * (base / 2);
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
