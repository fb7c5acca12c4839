import assert from "node:assert/strict";
import { test } from "node:test";

import { apply, fold, positionFor, STEP, type BoardEvent, type BoardState } from "../../src/index.js";

const board = "00000000-0000-4000-8000-00000000000b";
const at = "2026-01-01T00:00:00Z";
let version = 0;
const event = (type: BoardEvent["type"], data: unknown): BoardEvent =>
  ({ board_id: board, version: ++version, type, actor: null, at, data }) as BoardEvent;

function column(): BoardState {
  version = 0;
  return fold([
    event("board.created", { name: "b", columns: ["a", "b"], owner_id: null }),
    event("task.created", { task_id: "t1", title: "1", description: "", status: "a", position: 1024, assigned_to: null, fields: {} }),
    event("task.created", { task_id: "t2", title: "2", description: "", status: "a", position: 2048, assigned_to: null, fields: {} }),
    event("task.created", { task_id: "t3", title: "3", description: "", status: "a", position: 3072, assigned_to: null, fields: {} }),
  ])!;
}

test("a drop between two cards takes the middle of their positions", () => {
  const state = column();
  assert.equal(positionFor(state, "t3", { status: "a", before: "t2" }), 1536);
  assert.equal(positionFor(state, "t1", { status: "a", after: "t2" }), 2560);
});

test("a drop at either end of a column keeps a full step from its neighbour", () => {
  const state = column();
  assert.equal(positionFor(state, "t3", { status: "a", before: "t1" }), 1024 - STEP);
  assert.equal(positionFor(state, "t1", { status: "a", after: "t3" }), 3072 + STEP);
  assert.equal(positionFor(state, "t1", { status: "a" }), 3072 + STEP, "the end of the column, the card itself left out");
  assert.equal(positionFor(state, "t1", { status: "b" }), STEP, "an empty column starts at one step");
});

test("a drop next to a card that is not in the column is refused", () => {
  assert.throws(() => positionFor(column(), "t1", { status: "b", before: "t2" }), /not in column b/);
});

test("the fold skips events for tasks it does not have, but takes their version", () => {
  const state = column();
  const next = apply(state, { board_id: board, version: 5, type: "task.deleted", actor: null, at, data: { task_id: "nope" } });
  assert.equal(next!.version, 5);
  assert.equal(next!.tasks.size, 3);
  assert.equal(state.version, 4, "apply leaves the state it was given alone");
});
