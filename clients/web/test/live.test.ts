// The board page with several people on a board: a card dragged in one
// browser moves in the other, the login flow, and a server restart in
// `/api` mode. Needs the page built (`npm run build` in clients/) and
// /usr/bin/chromium (or CHROMIUM=<path>); scripts/test-clients.sh sees to both.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Page } from "playwright-core";

import { card, person, sdk, serverFor, useBrowser, widths } from "./browser.js";

useBrowser();
const [desktop] = widths;

/** Drags a card onto the lower part of a column (its end) with the mouse. */
async function drag(page: Page, taskId: string, status: string): Promise<void> {
  const from = await page.locator(`[data-task-id="${taskId}"]`).boundingBox();
  const to = await page.locator(`[data-column="${status}"]`).boundingBox();
  assert.ok(from && to);
  await page.mouse.move(from.x + from.width / 3, from.y + from.height / 2);
  await page.mouse.down();
  await page.mouse.move(to.x + to.width / 2, to.y + to.height - 50, { steps: 8 });
  await page.mouse.up();
}

describe("quick-win board page", () => {
  const at = serverFor("quick");

  test("a card dragged in one browser moves in the other within a second", async () => {
    const sb = sdk(at);
    const board = await sb.createBoard({ name: "Sprint 12" });
    const task = await sb.createTask(board.id, { title: "Fix the login bug", description: "Safari only" });
    await sb.createTask(board.id, { title: "Write release notes" });
    await sb.createTask(board.id, { title: "Review the design", status: "in_progress" });
    await sb.createTask(board.id, { title: "Set up CI", status: "finished" });
    const [{ context: one, page: a }, { context: two, page: b }] = await Promise.all([person(at, desktop), person(at, desktop)]);
    try {
      await Promise.all([a, b].map((page) => page.goto(`${at.server.url}/?board=${board.id}`)));
      await Promise.all([a, b].map((page) => page.waitForSelector(card("todo", task.id))));
      await Promise.all([a, b].map((page) => page.waitForSelector('#connection[data-state="live"]')));

      await drag(a, task.id, "in_progress");
      await a.waitForSelector(card("in_progress", task.id), { timeout: 1000 });
      await b.waitForSelector(card("in_progress", task.id), { timeout: 1000 });
      assert.equal(await b.locator(card("todo", task.id)).count(), 0);
      assert.equal((await sb.getBoard(board.id)).tasks.find((t) => t.id === task.id)?.status, "in_progress");

      // A card added in one page shows in the other.
      await b.fill('[data-column="finished"] input[name="title"]', "Ship it");
      await b.press('[data-column="finished"] input[name="title"]', "Enter");
      await a.waitForSelector('[data-column="finished"] :text("Ship it")', { timeout: 5000 });
      if (process.env.SB_SCREENSHOT) await a.screenshot({ path: process.env.SB_SCREENSHOT });

      // Phone width: columns stack, the hooks stay.
      await a.setViewportSize({ width: 390, height: 844 });
      const columns = await a.locator("[data-column]").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().left));
      assert.ok(columns.every((left) => left === columns[0]), `stacked columns at phone width: ${columns}`);
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });
});

describe("event-sourced board page", () => {
  const at = serverFor("api");

  test("login flow: register, create a board, add a card, log out", async () => {
    const { context, page } = await person(at, desktop);
    try {
      await page.goto(`${at.server.url}/?mode=api`);
      await page.fill('input[name="username"]', "page_user");
      await page.fill('input[name="password"]', "sdk test passphrase");
      await page.click('button[name="register"]');
      await page.waitForSelector('[data-user="page_user"]');
      assert.ok((await context.cookies()).some((c) => c.name === "token"), "the session cookie is set");

      await page.fill('input[name="name"]', "From the page");
      await page.click('button[type="submit"]');
      await page.waitForSelector('[data-column="todo"]');
      assert.match(page.url(), /board=.*mode=api/);
      await page.fill('[data-column="todo"] input[name="title"]', "First card");
      await page.press('[data-column="todo"] input[name="title"]', "Enter");
      await page.waitForSelector('[data-column="todo"] [data-task-id]:has-text("First card")');
      assert.equal(await page.getAttribute("#brand", "href"), "/?mode=api", "the logo leads to this mode's boards");

      // A wrong password is refused on the form; the right one gets back in.
      await page.click('button:has-text("Log out")');
      await page.waitForSelector('button[name="login"]');
      await page.fill('input[name="username"]', "page_user");
      await page.fill('input[name="password"]', "wrong-password");
      await page.click('button[name="login"]');
      await page.waitForSelector('[role="alert"]:not(:empty)');
      await page.fill('input[name="password"]', "sdk test passphrase");
      await page.click('button[name="login"]');
      await page.waitForSelector('[data-task-id]:has-text("First card")');
    } finally {
      await context.close();
    }
  });

  test("after a server restart the page reconnects and shows what was written meanwhile", async () => {
    const sb = sdk(at);
    const session = await sb.register("restart_page", "sdk test passphrase");
    const board = await sb.createBoard({ name: "Restart" });
    await sb.createTask(board.id, { title: "before the restart" });
    const { context, page } = await person(at, desktop, session.token);
    try {
      await page.goto(`${at.server.url}/?board=${board.id}&mode=api`);
      await page.waitForSelector('[data-task-id]:has-text("before the restart")');
      await page.waitForSelector('#connection[data-state="live"]');

      await at.server.stop();
      await page.waitForSelector('#connection:not([data-state="live"])');
      at.server = await at.env.server(at.server.port);
      const writer = sdk(at);
      writer.token = session.token;
      const task = await writer.createTask(board.id, { title: "written meanwhile", status: "finished" });

      await page.waitForSelector(card("finished", task.id), { timeout: 15_000 });
      await page.waitForSelector('#connection[data-state="live"]');
      assert.equal(await page.locator("[data-task-id]").count(), 2);
    } finally {
      await context.close();
    }
  });
});
