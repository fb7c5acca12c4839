// What a person does on a board in the page, each at desktop and at phone
// width, against the real server: a card's panel (fields, assignee, who and
// when, history), moves without dragging (column picker, arrow keys), drags
// that scroll to a column off screen (mouse, touch), sharing and read-only
// boards, boards that cannot be opened, refused writes said in place, a
// one-line header, and axe-core finding nothing serious.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Page, Request } from "playwright-core";

import { axeProblems, card, centre, eventually, mouseDrag, person, sdk, serverFor, touchDrag, useBrowser, widths } from "./browser.js";

useBrowser();

/** Opens a card's panel with a click (a tap at phone width). */
async function openPanel(page: Page, taskId: string): Promise<void> {
  await page.locator(`[data-task-id="${taskId}"]`).click();
  await page.waitForSelector(`#card-panel[open] [data-panel-task="${taskId}"]`);
}

async function assertAccessible(page: Page, where: string): Promise<void> {
  const problems = await axeProblems(page);
  assert.deepEqual(problems, [], `axe-core on ${where}:\n${problems.join("\n")}`);
}

for (const width of widths) {
  describe(`quick-win board at ${width.name} width`, () => {
    const at = serverFor("quick");

    test("a card's panel shows and edits title, description, assignee and custom fields, with who, when and history", async () => {
      const sb = sdk(at);
      const board = await sb.createBoard({ name: "Panel" });
      const task = await sb.createTask(board.id, { title: "Fix the login bug", description: "Safari only\nsince 17.2", fields: { estimate: 3, team: "web" } });
      const { context, page } = await person(at, width);
      try {
        await page.goto(`${at.server.url}/?board=${board.id}`);
        await page.waitForSelector(card("todo", task.id));
        assert.match(await page.locator(`[data-task-id="${task.id}"]`).innerText(), /Safari only[\s\S]*2 fields/);
        await openPanel(page, task.id);
        assert.equal(await page.inputValue("#panel-title-input"), "Fix the login bug");
        assert.equal(await page.inputValue("#panel-description"), "Safari only\nsince 17.2");
        assert.equal(await page.inputValue('[name="field:estimate"]'), "3");
        await assertAccessible(page, "the card panel");

        await page.fill("#panel-title-input", "Fix the login bug on Safari");
        await page.fill("#panel-assignee", "dana");
        await page.fill('[name="field:estimate"]', "5");
        await page.click('[data-field="team"] button:has-text("Remove")');
        await page.fill("#field-new-key", "priority");
        await page.fill("#field-new-value", "high");
        await page.click('#card-panel button:has-text("Save")');
        await page.waitForSelector("#card-panel[open]", { state: "detached" });
        await eventually(async () => (await sb.getBoard(board.id)).tasks[0]?.title === "Fix the login bug on Safari", "the save on the server");
        const saved = (await sb.getBoard(board.id)).tasks[0]!;
        assert.equal(saved.assigned_to, "dana");
        assert.deepEqual(saved.fields, { estimate: 5, priority: "high" });
        await page.waitForSelector(`[data-task-id="${task.id}"]:has-text("assigned to dana")`);

        await openPanel(page, task.id);
        await page.waitForSelector('.history li:has-text("changed")');
        const history = (await page.locator(".history").innerText()).split("\n");
        assert.equal(history.length, 2, history.join("\n"));
        assert.match(history[0]!, /^Created in todo · /);
        assert.match(history[1]!, /^Changed (?=.*\btitle\b)(?=.*the assignee)(?=.*\bfields\b)/);
        assert.match(await page.locator("#card-panel .meta").innerText(), /^Created .+; last changed .+\.$/);
      } finally {
        await context.close();
      }
    });

    test("cards move without dragging: the panel's column picker and the arrow keys", async () => {
      const sb = sdk(at);
      const board = await sb.createBoard({ name: "Keys" });
      const a = await sb.createTask(board.id, { title: "A" });
      const b = await sb.createTask(board.id, { title: "B" });
      const { context, page } = await person(at, width);
      const statusOf = async (id: string) => (await sb.getBoard(board.id)).tasks.find((t) => t.id === id)?.status;
      try {
        await page.goto(`${at.server.url}/?board=${board.id}`);
        await page.waitForSelector('#connection[data-state="live"]');

        await openPanel(page, a.id);
        await page.selectOption("#panel-status", "finished");
        await page.waitForSelector(card("finished", a.id));
        await eventually(async () => (await statusOf(a.id)) === "finished", "the picked column on the server");
        await page.keyboard.press("Escape");

        await page.locator(`[data-task-id="${b.id}"]`).focus();
        await page.keyboard.press("ArrowRight");
        await page.waitForSelector(card("in_progress", b.id));
        await eventually(async () => (await statusOf(b.id)) === "in_progress", "the key move on the server");
        assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("data-task-id")), b.id, "the moved card keeps the focus");
        await page.keyboard.press("ArrowRight");
        await page.waitForSelector(card("finished", b.id));
        await page.keyboard.press("ArrowUp");
        await eventually(async () => (await sb.getBoard(board.id)).tasks.filter((t) => t.status === "finished").map((t) => t.title).join() === "B,A", "B above A");
        await page.waitForSelector('#announce:has-text("Moved B to finished, 1 of 2")', { state: "attached" });
      } finally {
        await context.close();
      }
    });

    test(`a ${width.touch ? "touch" : "mouse"} drag scrolls to a column off screen`, async () => {
      const sb = sdk(at);
      // At desktop width the columns run off the right edge; on a phone they
      // stack, and the last one is below the fold.
      const columns = width.touch ? ["todo", "doing", "done"] : ["a", "b", "c", "d", "e", "f", "g", "last"];
      const board = await sb.createBoard({ name: "Far", columns });
      const moving = await sb.createTask(board.id, { title: "Take me to the last column", status: columns[0] });
      for (let i = 0; i < (width.touch ? 20 : 2); i++) await sb.createTask(board.id, { title: `Filler ${i}`, status: columns[i % 2] });
      const last = columns.at(-1)!;
      const { context, page } = await person(at, width);
      try {
        await page.goto(`${at.server.url}/?board=${board.id}`);
        await page.waitForSelector('#connection[data-state="live"]');
        const onScreen = async () => {
          const box = await page.locator(`[data-column="${last}"]`).boundingBox();
          return !!box && box.x + 40 < width.viewport.width && box.y + 40 < width.viewport.height;
        };
        assert.equal(await onScreen(), false, "the last column starts off screen");
        const from = await centre(page, `[data-task-id="${moving.id}"]`);
        const dropPoint = async () => {
          const box = (await page.locator(`[data-column="${last}"]`).boundingBox())!;
          return { x: Math.min(box.x + box.width / 2, width.viewport.width - 80), y: Math.min(box.y + 40, width.viewport.height - 80) };
        };
        if (width.touch) await touchDrag(page, from, { x: from.x, y: width.viewport.height - 8 }, onScreen, dropPoint);
        else await mouseDrag(page, from, { x: width.viewport.width - 8, y: from.y }, onScreen, dropPoint);
        await page.waitForSelector(card(last, moving.id));
        await eventually(async () => (await sb.getBoard(board.id)).tasks.find((t) => t.id === moving.id)?.status === last, "the drop on the server");
      } finally {
        await context.close();
      }
    });

    test("an unknown board says so once, with a way back, and is not asked for again", async () => {
      const { context, page } = await person(at, width);
      const missing = "00000000-0000-7000-8000-00000000beef";
      const asked: Request[] = [];
      let sockets = 0;
      page.on("request", (request) => request.url().includes(`/boards/${missing}`) && asked.push(request));
      page.on("websocket", () => sockets++);
      try {
        await page.goto(`${at.server.url}/?board=${missing}`);
        await page.waitForSelector('[data-board-state="unavailable"]:has-text("does not exist")');
        assert.equal(await page.textContent("#connection"), "unavailable");
        assert.equal(await page.getAttribute('[data-board-state="unavailable"] a', "href"), "/");
        await page.waitForTimeout(2500);
        assert.equal(asked.length, 1, "one read, no retries");
        assert.equal(sockets, 0);
        assert.equal(await page.locator('[data-board-state="unavailable"]').count(), 1, "said once");
        await assertAccessible(page, "an unknown board");
      } finally {
        await context.close();
      }
    });

    test("the board and the board list have no serious accessibility problem; cards and columns are named", async () => {
      const sb = sdk(at);
      const board = await sb.createBoard({ name: "Readable" });
      const task = await sb.createTask(board.id, { title: "Write alt texts", description: "All images", fields: { size: "S" } });
      await sb.createTask(board.id, { title: "Check contrast", status: "in_progress" });
      const { context, page } = await person(at, width);
      try {
        await page.goto(`${at.server.url}/?board=${board.id}`);
        await page.waitForSelector('#connection[data-state="live"]');
        await assertAccessible(page, "a board");
        assert.equal(await page.getByRole("listitem", { name: "Write alt texts, 1 of 1 in todo" }).count(), 1);
        assert.equal(await page.getByRole("region", { name: "in progress" }).count(), 1);
        assert.equal(await page.getByRole("list", { name: "todo: 1 card" }).count(), 1);
        await openPanel(page, task.id);
        await assertAccessible(page, "the card panel");
        await page.goto(`${at.server.url}/`);
        await page.waitForSelector(".boards a");
        await assertAccessible(page, "the board list");
      } finally {
        await context.close();
      }
    });
  });

  describe(`event-sourced board at ${width.name} width`, () => {
    const at = serverFor("api");
    const user = async (name: string) => {
      const client = sdk(at);
      const session = await client.register(`${name}_${width.name}`, "sdk test passphrase");
      return { client, session, name: session.user.username };
    };

    test("the owner shares the board by username and role, changes and removes; a viewer's board is read only", async () => {
      const alice = await user("alice");
      const bob = await user("bob");
      const board = await alice.client.createBoard({ name: "Shared" });
      const task = await alice.client.createTask(board.id, { title: "Plan" });
      const owner = await person(at, width, alice.session.token);
      const guest = await person(at, width, bob.session.token);
      try {
        await owner.page.goto(`${at.server.url}/?board=${board.id}&mode=api`);
        await owner.page.click('button:has-text("Share")');
        await owner.page.waitForSelector("#share[open]");
        await owner.page.fill("#share-username", bob.name);
        await owner.page.selectOption("#share-role", "viewer");
        await owner.page.click('#share button:has-text("Add")');
        await owner.page.waitForSelector(`#share [data-member="${bob.name}"]`);
        assert.equal(await owner.page.inputValue(`#share [data-member="${bob.name}"] select`), "viewer");
        await assertAccessible(owner.page, "the share dialog");

        await guest.page.goto(`${at.server.url}/?board=${board.id}&mode=api`);
        await guest.page.waitForSelector("[data-read-only]");
        assert.equal(await guest.page.locator("form.add").count(), 0, "no way to add cards");
        assert.equal(await guest.page.locator('button:has-text("Share"), [aria-label="Delete board"]').count(), 0);
        await guest.page.locator(`[data-task-id="${task.id}"]`).focus();
        await guest.page.keyboard.press("ArrowRight");
        await guest.page.waitForTimeout(300);
        assert.equal(await guest.page.locator(card("todo", task.id)).count(), 1, "arrow keys do not move a viewer's card");
        await openPanel(guest.page, task.id);
        assert.equal(await guest.page.isDisabled("#panel-title-input"), true);
        assert.equal(await guest.page.locator('#card-panel button:has-text("Save")').count(), 0);
        await guest.page.keyboard.press("Escape");

        await owner.page.selectOption(`#share [data-member="${bob.name}"] select`, "editor");
        await guest.page.waitForSelector("form.add", { timeout: 5000 });
        assert.equal((await alice.client.members(board.id)).find((m) => m.username === bob.name)?.role, "editor");

        await owner.page.click(`#share [aria-label="Remove ${bob.name}"]`);
        await owner.page.waitForSelector(`#share [data-member="${bob.name}"]`, { state: "detached" });
        await guest.page.waitForSelector('[data-board-state="unavailable"]:has-text("not one of its members")', { timeout: 5000 });
      } finally {
        await owner.context.close();
        await guest.context.close();
      }
    });

    test("a move refused by the server is undone with the reason on the card; a refused save names its field", async () => {
      const alice = await user("owner");
      const bob = await user("editor");
      const board = await alice.client.createBoard({ name: "Refusals" });
      const task = await alice.client.createTask(board.id, { title: "Contested" });
      await alice.client.addMember(board.id, { username: bob.name }, "editor");
      const { context, page } = await person(at, width, bob.session.token);
      try {
        await page.goto(`${at.server.url}/?board=${board.id}&mode=api`);
        await page.waitForSelector('#connection[data-state="live"]');

        await openPanel(page, task.id);
        await page.fill("#panel-title-input", "x".repeat(201));
        await page.click('#card-panel button:has-text("Save")');
        await page.waitForSelector('#panel-error:has-text("Not saved")');
        assert.match((await page.textContent("#panel-error")) ?? "", /title.*\(422\)/);
        assert.equal(await page.getAttribute("#panel-title-input", "aria-invalid"), "true");
        await page.keyboard.press("Escape");

        // Offline, bob moves the card; meanwhile alice makes him a viewer.
        await context.setOffline(true);
        await page.waitForSelector('#connection[data-state="offline"]');
        await page.locator(`[data-task-id="${task.id}"]`).focus();
        await page.keyboard.press("ArrowRight");
        await page.waitForSelector(card("in_progress", task.id));
        await alice.client.addMember(board.id, { username: bob.name }, "viewer");
        await context.setOffline(false);
        await page.waitForSelector(`${card("todo", task.id)} .error:has-text("Not moved: you may only read this board (403)")`, { timeout: 10_000 });
        await page.waitForSelector("[data-read-only]");
        assert.equal((await alice.client.getBoard(board.id)).tasks[0]?.status, "todo");
      } finally {
        await context.close();
      }
    });

    test("the panel's assignee is one of the members; it says who created and changed the card", async () => {
      const alice = await user("lead");
      const bob = await user("dev");
      const board = await alice.client.createBoard({ name: "Assign" });
      const task = await alice.client.createTask(board.id, { title: "Ship" });
      await alice.client.addMember(board.id, { username: bob.name }, "editor");
      const { context, page } = await person(at, width, alice.session.token);
      // The panel's member list is held back until a member is picked from
      // the board's own list: the list arriving then keeps the choice.
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      await page.route("**/members", async (route) => {
        await held;
        await route.continue();
      });
      try {
        await page.goto(`${at.server.url}/?board=${board.id}&mode=api`);
        await openPanel(page, task.id);
        await page.waitForSelector(`#panel-assignee option:has-text("${bob.name}")`, { state: "attached" });
        await page.selectOption("#panel-assignee", { label: bob.name });
        const members = page.waitForResponse((response) => response.url().endsWith("/members"));
        release();
        await members;
        await page.waitForTimeout(200); // the panel fills its list again
        await page.click('#card-panel button:has-text("Save")');
        await page.waitForSelector(`[data-task-id="${task.id}"]:has-text("assigned to ${bob.name}")`);
        assert.equal((await alice.client.getBoard(board.id)).tasks[0]?.assigned_to, bob.session.user.id);
        await openPanel(page, task.id);
        assert.match(await page.locator("#card-panel .meta").innerText(), new RegExp(`^Created by ${alice.name} .+; last changed by ${alice.name} `));
        await page.waitForSelector(`.history li:has-text("${alice.name}: created in todo")`);
        await page.waitForSelector(`.history li:has-text("${alice.name}: changed the assignee")`);
      } finally {
        await context.close();
      }
    });

    test("the header is one line, names the user once, and its logo leads to this mode's boards", async () => {
      const alice = await user("a_rather_long_name");
      const bob = await user("watcher");
      const board = await alice.client.createBoard({ name: "Header" });
      await alice.client.addMember(board.id, { username: bob.name }, "viewer");
      const watching = bob.client.follow(board.id, () => {});
      const { context, page } = await person(at, width, alice.session.token);
      try {
        await page.goto(`${at.server.url}/?board=${board.id}&mode=api`);
        await page.waitForSelector(`[data-watcher]:has-text("${bob.name.slice(0, 4)}")`);
        const header = (await page.locator("header").boundingBox())!;
        assert.ok(header.height < 60, `one line: the header is ${header.height}px high`);
        for (const part of ["#brand", "#connection", "[data-user]", 'button[aria-label="Log out"]', "[data-watcher]"]) {
          const box = (await page.locator(part).first().boundingBox())!;
          assert.ok(box.y >= header.y && box.y + box.height <= header.y + header.height, `${part} inside the header's line`);
          assert.ok(box.x + box.width <= width.viewport.width, `${part} on screen`);
        }
        // The board's own controls do not wrap either.
        const controls = await page.locator(".board-head > *").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().top));
        assert.ok(controls.every((top) => Math.abs(top - controls[0]!) < 12), `the board's name and buttons on one line: ${controls}`);
        const text = await page.locator("header").innerText();
        assert.equal(text.split(alice.name).length - 1, 1, `the user once in: ${text}`);
        assert.equal(await page.getAttribute("#brand", "href"), "/?mode=api");
        await assertAccessible(page, "a shared board with a watcher");
        await page.click("#brand");
        await page.waitForSelector(`.boards a:has-text("Header")`);
      } finally {
        watching.close();
        await context.close();
      }
    });

    test("a board of someone else's says so once; the login form and the board list are accessible", async () => {
      const alice = await user("private");
      const board = await alice.client.createBoard({ name: "Private" });
      const { context, page } = await person(at, width);
      try {
        await page.goto(`${at.server.url}/?mode=api`);
        await page.waitForSelector('button[name="login"]');
        await assertAccessible(page, "the login form");
        await page.fill("#login-username", `stranger_${width.name}`);
        await page.fill("#login-password", "sdk test passphrase");
        await page.click('button[name="register"]');
        await page.waitForSelector(".boards");
        await assertAccessible(page, "the board list");
        await page.goto(`${at.server.url}/?board=${board.id}&mode=api`);
        await page.waitForSelector('[data-board-state="unavailable"]:has-text("not one of its members")');
        assert.equal(await page.getAttribute('[data-board-state="unavailable"] a', "href"), "/?mode=api");
      } finally {
        await context.close();
      }
    });
  });
}
