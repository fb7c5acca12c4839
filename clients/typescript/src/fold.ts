// The fold: events into a board, with the server domain's semantics
// (core/src/domain/board.rs `apply`). The golden fixtures in clients/fixtures/
// hold both sides to the same result.
import type { Board, BoardEvent, Member, Task, TaskChanges, Repositioned } from "./types.js";

/** A board as the fold keeps it: tasks and members by id. */
export interface BoardState {
  id: string;
  name: string;
  columns: string[];
  version: number;
  created_at: string;
  updated_at: string;
  /** `/api` boards only; quick-win boards have no owner. */
  owner_id: string | null;
  members: Map<string, Member>;
  tasks: Map<string, Task>;
  deleted: boolean;
}

/** Applies one event. Like the server's fold it never fails: an event that
 * does not fit (a task that is not there) changes nothing but the version. */
export function apply(state: BoardState | null, event: BoardEvent): BoardState | null {
  if (event.type === "board.created") {
    const members = new Map<string, Member>();
    if (event.data.owner_id) members.set(event.data.owner_id, { user_id: event.data.owner_id, role: "owner" });
    return {
      id: event.board_id,
      name: event.data.name,
      columns: [...event.data.columns],
      version: event.version,
      created_at: event.at,
      updated_at: event.at,
      owner_id: event.data.owner_id,
      members,
      tasks: new Map(),
      deleted: false,
    };
  }
  if (!state) return null;
  const board: BoardState = { ...state, members: new Map(state.members), tasks: new Map(state.tasks) };
  board.version = event.version;
  board.updated_at = event.at;
  switch (event.type) {
    case "board.updated":
      if (event.data.name !== undefined) board.name = event.data.name;
      if (event.data.columns !== undefined) board.columns = [...event.data.columns];
      break;
    case "board.deleted":
      board.deleted = true;
      break;
    case "member.added": {
      const known = board.members.get(event.data.user_id);
      const member: Member = { user_id: event.data.user_id, role: event.data.role };
      // Names come from the REST answers; keep one we already know.
      if (known?.username !== undefined) member.username = known.username;
      board.members.set(event.data.user_id, member);
      break;
    }
    case "member.removed":
      board.members.delete(event.data.user_id);
      break;
    case "task.created": {
      reposition(board, event.data.rebalanced);
      const task: Task = {
        id: event.data.task_id,
        board_id: board.id,
        title: event.data.title,
        description: event.data.description,
        status: event.data.status,
        position: event.data.position,
        assigned_to: event.data.assigned_to,
        fields: { ...event.data.fields },
        created_at: event.at,
        updated_at: event.at,
      };
      if (event.actor !== null) {
        task.created_by = event.actor;
        task.updated_by = event.actor;
      }
      board.tasks.set(task.id, task);
      break;
    }
    case "task.updated": {
      const task = board.tasks.get(event.data.task_id);
      if (task) board.tasks.set(task.id, change(task, event.data.changes, event));
      break;
    }
    case "task.moved": {
      reposition(board, event.data.rebalanced);
      const task = board.tasks.get(event.data.task_id);
      if (task) {
        const moved = { ...task, status: event.data.to.status, position: event.data.to.position };
        board.tasks.set(task.id, change(moved, event.data.changes ?? {}, event));
      }
      break;
    }
    case "task.deleted":
      board.tasks.delete(event.data.task_id);
      break;
  }
  return board;
}

/** Folds a whole history; `null` unless it starts with `board.created`. */
export function fold(events: Iterable<BoardEvent>, state: BoardState | null = null): BoardState | null {
  let board = state;
  for (const event of events) board = apply(board, event);
  return board;
}

function reposition(board: BoardState, moves: Repositioned[] | undefined): void {
  for (const moved of moves ?? []) {
    const task = board.tasks.get(moved.task_id);
    if (task) board.tasks.set(task.id, { ...task, position: moved.position });
  }
}

function change(task: Task, changes: TaskChanges, event: BoardEvent): Task {
  const changed: Task = { ...task };
  if (changes.title !== undefined) changed.title = changes.title;
  if (changes.description !== undefined) changed.description = changes.description;
  if (changes.assigned_to !== undefined) changed.assigned_to = changes.assigned_to;
  if (changes.fields !== undefined) changed.fields = mergeFields(task.fields, changes.fields);
  changed.updated_at = event.at;
  if (event.actor !== null) changed.updated_by = event.actor;
  else delete changed.updated_by;
  return changed;
}

/** Merges a custom-fields patch: `null` removes a key, anything else sets it. */
export function mergeFields(fields: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const merged = { ...fields };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

/** The board as the contract renders it: tasks by column, then position,
 * then id; members by user id; `owner_id`/`members` only on `/api` boards. */
export function toBoard(state: BoardState): Board {
  const column = (status: string) => {
    const index = state.columns.indexOf(status);
    return index === -1 ? Number.MAX_SAFE_INTEGER : index;
  };
  const tasks = [...state.tasks.values()].sort(
    (a, b) => column(a.status) - column(b.status) || a.position - b.position || compareIds(a.id, b.id),
  );
  const board: Board = {
    id: state.id,
    name: state.name,
    columns: [...state.columns],
    version: state.version,
    created_at: state.created_at,
    updated_at: state.updated_at,
    tasks,
  };
  if (state.owner_id !== null) {
    board.owner_id = state.owner_id;
    board.members = [...state.members.values()].sort((a, b) => compareIds(a.user_id, b.user_id));
  }
  return board;
}

/** The fold's state from a board the API answered with. */
export function fromBoard(board: Board): BoardState {
  return {
    id: board.id,
    name: board.name,
    columns: [...board.columns],
    version: board.version,
    created_at: board.created_at,
    updated_at: board.updated_at,
    owner_id: board.owner_id ?? null,
    members: new Map((board.members ?? []).map((m) => [m.user_id, { ...m }])),
    tasks: new Map(board.tasks.map((t) => [t.id, { ...t }])),
    deleted: false,
  };
}

/** The tasks of one column in display order (position, then id). */
export function columnTasks(state: BoardState, status: string): Task[] {
  return [...state.tasks.values()]
    .filter((t) => t.status === status)
    .sort((a, b) => a.position - b.position || compareIds(a.id, b.id));
}

/** UUIDs compare as the server's `Uuid` does: lowercase hex is byte order. */
export function compareIds(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}
