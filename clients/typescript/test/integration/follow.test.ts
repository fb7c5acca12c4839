// The SDK against the real server, in both modes: REST calls, a followed
// board that folds every change, optimistic moves confirmed or rolled back,
// presence with names, and a server restart in the middle of a follow.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { StreamboardError, type Board, type BoardEvent, type ConnectionState, type Watcher } from "../../src/index.js";
import { client, eventually, serverFor } from "../harness.js";

/** What a follow has seen: the latest board, every event, every state. */
function recorder() {
  const seen = { board: null as Board | null, events: [] as BoardEvent[], states: [] as ConnectionState[], watchers: [] as Watcher[], rollbacks: [] as unknown[] };
  return {
    seen,
    listener: (board: Board | null, event?: BoardEvent) => {
      seen.board = board;
      if (event) seen.events.push(event);
    },
    options: {
      onState: (state: ConnectionState) => seen.states.push(state),
      onWatchers: (watchers: Watcher[]) => (seen.watchers = watchers),
      onRollback: (_task: string, error: unknown) => seen.rollbacks.push(error),
    },
  };
}

const titles = (board: Board | null, status?: string) =>
  (board?.tasks ?? []).filter((t) => status === undefined || t.status === status).map((t) => t.title);

describe("quick-win mode", () => {
  const at = serverFor("quick");

  test("a followed board folds what another client writes, and moves land where they were dropped", async () => {
    const writer = client(at);
    const reader = client(at);
    const board = await writer.createBoard({ name: "Quick SDK" });
    const first = await writer.createTask(board.id, { title: "first" });
    const { seen, listener, options } = recorder();
    const live = reader.follow(board.id, listener, options);
    try {
      await eventually(() => live.connection === "live", "the follow to be live");
      const second = await writer.createTask(board.id, { title: "second" });
      await writer.createTask(board.id, { title: "third", status: "in_progress" });
      await eventually(() => titles(seen.board).length === 3, "three cards");
      assert.deepEqual(titles(seen.board, "todo"), ["first", "second"]);

      await reader.moveTask(board.id, second.id, { status: "todo", before: first.id });
      await writer.moveTask(board.id, first.id, { status: "in_progress" });
      await eventually(() => titles(seen.board, "in_progress").length === 2, "the move to arrive");
      assert.deepEqual(titles(seen.board, "todo"), ["second"]);
      assert.deepEqual(titles(seen.board, "in_progress"), ["third", "first"]);

      // The replica is exactly the server's board, event for event.
      const fresh = await writer.getBoard(board.id);
      await eventually(() => seen.board?.version === fresh.version, "the last version");
      assert.deepEqual(seen.board, fresh);
      assert.deepEqual(seen.events.map((e) => e.version), [3, 4, 5, 6], "each event once, in order");
      assert.equal(seen.rollbacks.length, 0);
    } finally {
      live.close();
    }
  });

  test("a refused move is rolled back with the reason", async () => {
    const sb = client(at);
    const board = await sb.createBoard({ name: "Refusals" });
    const task = await sb.createTask(board.id, { title: "only" });
    const { seen, listener, options } = recorder();
    const live = sb.follow(board.id, listener, options);
    try {
      await eventually(() => live.connection === "live", "live");
      await assert.rejects(sb.moveTask(board.id, task.id, { status: "no_such_column" }), (error: unknown) => {
        assert.ok(error instanceof StreamboardError);
        assert.equal(error.status, 422);
        return true;
      });
      assert.equal(seen.rollbacks.length, 1);
      assert.deepEqual(titles(seen.board, "todo"), ["only"], "the card is back in its column");
    } finally {
      live.close();
    }
  });
});

describe("event-sourced mode", () => {
  const at = serverFor("api");

  test("accounts, members with names, and presence with names", async () => {
    const ann = client(at);
    const bob = client(at);
    const annSession = await ann.register("ann_sdk", "sdk test passphrase");
    await bob.register("bob_sdk", "sdk test passphrase");
    assert.equal((await ann.me())?.username, "ann_sdk");
    const board = await ann.createBoard({ name: "Team", columns: ["backlog", "doing", "done"] });
    await ann.addMember(board.id, { username: "bob_sdk" }, "editor");
    const members = await ann.members(board.id);
    assert.deepEqual(members.map((m) => [m.username, m.role]).sort(), [["ann_sdk", "owner"], ["bob_sdk", "editor"]]);
    assert.equal((await ann.getBoard(board.id)).members?.find((m) => m.user_id === annSession.user.id)?.username, "ann_sdk");

    const annSees = recorder();
    const annLive = ann.follow(board.id, annSees.listener, annSees.options);
    const bobLive = bob.follow(board.id, () => {}, {});
    try {
      await eventually(() => annSees.seen.watchers.length === 2, "both watchers");
      assert.deepEqual(annSees.seen.watchers.map((w) => w.username).sort(), ["ann_sdk", "bob_sdk"]);
      bobLive.close();
      await eventually(() => annSees.seen.watchers.length === 1, "bob to leave");
      assert.equal(annSees.seen.watchers[0]?.username, "ann_sdk");
    } finally {
      annLive.close();
      bobLive.close();
    }
    await ann.logout();
    assert.equal(await ann.me(), null, "the token is revoked");
  });

  test("a retried mutation with its key writes once", async () => {
    const sb = client(at);
    await sb.register("retry_sdk", "sdk test passphrase");
    const board = await sb.createBoard({ name: "Retries" });
    // The same request twice with one key, as a retry after a lost answer.
    const send = () =>
      fetch(`${at.server.url}/api/boards/${board.id}/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${sb.token}`, "idempotency-key": "retry-1" },
        body: JSON.stringify({ title: "once" }),
      }).then((r) => r.json() as Promise<{ id: string }>);
    const [a, b] = [await send(), await send()];
    assert.equal(a.id, b.id);
    assert.deepEqual(titles(await sb.getBoard(board.id)), ["once"]);
  });

  test("a follow resumes across a server restart, with what was written meanwhile and nothing twice", async () => {
    const sb = client(at, { maxBackoffMs: 400 });
    await sb.register("restart_sdk", "sdk test passphrase");
    const board = await sb.createBoard({ name: "Restarts" });
    await sb.createTask(board.id, { title: "before" });
    const { seen, listener, options } = recorder();
    const live = sb.follow(board.id, listener, options);
    try {
      await eventually(() => live.connection === "live" && titles(seen.board).length === 1, "live with one card");
      await at.server.stop();
      await eventually(() => live.connection !== "live", "the follow to notice");
      // Written while the server is down: queued, sent once it is back.
      const queued = sb.createTask(board.id, { title: "queued while down" });
      at.server = await at.env.server(at.server.port);
      const writer = client(at);
      writer.token = sb.token;
      await writer.createTask(board.id, { title: "written meanwhile" });
      await queued;
      await eventually(() => titles(seen.board).length === 3, "all three cards");
      assert.deepEqual(titles(seen.board).sort(), ["before", "queued while down", "written meanwhile"]);
      await eventually(() => live.connection === "live", "live again");
      const versions = seen.events.map((e) => e.version);
      assert.deepEqual(versions, [...new Set(versions)].sort((x, y) => x - y), "no duplicate, in order");
      assert.deepEqual(seen.board, await sb.getBoard(board.id));
      assert.ok(seen.states.includes("reconnecting"), `states: ${seen.states.join(", ")}`);
    } finally {
      live.close();
    }
  });
});
