// The Insights history slider: the board at any version from 1 to the
// latest, read through the SDK's `boardAt` (the server folds it from the
// history), shown read-only with the board's own hooks (`data-column`,
// `data-task-id`). The slider's maximum follows the live board; left at the
// maximum, it shows each new version as it comes.
import type { Board } from "@streamboard/client";

import { describe, el, label, when } from "./dom.js";
import { sb } from "./session.js";

/** How long the slider rests before the board at its version is asked for. */
const SETTLE_MS = 120;

export class HistorySlider {
  readonly element: HTMLElement;
  private readonly input = el("input", { type: "range", id: "history-version", min: "1", max: "1", value: "1", step: "1", "aria-describedby": "history-at" });
  private readonly at = el("output", { id: "history-at", for: "history-version" });
  private readonly past = el("div", { class: "past-board", "data-past-board": "", "aria-live": "polite" });
  private latest: Board | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The version asked for last: an older answer arriving late is dropped. */
  private asked = 0;

  constructor(private readonly boardId: string) {
    this.input.addEventListener("input", () => this.settle());
    this.element = el("section", { class: "history-slider", "aria-labelledby": "history-heading" },
      el("h2", { id: "history-heading" }, "History"),
      el("div", { class: "slider" },
        el("label", { for: "history-version" }, "Version"),
        this.input,
        el("button", { type: "button", onclick: () => this.toLatest() }, "Now")),
      this.at,
      this.past);
  }

  /** The live board moved on: the slider's range grows; at its end, it follows. */
  update(board: Board): void {
    const following = this.latest === null || Number(this.input.value) >= Number(this.input.max);
    this.latest = board;
    this.input.max = String(board.version);
    this.input.dataset.max = String(board.version);
    if (following) {
      this.input.value = String(board.version);
      this.show(board);
    }
  }

  private toLatest(): void {
    if (!this.latest) return;
    this.input.value = this.input.max;
    this.show(this.latest);
  }

  private settle(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.load(Number(this.input.value)), SETTLE_MS);
  }

  private async load(version: number): Promise<void> {
    this.asked = version;
    if (this.latest && version === this.latest.version) return this.show(this.latest);
    this.past.setAttribute("aria-busy", "true");
    try {
      const board = await sb.boardAt(this.boardId, version);
      if (this.asked === version) this.show(board);
    } catch (error) {
      if (this.asked !== version) return;
      this.past.dataset.version = "";
      this.past.replaceChildren(el("p", { class: "error", role: "alert" }, `Version ${version} cannot be shown: ${describe(error)}`));
    } finally {
      if (this.asked === version) this.past.removeAttribute("aria-busy");
    }
  }

  private show(board: Board): void {
    this.asked = board.version;
    const latest = this.latest?.version ?? board.version;
    const now = board.version === latest;
    this.input.dataset.following = String(now);
    this.input.setAttribute("aria-valuetext", `version ${board.version} of ${latest}`);
    this.at.textContent = `Version ${board.version} of ${latest}${now ? " (now)" : ""} · ${when(board.updated_at)}`;
    this.past.dataset.version = String(board.version);
    this.past.replaceChildren(
      el("div", { class: "columns" }, ...board.columns.map((status) => {
        const tasks = board.tasks.filter((t) => t.status === status);
        return el("section", { class: "column", "data-column": status, "aria-label": `${label(status)} at version ${board.version}: ${tasks.length}` },
          el("h3", {}, el("span", {}, label(status)), el("span", { class: "count" }, String(tasks.length))),
          el("ol", { class: "cards" }, ...tasks.map((t) => el("li", { class: "card", "data-task-id": t.id }, el("span", { class: "title" }, t.title)))));
      })),
    );
  }
}
