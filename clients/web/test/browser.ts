// The page's tests in Debian's Chromium (CHROMIUM, default /usr/bin/chromium)
// through Playwright: one browser per test file, pages at desktop and phone
// width, SDK clients for the other people on a board, an axe-core check,
// and drags by mouse and by touch.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before } from "node:test";
import AxeBuilder from "@axe-core/playwright";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import WebSocket from "ws";
import { Streamboard, type StreamboardOptions, type WebSocketConstructor } from "@streamboard/client";

import { repoRoot } from "../../testing/paths.js";
import type { TestEnv, TestServer } from "../../testing/server.js";

export { eventually, serverFor } from "../../testing/server.js";

/** The two widths every ability of the page is tested at. */
export const widths = [
  { name: "desktop", viewport: { width: 1280, height: 800 }, touch: false },
  { name: "phone", viewport: { width: 390, height: 844 }, touch: true },
] as const;
export type Width = (typeof widths)[number];

let browser: Browser;

/** Launches Chromium for the test file (call at its top level). */
export function useBrowser(): void {
  before(async () => {
    assert.ok(existsSync(join(repoRoot, "clients", "web", "dist", "index.html")), "build the page first: npm run build in clients/");
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--disable-dev-shm-usage"] });
  });
  after(() => browser?.close());
}

/** A new browser context (one person) at `width`, signed in with `token` when given. */
export async function person(at: { server: TestServer }, width: Width, token?: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: width.viewport, hasTouch: width.touch, isMobile: width.touch });
  if (token) await context.addCookies([{ name: "token", value: token, url: at.server.url }]);
  return { context, page: await context.newPage() };
}

/** An SDK client (another person, or the test's own hands) against the server. */
export function sdk(at: { env: TestEnv; server: TestServer }, options: Partial<StreamboardOptions> = {}): Streamboard {
  return new Streamboard({ baseUrl: at.server.url, mode: at.env.mode, WebSocket: WebSocket as unknown as WebSocketConstructor, ...options });
}

/** The card of `taskId` inside the column `status`. */
export const card = (status: string, taskId: string) => `[data-column="${status}"] [data-task-id="${taskId}"]`;

/** What axe-core finds serious or critical on the page as it is (WCAG 2.1 A and AA). */
export async function axeProblems(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/** The centre of an element on screen. */
export async function centre(page: Page, selector: string): Promise<{ x: number; y: number }> {
  const box = await page.locator(selector).boundingBox();
  assert.ok(box, `${selector} is on screen`);
  return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
}

/** A mouse drag that holds at `edge` until `scrolled` holds, then drops on `drop()`'s point. */
export async function mouseDrag(page: Page, from: { x: number; y: number }, edge: { x: number; y: number }, scrolled: () => Promise<boolean>, drop: () => Promise<{ x: number; y: number }>): Promise<void> {
  await page.mouse.move(from.x, from.y);
  await page.mouse.down();
  await page.mouse.move(edge.x, edge.y, { steps: 10 });
  await until(scrolled, "the drag to scroll");
  const target = await drop();
  await page.mouse.move(target.x, target.y, { steps: 5 });
  await page.mouse.up();
}

/** The same with a finger: a long press picks the card up (Chromium's touch input, through CDP). */
export async function touchDrag(page: Page, from: { x: number; y: number }, edge: { x: number; y: number }, scrolled: () => Promise<boolean>, drop: () => Promise<{ x: number; y: number }>): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  const touch = (type: string, point?: { x: number; y: number }) => cdp.send("Input.dispatchTouchEvent", { type: type as "touchStart", touchPoints: point ? [{ x: Math.round(point.x), y: Math.round(point.y) }] : [] });
  await touch("touchStart", from);
  await page.waitForTimeout(400); // longer than the page's long press
  for (const step of steps(from, edge, 10)) await touch("touchMove", step);
  await until(scrolled, "the drag to scroll");
  const target = await drop();
  for (const step of steps(edge, target, 5)) await touch("touchMove", step);
  await touch("touchEnd");
  await cdp.detach();
}

function steps(from: { x: number; y: number }, to: { x: number; y: number }, n: number): { x: number; y: number }[] {
  return Array.from({ length: n }, (_, i) => ({ x: from.x + ((to.x - from.x) * (i + 1)) / n, y: from.y + ((to.y - from.y) * (i + 1)) / n }));
}

async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
