// What the SDK stores for a restart: boards round-trip through the store,
// at most CACHED_BOARDS are kept, a key's writes land in order with the
// newest value last, and logout's clear leaves nothing behind.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CACHED_BOARDS, fromBoard, type Board, type KeyValueStorage } from "../../src/index.js";
import { Persistence } from "../../src/storage.js";
import { memoryStorage } from "../../../testing/file-storage.js";

function board(id: string, version = 1): Board {
  const at = "2026-01-01T00:00:00Z";
  const task = { id: `${id}-t`, board_id: id, title: "t", description: "", status: "todo", position: 1024, assigned_to: null, fields: { a: 1 }, created_at: at, updated_at: at };
  return { id, name: `board ${id}`, columns: ["todo", "done"], version, created_at: at, updated_at: at, tasks: [task] };
}

test("a stored board comes back as it was", async () => {
  const persistence = new Persistence(memoryStorage(), "t");
  await persistence.saveBoard(fromBoard(board("a", 7)));
  const back = await persistence.loadBoard("a");
  assert.equal(back?.version, 7);
  assert.deepEqual([...back!.tasks.values()], board("a", 7).tasks);
  assert.equal(await persistence.loadBoard("b"), null);
});

test(`at most ${CACHED_BOARDS} boards are kept, the least recently saved going first`, async () => {
  const storage = memoryStorage();
  const persistence = new Persistence(storage, "t");
  for (let i = 0; i <= CACHED_BOARDS; i++) await persistence.saveBoard(fromBoard(board(`b${i}`)));
  assert.equal(await persistence.loadBoard("b0"), null);
  assert.notEqual(await persistence.loadBoard(`b${CACHED_BOARDS}`), null);
  assert.equal([...storage.values.keys()].filter((k) => k.startsWith("t:board:")).length, CACHED_BOARDS);
});

test("writes to one key land in order, the newest last, and wait for a slow store", async () => {
  const written: string[] = [];
  let release: () => void = () => {};
  const slow: KeyValueStorage = {
    getItem: async () => null,
    setItem: (_key, value) => new Promise((resolve) => (release = () => resolve(void written.push(value)))),
    removeItem: async () => {},
  };
  const persistence = new Persistence(slow, "t");
  const writes = [1, 2, 3].map((n) => persistence.saveOutbox([{ key: `k${n}`, method: "post", route: "/boards", path: {}, queued_at: "" }]));
  let done = false;
  void Promise.all(writes).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(done, false, "not stored yet");
  release();
  await new Promise((r) => setTimeout(r, 10));
  release(); // the first write done, the newest (3) goes next; 2 is skipped
  await Promise.all(writes);
  assert.deepEqual(written.map((w) => JSON.parse(w).writes[0].key), ["k1", "k3"]);
});

test("clear removes the outbox and every stored board", async () => {
  const storage = memoryStorage();
  const persistence = new Persistence(storage, "t");
  await persistence.saveBoard(fromBoard(board("a")));
  await persistence.saveOutbox([{ key: "k", method: "post", route: "/boards", path: {}, queued_at: "" }]);
  await persistence.clear();
  assert.deepEqual([...storage.values.keys()], []);
});
