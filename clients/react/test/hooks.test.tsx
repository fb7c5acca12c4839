// The hooks in React's test renderer, against the real server: a board that
// follows what others write (one follow shared by every component showing
// it), an optimistic move shown and then rolled back with the server's
// reason, watchers with names, the boards list, a board that cannot be
// opened, and the board's past (live metrics, a past version).
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { act, create, type ReactTestRenderer } from "react-test-renderer";
import WebSocket from "ws";
import { Streamboard, StreamboardError, type StreamboardOptions, type WebSocketConstructor } from "@streamboard/client";

import { StreamboardProvider, useAnalytics, useBoard, useBoardAt, useBoards, useConnection, useStreamboard, useWatchers } from "../src/index.js";
import { eventually, serverFor, type TestEnv, type TestServer } from "../../testing/server.js";

// The renderer's React Native test mode (as React Native's own Jest preset
// sets it): a legacy root, whose updates from the network need no act().
(globalThis as { IS_REACT_NATIVE_TEST_ENVIRONMENT?: boolean }).IS_REACT_NATIVE_TEST_ENVIRONMENT = true;

const rendered: ReactTestRenderer[] = [];
after(() => rendered.forEach((r) => r.unmount()));

/** A client against the environment's server; `sockets` counts the WebSockets it opened. */
function client(at: { env: TestEnv; server: TestServer }, options: Partial<StreamboardOptions> = {}) {
  const counter = { sockets: 0 };
  class Counted extends (WebSocket as unknown as new (url: string) => object) {
    constructor(url: string) {
      super(url);
      counter.sockets++;
    }
  }
  const sb = new Streamboard({ baseUrl: at.server.url, mode: at.env.mode, WebSocket: Counted as unknown as WebSocketConstructor, ...options });
  return Object.assign(sb, { counter });
}

async function render(element: React.ReactElement): Promise<ReactTestRenderer> {
  const renderer = create(element);
  rendered.push(renderer);
  await new Promise((resolve) => setTimeout(resolve, 0)); // the first render is flushed in a microtask
  return renderer;
}

/** The cards a rendered board shows, by column: `{todo: ["a", "b"], ...}`. */
function columns(renderer: ReactTestRenderer): Record<string, string[]> {
  const shown: Record<string, string[]> = {};
  for (const column of renderer.root.findAll((n) => n.type === "section")) {
    shown[column.props["data-column"]] = column.findAll((n) => n.type === "article").map((card) => String(card.props.children));
  }
  return shown;
}

/** A board as an app would show it; `log` records every column each card was shown in. */
function BoardView({ boardId, log }: { boardId: string; log?: string[] }) {
  const { board, connection, error, rollback } = useBoard(boardId);
  if (!board) return <p data-state={connection}>{error instanceof StreamboardError ? `${error.status} ${error.code}` : connection}</p>;
  board.tasks.forEach((task) => log?.push(`${task.title}@${task.status}`));
  return (
    <div data-state={connection} data-rollback={rollback ? String((rollback.error as StreamboardError).status) : ""}>
      {board.columns.map((status) => (
        <section key={status} data-column={status}>
          {board.tasks.filter((t) => t.status === status).map((t) => (
            <article key={t.id}>{t.title}</article>
          ))}
        </section>
      ))}
    </div>
  );
}

function Connection({ boardId }: { boardId: string }) {
  return <span>{useConnection(boardId)}</span>;
}

const stateOf = (renderer: ReactTestRenderer) => renderer.root.findAll((n) => n.props["data-state"] !== undefined)[0]?.props["data-state"];

describe("quick-win boards in React", () => {
  const at = serverFor("quick");

  test("useBoard shows the board and what others write; components showing it share one follow", async () => {
    const writer = client(at);
    const board = await writer.createBoard({ name: "React" });
    await writer.createTask(board.id, { title: "first" });
    const sb = client(at);
    const view = await render(
      <StreamboardProvider client={sb}>
        <BoardView boardId={board.id} />
        <Connection boardId={board.id} />
      </StreamboardProvider>,
    );
    await eventually(() => stateOf(view) === "live" && columns(view).todo?.length === 1, "the board, live");
    assert.equal(view.root.findByType("span").props.children, "live");

    await writer.createTask(board.id, { title: "second", status: "in_progress" });
    await eventually(() => columns(view).in_progress?.[0] === "second", "the other client's card");
    assert.deepEqual(columns(view), { todo: ["first"], in_progress: ["second"], finished: [] });
    assert.equal(sb.counter.sockets, 1, "one follow for both components");
  });

  test("useAnalytics reads the metrics again as the board moves on; useBoardAt shows a past version", async () => {
    const writer = client(at);
    const board = await writer.createBoard({ name: "Past" });
    const task = await writer.createTask(board.id, { title: "first" });
    await writer.moveTask(board.id, task.id, { status: "in_progress" });
    const sb = client(at);
    function Metrics() {
      const { report } = useAnalytics(board.id);
      return <dl data-version={report?.version ?? 0}>{report ? report.columns.map((c) => `${c}:${report.wip.columns[c]}`).join(" ") : ""}</dl>;
    }
    function Then({ version }: { version: number }) {
      const { board: then, error } = useBoardAt(board.id, version);
      return <ul data-then={then?.version ?? (error ? "error" : "")}>{then?.tasks.map((t) => <li key={t.id}>{`${t.title}@${t.status}`}</li>)}</ul>;
    }
    const view = await render(
      <StreamboardProvider client={sb}>
        <Metrics />
        <Then version={2} />
        <Then version={9} />
      </StreamboardProvider>,
    );
    const metrics = () => view.root.findByType("dl").props;
    const thens = () => view.root.findAllByType("ul").map((ul) => [ul.props["data-then"], ul.findAllByType("li").map((li) => li.props.children)]);
    await eventually(() => metrics()["data-version"] === 3, "the metrics at version 3");
    assert.equal(metrics().children, "todo:0 in_progress:1 finished:0");
    await eventually(() => thens()[0]![0] === 2 && thens()[1]![0] === "error", "the board at version 2, and none at version 9");
    assert.deepEqual(thens()[0]![1], ["first@todo"]);
    assert.deepEqual(thens()[0]![1], (await sb.boardAt(board.id, 2)).tasks.map((t) => `${t.title}@${t.status}`));

    // A new event: the metrics follow it.
    await writer.moveTask(board.id, task.id, { status: "finished" });
    await eventually(() => metrics()["data-version"] === 4, "the metrics at version 4");
    assert.equal(metrics().children, "todo:0 in_progress:0 finished:1");
  });

  test("a board that cannot be opened says so, once", async () => {
    const sb = client(at, { maxBackoffMs: 200 });
    const view = await render(
      <StreamboardProvider client={sb}>
        <BoardView boardId="00000000-0000-7000-8000-000000000000" />
      </StreamboardProvider>,
    );
    await eventually(() => stateOf(view) === "failed", "failed");
    assert.equal(view.root.findByType("p").props.children, "404 not_found");
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(sb.counter.sockets, 0, "no connection attempt for a board that is not there");
  });
});

describe("event-sourced boards in React", () => {
  const at = serverFor("api");

  test("an optimistic move is shown at once and rolled back with the server's reason", async () => {
    const owner = client(at);
    await owner.register("react_owner", "sdk test passphrase");
    const board = await owner.createBoard({ name: "Read only for some", columns: ["todo", "done"] });
    const task = await owner.createTask(board.id, { title: "card" });
    const viewer = client(at);
    await viewer.register("react_viewer", "sdk test passphrase");
    await owner.addMember(board.id, { username: "react_viewer" }, "viewer");

    const log: string[] = [];
    let move: () => Promise<unknown> = async () => {};
    function Mover() {
      const sb = useStreamboard();
      move = () => sb.moveTask(board.id, task.id, { status: "done" });
      return null;
    }
    const view = await render(
      <StreamboardProvider client={viewer}>
        <BoardView boardId={board.id} log={log} />
        <Mover />
      </StreamboardProvider>,
    );
    await eventually(() => stateOf(view) === "live", "live");
    // The move inside act: React renders the optimistic state before the
    // test goes on, so a fast 403 cannot come before that render.
    let pending: Promise<unknown> = Promise.resolve();
    act(() => {
      pending = move();
    });
    await assert.rejects(pending, (error: unknown) => error instanceof StreamboardError && error.status === 403);
    await eventually(() => columns(view).todo?.[0] === "card", "the card back where it was");
    assert.ok(log.includes("card@done"), `shown in done before the answer: ${log.join(", ")}`);
    assert.deepEqual(columns(view), { todo: ["card"], done: [] });
    assert.equal(view.root.findAll((n) => n.props["data-rollback"] !== undefined)[0]?.props["data-rollback"], "403");
  });

  test("useWatchers names who is watching; useBoards lists the caller's boards", async () => {
    const ann = client(at);
    const bob = client(at);
    await ann.register("react_ann", "sdk test passphrase");
    await bob.register("react_bob", "sdk test passphrase");
    const board = await ann.createBoard({ name: "Watched" });
    await ann.createBoard({ name: "Second" });
    await ann.addMember(board.id, { username: "react_bob" }, "editor");

    function Watchers({ boardId }: { boardId: string }) {
      return <ul>{useWatchers(boardId).map((w) => <li key={w.id}>{w.username}</li>)}</ul>;
    }
    function Boards() {
      const { boards, loading } = useBoards();
      return <ol data-loading={String(loading)}>{boards.map((b) => <li key={b.id}>{b.name}</li>)}</ol>;
    }
    const annView = await render(
      <StreamboardProvider client={ann}>
        <Watchers boardId={board.id} />
        <Boards />
      </StreamboardProvider>,
    );
    const bobView = await render(
      <StreamboardProvider client={bob}>
        <Watchers boardId={board.id} />
      </StreamboardProvider>,
    );
    const names = () => annView.root.findByType("ul").findAll((n) => n.type === "li").map((li) => li.props.children);
    await eventually(() => names().length === 2, "both watchers");
    assert.deepEqual(names().sort(), ["react_ann", "react_bob"]);
    assert.deepEqual(annView.root.findByType("ol").findAll((n) => n.type === "li").map((li) => li.props.children), ["Watched", "Second"]);

    bobView.unmount();
    await eventually(() => names().length === 1, "bob gone (his follow closes after the linger)", 5000);
  });
});
