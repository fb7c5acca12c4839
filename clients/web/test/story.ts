// Four weeks of work on a four-column board, written through the SDK at
// known times with the server's test clock, for the Insights tests and
// screenshots: tasks created through February 2026, each moved forward after
// waits drawn from a seeded generator, a few sent back from review, one
// discarded, one stuck in review, the latest still in progress or waiting
// in the backlog at "now" (2 March, 12:00 UTC).
import type { Board, Streamboard } from "@streamboard/client";

import type { TestClock } from "../../testing/clock.js";

export const COLUMNS = ["backlog", "doing", "review", "done"];
export const NOW = "2026-03-02T12:00:00Z";
const START = Date.parse("2026-02-02T09:00:00Z");
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const TITLES = [
  "Sign-up form", "Password reset", "Audit log", "Export to CSV", "Dark mode", "Search by label",
  "Invite by link", "Billing page", "Webhooks retry", "Mobile layout", "Rate limits", "Onboarding tour",
  "Two-factor login", "Board templates", "Due dates", "Slack alerts", "Card covers", "Bulk move",
  "Archive boards", "Keyboard help", "Public boards", "Time tracking", "API tokens", "Print view",
  "Email digest", "Custom fields", "Undo a move", "Board search",
];

interface Step {
  at: number;
  task: number;
  status?: string;
  deleted?: boolean;
}

/** Mulberry32: a small seeded generator, so every run writes the same story. */
function generator(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function plan(): Step[] {
  const random = generator(21);
  const end = Date.parse(NOW) - HOUR;
  const steps: Step[] = [];
  TITLES.forEach((_, task) => {
    let at = START + Math.floor(task * 0.95) * DAY + random() * 6 * HOUR;
    steps.push({ at, task, status: "backlog" });
    const path =
      task === 7 ? ["doing"] // then discarded
      : task === 3 ? ["doing", "review"] // stuck in review
      : task >= TITLES.length - 3 ? [] // not started
      : task % 6 === 2 ? ["doing", "review", "doing", "review", "done"] // sent back once
      : ["doing", "review", "done"];
    // Days before entering each column: some work waits long in the backlog.
    const wait: Record<string, () => number> = {
      doing: () => (task % 4 === 3 ? 4 : 0.5) + random() * 3,
      review: () => 2 + random() * 5,
      done: () => 0.3 + random() * 2,
    };
    for (const status of path) {
      at += wait[status]!() * DAY;
      if (at >= end) return;
      steps.push({ at, task, status });
    }
    if (task === 7) steps.push({ at: at + DAY, task, deleted: true });
  });
  return steps.sort((a, b) => a.at - b.at);
}

/** Writes the story on a new board; the clock is left at `NOW`. */
export async function writeStory(sb: Streamboard, clock: TestClock, name = "Product team"): Promise<{ board: Board; ids: string[] }> {
  clock.set(new Date(START - HOUR));
  const board = await sb.createBoard({ name, columns: COLUMNS });
  const ids: string[] = [];
  for (const step of plan()) {
    clock.set(new Date(step.at));
    const id = ids[step.task];
    if (id === undefined) ids[step.task] = (await sb.createTask(board.id, { title: TITLES[step.task]!, status: step.status! })).id;
    else if (step.deleted) await sb.deleteTask(board.id, id);
    else await sb.moveTask(board.id, id, { status: step.status! });
  }
  clock.set(NOW);
  return { board: await sb.getBoard(board.id), ids };
}
