// The contract's shapes. REST resources come from the generated OpenAPI
// types (src/openapi.ts, `npm run generate`); the event envelopes and the
// WebSocket frames follow docs/asyncapi.yaml.
import type { components } from "./openapi.js";

type Schemas = components["schemas"];

export type Board = Schemas["Board"];
export type Task = Schemas["Task"];
export type Member = Schemas["Member"];
export type Role = Schemas["Role"];
export type User = Schemas["User"];
export type Session = Schemas["Session"];
export type ErrorBody = Schemas["Error"];
export type ErrorCode = Schemas["ErrorCode"];
export type CreateBoardRequest = Schemas["CreateBoardRequest"];
export type UpdateBoardRequest = Schemas["UpdateBoardRequest"];
export type CreateTaskRequest = Schemas["CreateTaskRequest"];
export type UpdateTaskRequest = Schemas["UpdateTaskRequest"];
/** A board's flow metrics over a range (docs/ANALYTICS.md defines each number). */
export type FlowReport = Schemas["FlowReport"];
export type FlowPercentiles = Schemas["FlowPercentiles"];

/** The range of `analytics`: `[from, to)`, RFC 3339 strings or `Date`s
 * (default: the 30 days before now), and the forecast's `seed`. */
export interface AnalyticsRange {
  from?: string | Date;
  to?: string | Date;
  seed?: number;
}

/** A moment in a board's past: a version, or the time `asOf` (the board
 * after every event stamped at or before it). */
export type Moment = number | { asOf: string | Date };

export type Mode = "quick" | "api";

/** Where a task sits: its column and its position inside it. */
export interface Placement {
  status: string;
  position: number;
}

export interface Repositioned {
  task_id: string;
  position: number;
}

export interface TaskChanges {
  title?: string;
  description?: string;
  /** `null` unassigns. */
  assigned_to?: string | null;
  /** Merged key by key; a `null` value removes the key. */
  fields?: Record<string, unknown>;
}

/** What each event type carries in `data`: enough to fold the board. */
export interface EventDataByType {
  "board.created": { name: string; columns: string[]; owner_id: string | null };
  "board.updated": { name?: string; columns?: string[] };
  "board.deleted": Record<string, never>;
  "member.added": { user_id: string; role: Role };
  "member.removed": { user_id: string };
  "task.created": {
    task_id: string;
    title: string;
    description: string;
    status: string;
    position: number;
    assigned_to: string | null;
    fields: Record<string, unknown>;
    rebalanced?: Repositioned[];
  };
  "task.updated": { task_id: string; changes: TaskChanges };
  "task.moved": {
    task_id: string;
    from: Placement;
    to: Placement;
    rebalanced?: Repositioned[];
    changes?: TaskChanges;
  };
  "task.deleted": { task_id: string };
}

export type EventType = keyof EventDataByType;

/** The envelope `{board_id, version, type, actor, at, data}` (+ `stream_id` in `/api`). */
export type BoardEvent = {
  [T in EventType]: {
    board_id: string;
    version: number;
    type: T;
    /** The user who caused it; `null` in quick-win. */
    actor: string | null;
    at: string;
    data: EventDataByType[T];
    stream_id?: string;
  };
}[EventType];

/** A user watching a board (`/ws` presence). */
export interface Watcher {
  id: string;
  username: string;
}

/** Server -> client WebSocket frames. */
export type ServerFrame =
  | { type: "subscribed"; board_id: string; version: number; presence?: Watcher[] }
  | ({ type: "event"; event_type: EventType } & Omit<BoardEvent, "type">)
  | { type: "presence"; board_id: string; users: Watcher[] }
  | { type: "resync"; board_id: string; version: number; reason: string }
  | { type: "error"; code: string; message: string; board_id?: string }
  | { type: "pong" };

/** Client -> server WebSocket frames. */
export type ClientFrame =
  | { type: "subscribe"; board_id: string; since?: number; presence?: boolean }
  | { type: "unsubscribe"; board_id: string }
  | { type: "ping" };
