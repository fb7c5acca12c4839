// A board's Insights in Chromium, at desktop and phone width, on four weeks
// of history written with the server's test clock (story.ts): every chart's
// marks hold the numbers the analytics route answers for the same range,
// the history slider shows the board as `?at=` answers it and follows new
// events, the page fits a phone's width, and axe-core finds nothing serious.
// With SB_SCREENSHOTS=<dir>, the Insights view is saved there
// (insights-desktop.png, insights-phone.png: the docs' pictures, made with
// SB_SCREENSHOTS=../../docs from clients/web).
import assert from "node:assert/strict";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import type { Board, FlowReport, Streamboard } from "@streamboard/client";
import type { Page } from "playwright-core";

import { TestClock } from "../../testing/clock.js";
import { axeProblems, person, sdk, serverFor, useBrowser, widths } from "./browser.js";
import { NOW, writeStory } from "./story.js";

useBrowser();
const clock = TestClock.forTests();

const byFirst = <T extends unknown[]>(rows: T[]) => rows.sort((a, b) => String(a[0]).localeCompare(String(b[0])) || String(a[1]).localeCompare(String(b[1])));
const later = (minutes: number) => new Date(Date.parse(NOW) + minutes * 60_000);

/** The data attributes of every mark matching `selector`, by name
 * (`data-cycle-seconds` as `cycle-seconds`). */
function marks(page: Page, selector: string): Promise<Record<string, string>[]> {
  return page.locator(selector).evaluateAll((els) =>
    els.map((e) => Object.fromEntries(Array.from(e.attributes).filter((a) => a.name.startsWith("data-")).map((a) => [a.name.slice(5), a.value]))));
}

/** The Insights view's report range, and the route's answer for it. */
async function shownReport(page: Page, sb: Streamboard, boardId: string): Promise<FlowReport> {
  const root = page.locator("[data-insights]");
  const [from, to, version] = await Promise.all(["data-from", "data-to", "data-report-version"].map((a) => root.getAttribute(a)));
  const report = await sb.analytics(boardId, { from: from!, to: to! });
  assert.equal(String(report.version), version);
  return report;
}

/** Each chart's marks against the report, number for number. */
async function assertChartsShow(page: Page, report: FlowReport): Promise<void> {
  const flow = await marks(page, '[data-chart="cumulative-flow"] rect[data-day]');
  assert.deepEqual(
    byFirst(flow.map((m) => [m.day, m.column, Number(m.count)])),
    byFirst(report.cumulative_flow.days.flatMap((d) => report.cumulative_flow.columns.map((c) => [d.date, c, d.tasks[c] ?? 0]))),
    "cumulative flow: tasks per column at the end of each day",
  );
  const legend = await marks(page, ".legend [data-column]");
  assert.deepEqual(Object.fromEntries(legend.map((m) => [m.column, Number(m.count)])), report.wip.columns, "work in progress now");
  assert.equal(await page.locator('[data-stat="in-progress"]').innerText(), String(report.aging.count));
  assert.equal(await page.locator('[data-stat="finished"]').innerText(), String(report.throughput.total));

  const dots = await marks(page, '[data-chart="cycle-time"] circle[data-task-id]');
  assert.deepEqual(
    byFirst(dots.map((m) => [m["task-id"], Number(m["cycle-seconds"]), m["finished-at"]])),
    byFirst(report.finished.tasks.map((t) => [t.task_id, t.cycle_time_seconds, t.finished_at])),
    "one dot per finished task, at its cycle time",
  );
  assert.ok(dots.every((m) => Number(m["cycle-days"]) === Number(m["cycle-seconds"]) / 86_400));
  const lines = await marks(page, '[data-chart="cycle-time"] [data-percentile]');
  assert.deepEqual(lines.map((m) => [m.percentile, Number(m.seconds)]), [["50", report.cycle_time.p50_seconds], ["85", report.cycle_time.p85_seconds]]);

  const bars = await marks(page, '[data-chart="throughput"] rect[data-week]');
  assert.deepEqual(
    bars.map((m) => [m.week, Number(m.count), Number(m["days-in-range"])]),
    report.throughput.weeks.map((w) => [w.week, w.finished, w.days_in_range]),
    "one bar per ISO week",
  );

  const aging = await marks(page, '[data-chart="aging"] circle[data-task-id]');
  assert.deepEqual(
    aging.map((m) => [m["task-id"], m.column, Number(m["age-seconds"]), m["over-p85"] === "true"]),
    report.aging.tasks.map((t) => [t.task_id, t.column, t.age_seconds, t.over_p85]),
    "one dot per task in progress, oldest first",
  );
  assert.deepEqual((await marks(page, '[data-chart="aging"] [data-percentile]')).map((m) => Number(m.seconds)), [report.aging.p85_cycle_time_seconds]);

  const horizons = await marks(page, "[data-horizon]");
  assert.deepEqual(
    horizons.map((m) => [Number(m.horizon), Number(m["at-least-50"]), Number(m["at-least-85"])]),
    report.forecast.finished_within.map((h) => [h.days, h.at_least_50, h.at_least_85]),
  );
  const [remaining] = await marks(page, "[data-remaining]");
  assert.deepEqual([Number(remaining!.remaining), remaining!["date-50"], remaining!["date-85"]], [report.forecast.remaining.tasks, report.forecast.remaining.date_50 ?? "", report.forecast.remaining.date_85 ?? ""]);
}

/** The cards of a shown board, per column, in order. */
function cardsOf(page: Page, root: string): Promise<Record<string, string[]>> {
  return page.locator(`${root} [data-column]`).evaluateAll((columns) =>
    Object.fromEntries(columns.map((c) => [(c as HTMLElement).dataset.column!, Array.from(c.querySelectorAll<HTMLElement>("[data-task-id]")).map((t) => t.dataset.taskId!)])));
}

function columnsOf(board: Board): Record<string, string[]> {
  return Object.fromEntries(board.columns.map((c) => [c, board.tasks.filter((t) => t.status === c).map((t) => t.id)]));
}

/** The board as `GET ...?at=<version>` answers it, by a plain request. */
async function boardAt(at: { server: { url: string } }, mode: string, boardId: string, version: number, token?: string): Promise<Board> {
  const response = await fetch(`${at.server.url}/${mode}/boards/${boardId}?at=${version}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  assert.equal(response.status, 200);
  return (await response.json()) as Board;
}

async function moveSlider(page: Page, version: number): Promise<void> {
  await page.locator("#history-version").fill(String(version));
  await page.waitForSelector(`[data-past-board][data-version="${version}"]`);
}

for (const width of widths) {
  describe(`Insights at ${width.name} width`, () => {
    const at = serverFor("quick", clock.settings);
    let sb: Streamboard;
    let story: Awaited<ReturnType<typeof writeStory>>;
    before(async () => {
      sb = sdk(at);
      story = await writeStory(sb, clock);
    });

    test("opened from the board, each chart shows the route's numbers; it fits the width; axe finds nothing serious", async () => {
      const { board } = story;
      const { context, page } = await person(at, width);
      try {
        await page.goto(`${at.server.url}/?board=${board.id}`);
        await page.click("[data-insights-link]");
        await page.waitForSelector(`[data-insights][data-report-version="${board.version}"]`);
        assert.match(page.url(), /view=insights/);
        const report = await shownReport(page, sb, board.id);
        // The story gives every chart something to show.
        assert.ok(report.finished.count >= 10 && report.aging.count >= 4 && report.wip.columns.backlog! >= 2 && report.throughput.weeks.length >= 4, JSON.stringify(report.wip));
        assert.ok(report.aging.tasks.some((t) => t.over_p85) && report.aging.tasks.some((t) => !t.over_p85), `aging work on both sides of the p85: ${JSON.stringify(report.aging)}`);
        await assertChartsShow(page, report);

        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
        assert.ok(overflow <= 0, `no horizontal overflow (${overflow}px)`);
        for (const box of await page.locator("svg.chart").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().right))) {
          assert.ok(box <= width.viewport.width, `a chart ends at ${box}px`);
        }
        const problems = await axeProblems(page);
        assert.deepEqual(problems, [], `axe-core on Insights:\n${problems.join("\n")}`);
        // The docs' pictures: the whole view on a desktop, the first screen on a phone.
        if (process.env.SB_SCREENSHOTS) await page.screenshot({ path: join(process.env.SB_SCREENSHOTS, `insights-${width.name}.png`), fullPage: !width.touch });

        // A shorter range: the route's answer for it.
        await page.selectOption("#insights-range", "7");
        await page.waitForSelector(`[data-insights][data-from="${new Date(Date.parse(NOW) - 7 * 86_400_000).toISOString().replace(".000Z", "Z")}"]`);
        await assertChartsShow(page, await shownReport(page, sb, board.id));

        await page.click("[data-back]");
        await page.waitForSelector(`[data-column="doing"] [data-task-id]`);
        assert.doesNotMatch(page.url(), /view=insights/);
      } finally {
        await context.close();
      }
    });

    test("the history slider shows the board as `?at=` answers it, and follows new events", async () => {
      const { board, ids } = story;
      const { context, page } = await person(at, width);
      try {
        await page.goto(`${at.server.url}/?board=${board.id}&view=insights`);
        await page.waitForSelector(`#history-version[data-max="${board.version}"][data-following="true"]`);
        assert.deepEqual(await cardsOf(page, "[data-past-board]"), columnsOf(board), "at its end, the board now");
        for (const version of [1, 2, Math.floor(board.version / 3), Math.floor(board.version / 2), board.version - 1]) {
          await moveSlider(page, version);
          assert.deepEqual(await cardsOf(page, "[data-past-board]"), columnsOf(await boardAt(at, "quick", board.id, version)), `version ${version}`);
        }
        assert.match(await page.locator("#history-at").innerText(), new RegExp(`^Version ${board.version - 1} of ${board.version} · `));

        // A new event while an old version is shown: the range grows, the shown board stays.
        clock.set(later(1));
        const added = await sb.createTask(board.id, { title: "Came in late", status: "doing" });
        await page.waitForSelector(`#history-version[data-max="${board.version + 1}"][data-following="false"]`);
        assert.equal(await page.getAttribute("[data-past-board]", "data-version"), String(board.version - 1));
        await page.click('.history-slider button:has-text("Now")');
        await page.waitForSelector(`[data-past-board][data-version="${board.version + 1}"] [data-column="doing"] [data-task-id="${added.id}"]`);

        // At its end the slider follows, and the metrics follow too.
        clock.set(later(2));
        await sb.moveTask(board.id, ids[0]!, { status: "doing" });
        clock.set(later(3));
        await page.waitForSelector(`#history-version[data-max="${board.version + 2}"][data-following="true"]`);
        await page.waitForSelector(`[data-past-board][data-version="${board.version + 2}"] [data-column="doing"] [data-task-id="${ids[0]}"]`);
        await page.waitForSelector(`[data-insights][data-report-version="${board.version + 2}"]`);
        const report = await shownReport(page, sb, board.id);
        assert.equal(report.wip.columns.doing, (await sb.getBoard(board.id)).tasks.filter((t) => t.status === "doing").length);
        await assertChartsShow(page, report);
      } finally {
        await context.close();
      }
    });
  });
}

describe("Insights of an event-sourced board", () => {
  const at = serverFor("api", clock.settings);
  const [desktop] = widths;

  test("a member's Insights: the route's numbers, and the board at past versions", async () => {
    const sb = sdk(at);
    const owner = await sb.register("insights_owner", "sdk test passphrase");
    const { board } = await writeStory(sb, clock, "Event-sourced team");
    const viewer = sdk(at);
    const session = await viewer.register("insights_viewer", "sdk test passphrase");
    clock.set(later(1));
    await sb.addMember(board.id, { username: "insights_viewer" }, "viewer");
    clock.set(later(2));
    const version = board.version + 1;
    const { context, page } = await person(at, desktop, session.token);
    try {
      await page.goto(`${at.server.url}/?board=${board.id}&mode=api&view=insights`);
      await page.waitForSelector(`[data-insights][data-report-version="${version}"]`);
      await assertChartsShow(page, await shownReport(page, viewer, board.id));
      for (const past of [3, Math.floor(version / 2)]) {
        await moveSlider(page, past);
        assert.deepEqual(await cardsOf(page, "[data-past-board]"), columnsOf(await boardAt(at, "api", board.id, past, owner.token)), `version ${past}`);
      }
      const problems = await axeProblems(page);
      assert.deepEqual(problems, [], `axe-core on Insights:\n${problems.join("\n")}`);
    } finally {
      await context.close();
    }
  });
});
