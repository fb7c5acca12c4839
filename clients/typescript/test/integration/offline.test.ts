// Offline and restarts, against the real server: an app process killed
// mid-outbox and started again on the same storage (every write applied
// once, the board shown before any network), `setOnline`, and follows of
// boards the server refuses.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";

import { StreamboardError, type Board, type BoardEvent, type ConnectionState } from "../../src/index.js";
import { AppProcess } from "../../../testing/app-process.js";
import { memoryStorage, storedBoards, storedWrites } from "../../../testing/file-storage.js";
import { client, eventually, serverFor } from "../harness.js";
import { Proxy } from "../../../testing/proxy.js";

const appScript = join(dirname(fileURLToPath(import.meta.url)), "..", "app", "offline-app.js");
/** The app process (test/app/offline-app.ts). */
const app = (env: Record<string, string>) => new AppProcess(appScript, env);

async function history(sb: { events(id: string, after?: number, limit?: number): Promise<{ events: BoardEvent[] }> }, boardId: string): Promise<BoardEvent[]> {
  return (await sb.events(boardId, 0, 1000)).events;
}

describe("an app killed mid-outbox", () => {
  const at = serverFor("api");

  test("sends every queued write exactly once after a restart, and shows the board before any network", async () => {
    const sb = client(at);
    const session = await sb.register("offline_app", "sdk test passphrase");
    const board = await sb.createBoard({ name: "On the train", columns: ["todo", "doing", "done"] });
    const card = await sb.createTask(board.id, { title: "move me" });
    const titles = Array.from({ length: 8 }, (_, i) => `written offline ${i + 1}`);
    const plan = [...titles.slice(0, 3).map((create) => ({ create })), { move: { task_id: card.id, status: "done" } }, ...titles.slice(3).map((create) => ({ create }))];
    const dir = mkdtempSync(join(tmpdir(), "sb-offline-"));
    const proxy = await Proxy.start(at.server.url);
    const env = { SB_URL: proxy.url, SB_TOKEN: session.token, SB_BOARD: board.id, SB_STORE: join(dir, "storage.json") };
    try {
      // Writes are held: the app stores all nine, and the board it follows.
      proxy.holdWrites = true;
      const first = app({ ...env, SB_PLAN: JSON.stringify(plan) });
      await eventually(() => storedWrites(env.SB_STORE).length === 9 && storedBoards(env.SB_STORE).includes(board.id), "nine writes and the board stored");

      // Writes flow; the server applies the fourth (the move) and the app is
      // killed before it hears the answer.
      let writes = 0;
      proxy.onAnswer = (seen) => {
        if (seen.method === "GET") return "pass";
        if (++writes < 4) return "pass";
        first.kill();
        return "drop";
      };
      proxy.release();
      await first.exited;
      assert.equal(writes, 4);
      assert.equal(storedWrites(env.SB_STORE).length, 6, "the move (unanswered) and five cards are left");

      // The app again, on the same storage, with no network at first.
      proxy.onAnswer = () => "pass";
      proxy.holdAll = true;
      const before = proxy.seen.length;
      const second = app({ ...env, SB_PLAN: "" });
      const shown = (await second.first("board", 5000)).board as { tasks: { title: string; status: string }[] };
      assert.equal(proxy.seen.length, before, "nothing reached the server yet");
      assert.deepEqual(shown.tasks.find((t) => t.title === "move me")?.status, "done", "the queued move is shown");

      proxy.release();
      await second.first("drained");
      const resent = proxy.seen.slice(before).filter((s) => s.method !== "GET");
      assert.deepEqual(resent.map((s) => [s.method, s.replayed]), [["PATCH", true], ...titles.slice(3).map(() => ["POST", false])], "the move is answered from its first result, the cards are sent once");
      assert.ok(!proxy.seen.slice(before).some((s) => s.method === "GET" && s.path === `/api/boards/${board.id}`), "the board was not read again: the follow resumed with since");

      const events = await history(sb, board.id);
      const created = events.filter((e) => e.type === "task.created").map((e) => (e.data as { title: string }).title);
      assert.deepEqual(created.sort(), ["move me", ...titles].sort(), "each card once");
      assert.equal(events.filter((e) => e.type === "task.moved").length, 1, "the move once");
      await eventually(() => second.lines.some((l) => l.board?.version === events.at(-1)!.version), "the app to fold the last event");
    } finally {
      AppProcess.killAll();
      await proxy.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("online and offline", () => {
  const at = serverFor("api");

  test("setOnline(false) closes the socket and holds writes; setOnline(true) reconnects and sends them at once", async () => {
    const sb = client(at, { maxBackoffMs: 30_000 });
    await sb.register("online_app", "sdk test passphrase");
    const board = await sb.createBoard({ name: "Foreground" });
    const states: ConnectionState[] = [];
    let shown: Board | null = null;
    const live = sb.follow(board.id, (b) => (shown = b), { onState: (s) => states.push(s) });
    try {
      await eventually(() => live.connection === "live", "live");
      sb.setOnline(false);
      await eventually(() => live.connection === "offline", "offline");
      const queued = sb.createTask(board.id, { title: "while in the background" });
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await sb.getBoard(board.id)).tasks.length, 0, "nothing sent while offline");
      assert.equal(sb.queuedWrites.length, 1);

      const back = Date.now();
      sb.setOnline(true);
      await queued;
      await eventually(() => live.connection === "live" && shown?.tasks.length === 1, "live again with the card");
      assert.ok(Date.now() - back < 1500, `back in ${Date.now() - back} ms`);
      assert.ok(states.includes("offline"), states.join(", "));
      assert.equal(states.at(-1), "live");
    } finally {
      live.close();
    }
  });

  test("a board that does not exist, or is not yours, is said once and not retried", async () => {
    const owner = client(at);
    await owner.register("owner_refused", "sdk test passphrase");
    const theirs = await owner.createBoard({ name: "Private" });
    const stranger = client(at, { maxBackoffMs: 200 });
    await stranger.register("stranger", "sdk test passphrase");
    for (const boardId of ["00000000-0000-7000-8000-000000000000", theirs.id]) {
      const errors: unknown[] = [];
      const states: ConnectionState[] = [];
      const live = stranger.follow(boardId, () => {}, { onError: (e) => errors.push(e), onState: (s) => states.push(s) });
      await eventually(() => live.connection === "failed", "failed");
      await new Promise((r) => setTimeout(r, 800)); // several backoffs: nothing more happens
      assert.equal(errors.length, 1);
      assert.ok(errors[0] instanceof StreamboardError && errors[0].status === 404);
      assert.deepEqual(states, ["failed"]);
      assert.ok(live.error instanceof StreamboardError);
    }
  });

  test("a stored board is shown at once; when the server no longer has it the follow says so and forgets it", async () => {
    const storage = memoryStorage();
    const sb = client(at, { storage });
    await sb.register("stored_board", "sdk test passphrase");
    const board = await sb.createBoard({ name: "Soon gone" });
    await sb.createTask(board.id, { title: "kept on the phone" });
    const first = sb.follow(board.id, () => {});
    await eventually(() => first.connection === "live", "live");
    first.close();
    await eventually(() => [...storage.values.keys()].some((k) => k.endsWith(`:board:${board.id}`)), "the board stored");
    await sb.deleteBoard(board.id);

    const seen: (Board | null)[] = [];
    const errors: unknown[] = [];
    const again = sb.follow(board.id, (b) => seen.push(b), { onError: (e) => errors.push(e) });
    await eventually(() => again.connection === "failed", "failed");
    assert.equal(seen[0]?.tasks[0]?.title, "kept on the phone", "shown from storage first");
    assert.equal(seen.at(-1), null, "then gone");
    assert.equal(errors.length, 1);
    await eventually(() => ![...storage.values.keys()].some((k) => k.endsWith(`:board:${board.id}`)), "the board forgotten");
  });
});
