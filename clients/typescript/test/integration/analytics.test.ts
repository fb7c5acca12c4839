// The board's past through the SDK, in both modes, against the real server
// driven by a test clock: `analytics` answers the worked example of
// docs/ANALYTICS.md number for number (and what the route answers a plain
// fetch), `boardAt` / `taskAt` answer what `getBoard` answered at each
// version and what folding the history gives, and refusals keep the
// contract's shape.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import { Streamboard, StreamboardError, fold, toBoard, type Board, type FlowReport } from "../../src/index.js";
import { TestClock } from "../../../testing/clock.js";
import { client, serverFor } from "../harness.js";

const DAY = 86_400;
const HOUR = 3_600;

/** The week of docs/ANALYTICS.md's worked example, written at its times;
 * `served[v - 1]` is the board `getBoard` answered right after version v. */
async function writeWeek(sb: Streamboard, clock: TestClock) {
  const served: Board[] = [];
  const at = async (time: string, write: () => Promise<unknown>) => {
    clock.set(time);
    await write();
    served.push(await sb.getBoard(board.id));
  };
  clock.set("2026-03-02T09:00:00Z");
  const board = await sb.createBoard({ name: "Flow", columns: ["todo", "doing", "done"] });
  served.push(await sb.getBoard(board.id));
  const ids: Record<string, string> = {};
  const create = (title: string, status: string) => async () => (ids[title] = (await sb.createTask(board.id, { title, status })).id);
  const move = (title: string, status: string, before?: string) => () =>
    sb.moveTask(board.id, ids[title]!, before ? { status, before: ids[before]! } : { status });
  await at("2026-03-02T09:00:00Z", create("A", "todo"));
  await at("2026-03-02T09:00:00Z", create("B", "todo"));
  await at("2026-03-02T09:00:00Z", create("C", "todo"));
  await at("2026-03-03T09:00:00Z", move("A", "doing"));
  await at("2026-03-04T09:00:00Z", move("B", "doing"));
  await at("2026-03-05T09:00:00Z", move("A", "done"));
  await at("2026-03-05T12:00:00Z", move("B", "done"));
  await at("2026-03-05T15:00:00Z", move("B", "doing"));
  await at("2026-03-06T09:00:00Z", move("C", "doing"));
  await at("2026-03-06T09:00:00Z", create("D", "doing"));
  await at("2026-03-06T10:00:00Z", () => sb.deleteTask(board.id, ids.D!));
  await at("2026-03-07T09:00:00Z", move("B", "done"));
  await at("2026-03-07T10:00:00Z", move("A", "done", "B"));
  clock.set("2026-03-10T12:00:00Z");
  return { board, ids, served };
}

async function refused(promise: Promise<unknown>, status: number): Promise<StreamboardError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof StreamboardError, String(error));
    assert.equal(error.status, status, `${error.code}: ${error.message}`);
    return error;
  }
  assert.fail(`expected ${status}`);
}

for (const mode of ["quick", "api"] as const) {
  describe(`the board's past in ${mode} mode`, () => {
    const clock = TestClock.forTests();
    const at = serverFor(mode, clock.settings);
    let sb: Streamboard;
    let week: Awaited<ReturnType<typeof writeWeek>>;

    before(async () => {
      sb = client(at);
      if (mode === "api") await sb.register(`past_${mode}`, "sdk test passphrase");
      week = await writeWeek(sb, clock);
    });

    test("analytics answers the worked example of docs/ANALYTICS.md, as the route does", async () => {
      const range = { from: "2026-03-02T00:00:00Z", to: "2026-03-09T00:00:00Z" };
      const report = await sb.analytics(week.board.id, range);
      const { ids } = week;
      assert.equal(report.version, 14);
      assert.deepEqual(report.columns, ["todo", "doing", "done"]);
      assert.deepEqual(report.wip, { total: 3, columns: { todo: 0, doing: 1, done: 2 } });
      assert.deepEqual(
        report.cumulative_flow.days.map((d) => [d.date, d.tasks.todo, d.tasks.doing, d.tasks.done]),
        [
          ["2026-03-02", 3, 0, 0],
          ["2026-03-03", 2, 1, 0],
          ["2026-03-04", 1, 2, 0],
          ["2026-03-05", 1, 1, 1],
          ["2026-03-06", 0, 2, 1],
          ["2026-03-07", 0, 1, 2],
          ["2026-03-08", 0, 1, 2],
        ],
      );
      assert.deepEqual(
        report.finished.tasks.map((t) => [t.task_id, t.lead_time_seconds, t.cycle_time_seconds]),
        [
          [ids.B, 5 * DAY, 3 * DAY],
          [ids.A, 3 * DAY, 2 * DAY],
        ],
      );
      assert.deepEqual(report.lead_time, { count: 2, p50_seconds: 3 * DAY, p85_seconds: 5 * DAY, p95_seconds: 5 * DAY });
      assert.deepEqual(report.cycle_time, { count: 2, p50_seconds: 2 * DAY, p85_seconds: 3 * DAY, p95_seconds: 3 * DAY });
      assert.deepEqual(report.throughput.days.map((d) => d.finished), [0, 0, 0, 1, 0, 1, 0]);
      assert.deepEqual(report.throughput.weeks, [{ week: "2026-W10", start: "2026-03-02", days_in_range: 7, finished: 2 }]);
      assert.deepEqual(report.time_in_column, [
        { column: "todo", total_seconds: 3 * DAY, mean_seconds: 1.5 * DAY },
        { column: "doing", total_seconds: 4.875 * DAY, mean_seconds: 4.875 * DAY / 2 },
        { column: "done", total_seconds: 3 * HOUR, mean_seconds: 1.5 * HOUR },
      ]);
      assert.deepEqual(
        report.aging.tasks.map((t) => [t.task_id, t.column, t.age_seconds, t.over_p85]),
        [[ids.C, "doing", 226_800, false]],
      );
      assert.equal(report.aging.p85_cycle_time_seconds, 3 * DAY);
      const { forecast } = report;
      assert.equal(forecast.seed, 24301);
      assert.deepEqual(forecast.finished_within, [
        { days: 7, at_least_50: 2, at_least_85: 1 },
        { days: 14, at_least_50: 4, at_least_85: 2 },
        { days: 30, at_least_50: 9, at_least_85: 6 },
      ]);
      assert.deepEqual(
        [forecast.remaining.tasks, forecast.remaining.days_50, forecast.remaining.days_85, forecast.remaining.date_50, forecast.remaining.date_85],
        [1, 3, 6, "2026-03-12", "2026-03-15"],
      );

      // The same as the route answers a plain request; `Date`s are the same range.
      const headers: Record<string, string> = sb.token ? { authorization: `Bearer ${sb.token}` } : {};
      const query = new URLSearchParams(range).toString();
      const plain = (await (await fetch(`${at.server.url}/${mode}/boards/${week.board.id}/analytics?${query}`, { headers })).json()) as FlowReport;
      assert.deepEqual(report, plain);
      assert.deepEqual(await sb.analytics(week.board.id, { from: new Date(range.from), to: new Date(range.to) }), plain);
      // The seed reaches the forecast; without a range, the 30 days before the clock's now.
      const seeded = await sb.analytics(week.board.id, { ...range, seed: 7 });
      assert.equal(seeded.forecast.seed, 7);
      const recent = await sb.analytics(week.board.id);
      assert.deepEqual([recent.from, recent.to], ["2026-02-08T12:00:00Z", "2026-03-10T12:00:00Z"]);
      assert.equal(recent.throughput.total, 2);
    });

    test("boardAt and taskAt answer what getBoard answered then, and what folding the history gives", async () => {
      const { board, ids, served } = week;
      const { events } = await sb.events(board.id);
      assert.equal(events.length, 14);
      for (const then of served) {
        const past = await sb.boardAt(board.id, then.version);
        assert.deepEqual(past, then, `version ${then.version}`);
        const folded = toBoard(fold(events.slice(0, then.version))!);
        // The fold knows members' ids and roles; their names come from the REST answers.
        const withoutNames = (b: Board) => ({ ...b, members: b.members?.map(({ user_id, role }) => ({ user_id, role })) });
        assert.deepEqual(withoutNames(folded), withoutNames(past), `the fold at version ${then.version}`);
      }
      // Thursday noon: B had just reached `done` (version 8), and left it at 15:00.
      assert.deepEqual(await sb.boardAt(board.id, { asOf: "2026-03-05T12:00:00Z" }), served[7]);
      assert.deepEqual(await sb.boardAt(board.id, { asOf: new Date("2026-03-05T14:59:59Z") }), served[7]);
      assert.equal((await sb.taskAt(board.id, ids.B!, 8)).status, "done");
      assert.equal((await sb.taskAt(board.id, ids.B!, { asOf: "2026-03-05T15:00:00Z" })).status, "doing");
      assert.deepEqual(await sb.taskAt(board.id, ids.D!, 11), served[10]!.tasks.find((t) => t.id === ids.D));
    });

    test("outside the board's life: 404; a range backwards: 422 naming `from`", async () => {
      const { board, ids } = week;
      await refused(sb.boardAt(board.id, 15), 404);
      await refused(sb.boardAt(board.id, { asOf: "2026-03-01T00:00:00Z" }), 404);
      await refused(sb.taskAt(board.id, ids.D!, 12), 404);
      const error = await refused(sb.boardAt(board.id, 0), 422);
      assert.equal(error.code, "validation_failed");
      const backwards = await refused(sb.analytics(board.id, { from: "2026-03-09T00:00:00Z", to: "2026-03-02T00:00:00Z" }), 422);
      assert.equal((backwards.details as { field?: string }).field, "from");
    });
  });
}
