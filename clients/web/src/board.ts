// A board: its columns and cards, live through the SDK's `follow`; cards
// move by drag (drag.ts), by the arrow keys, or from the card's panel; a
// refused move comes back with the reason on the card itself. What the user
// may do follows their role (viewers read only).
import { type Board, type BoardEvent, type LiveBoard, type Member, type Task, type Watcher } from "@streamboard/client";

import { announce, byId, describe, el, label, toast } from "./dom.js";
import { startDrag, type DropTarget } from "./drag.js";
import { openCard } from "./panel.js";
import type { Access, BoardScreen } from "./screen.js";
import { insightsUrl, listUrl, me, mode, sb } from "./session.js";
import { openShare } from "./share.js";
import { showConnection, showUnavailable } from "./status.js";

const app = byId("app");

/** How long a refused write's reason stays on its card. */
const CARD_ERROR_MS = 8000;

export function showBoard(boardId: string): void {
  new BoardView(boardId).start();
}

class BoardView implements BoardScreen {
  private live: LiveBoard | null = null;
  private shown: Board | null = null;
  private dragging = false;
  private focusTask: string | null = null;
  private readonly names = new Map<string, string>();
  private readonly cardErrors = new Map<string, string>();
  private readonly listeners = new Set<(event?: BoardEvent) => void>();

  constructor(private readonly boardId: string) {
    if (me) this.names.set(me.id, me.username);
  }

  start(): void {
    this.live = sb.follow(this.boardId, (board, event) => this.changed(board, event), {
      onState: (state) => showConnection(state),
      onWatchers: (watchers) => this.showWatchers(watchers),
      onRollback: (taskId, error) => this.refused(taskId, `Not moved: ${describe(error)}`),
      onError: (error) => showUnavailable(error),
    });
  }

  // --- BoardScreen, for the panel and the share dialog -------------------------

  board(): Board | null {
    return this.shown;
  }

  access(): Access {
    if (mode === "quick") return { role: "anyone", edit: true, manage: true, share: false };
    const role = this.shown?.members?.find((m) => m.user_id === me?.id)?.role ?? "viewer";
    return { role, edit: role !== "viewer", manage: role === "owner", share: role === "owner" };
  }

  name(userId: string | null | undefined): string {
    if (!userId) return "someone";
    return this.names.get(userId) ?? userId.slice(0, 8);
  }

  learn(members: Member[]): void {
    for (const member of members) if (member.username) this.names.set(member.user_id, member.username);
  }

  onChange(listener: (event?: BoardEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // --- Following -----------------------------------------------------------------

  private changed(board: Board | null, event?: BoardEvent): void {
    this.shown = board;
    if (board?.members) this.learn(board.members);
    if (!this.dragging) this.render();
    for (const listener of this.listeners) listener(event);
  }

  /** Others watching (the user is in the header already). */
  private showWatchers(watchers: Watcher[]): void {
    for (const watcher of watchers) this.names.set(watcher.id, watcher.username);
    const others = watchers.filter((w) => w.id !== me?.id);
    byId("watchers").replaceChildren(
      ...(others.length ? [el("span", { class: "wide" }, "Also here:")] : []),
      ...others.map((w) => el("span", { class: "who", "data-watcher": w.id, title: w.username }, w.username)),
    );
    byId("watchers").setAttribute("aria-label", others.length ? `Also here: ${others.map((w) => w.username).join(", ")}` : "Nobody else here");
  }

  /** A refused write, said on its card until the next change or a few seconds. */
  private refused(taskId: string, message: string): void {
    this.cardErrors.set(taskId, message);
    if (!this.dragging) this.render();
    announce(message);
    setTimeout(() => {
      if (this.cardErrors.get(taskId) === message && this.cardErrors.delete(taskId) && !this.dragging) this.render();
    }, CARD_ERROR_MS);
  }

  // --- Rendering -------------------------------------------------------------------

  private render(): void {
    const board = this.shown;
    if (!board) {
      if (this.live?.state?.deleted) app.replaceChildren(el("div", { class: "panel", role: "alert" }, el("p", {}, "This board was deleted."), el("a", { href: listUrl }, "All boards")));
      return;
    }
    document.title = `${board.name} · Streamboard`;
    const access = this.access();
    const heading = el("div", { class: "board-head" },
      el("h1", { "data-board-name": "" }, board.name),
      !access.edit && el("span", { class: "badge", "data-read-only": "" }, "read only"),
      el("a", { class: "button", href: insightsUrl(board.id), "data-insights-link": "" }, "Insights"),
      access.share && el("button", { type: "button", onclick: () => openShare(this, board.id) }, "Share"),
      access.manage && el("button", { type: "button", "aria-label": "Rename board", onclick: () => this.rename(board) }, "Rename"),
      access.manage && el("button", { type: "button", "aria-label": "Delete board", onclick: () => this.remove(board) }, "Delete"),
    );
    const columns = el("div", { class: "columns" }, ...board.columns.map((status) => this.column(board, status, access)));
    const kept = keepFocus(this.focusTask);
    this.focusTask = null;
    const scrolled = app.querySelector(".columns")?.scrollLeft ?? 0;
    app.replaceChildren(el("div", { class: "board" }, heading, columns));
    columns.scrollLeft = scrolled;
    kept();
  }

  private column(board: Board, status: string, access: Access): HTMLElement {
    const tasks = board.tasks.filter((t) => t.status === status);
    const headingId = `column-${status}`;
    const count = `${tasks.length} ${tasks.length === 1 ? "card" : "cards"}`;
    return el("section", { class: "column", "data-column": status, "aria-labelledby": headingId },
      el("h2", { id: headingId }, el("span", {}, label(status)), el("span", { class: "count", "aria-label": count }, String(tasks.length))),
      el("ol", { class: "cards", "aria-label": `${label(status)}: ${count}` }, ...tasks.map((task, index) => this.card(board, task, index, tasks.length, access))),
      access.edit ? this.addForm(board, status) : null,
    );
  }

  private card(board: Board, task: Task, index: number, of: number, access: Access): HTMLElement {
    const replica = this.live?.state?.tasks.get(task.id);
    const pending = replica && (replica.status !== task.status || replica.position !== task.position);
    const fields = Object.keys(task.fields ?? {}).length;
    const error = this.cardErrors.get(task.id);
    const details = [
      task.assigned_to ? `assigned to ${this.name(task.assigned_to)}` : null,
      fields ? `${fields} ${fields === 1 ? "field" : "fields"}` : null,
    ].filter((d): d is string => d !== null);
    const card = el("li", {
      class: "card" + (pending ? " pending" : "") + (error ? " refused" : ""),
      id: `card-${task.id}`,
      "data-task-id": task.id,
      tabindex: "0",
      "aria-label": `${task.title}, ${index + 1} of ${of} in ${label(task.status)}`,
      "aria-describedby": access.edit ? "card-keys" : "card-keys-read",
      onclick: () => openCard(this, task.id),
      onkeydown: (event: KeyboardEvent) => this.key(event, board, task, access),
    },
      el("span", { class: "title" }, task.title),
      task.description ? el("span", { class: "desc" }, task.description.split("\n")[0]!) : null,
      details.length ? el("span", { class: "meta" }, details.join(" · ")) : null,
      error ? el("span", { class: "error", role: "alert" }, error) : null,
    );
    if (access.edit) {
      card.addEventListener("pointerdown", (event) =>
        startDrag(event, card, task.id, {
          lifted: () => (this.dragging = true),
          dropped: (target) => {
            this.dragging = false;
            if (target) void this.move(board, task, target);
            else this.render();
          },
        }),
      );
    }
    return card;
  }

  private addForm(board: Board, status: string): HTMLElement {
    const id = `add-${status}`;
    const input = el("input", { id, name: "title", placeholder: "Add a card", required: true, autocomplete: "off" });
    const error = el("span", { class: "error", role: "alert" });
    return el("form", {
      class: "inline add",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const title = input.value;
        input.value = "";
        error.textContent = "";
        try {
          await sb.createTask(board.id, { title, status });
        } catch (e) {
          input.value = title;
          error.textContent = `Not added: ${describe(e)}`;
        }
      },
    }, el("label", { for: id, class: "sr-only" }, `Add a card to ${label(status)}`), input, el("button", { type: "submit", "aria-label": `Add card to ${label(status)}` }, "+"), error);
  }

  // --- Moves -------------------------------------------------------------------------

  /** Arrow keys move a focused card: left and right between columns, up and
   * down within its column; Enter opens it. */
  private key(event: KeyboardEvent, board: Board, task: Task, access: Access): void {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openCard(this, task.id);
      return;
    }
    const arrows: Record<string, [number, number]> = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const step = arrows[event.key];
    if (!step || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    if (!access.edit) return announce("This board is read only.");
    const target = this.keyTarget(board, task, step);
    if (target) void this.move(board, task, target);
  }

  private keyTarget(board: Board, task: Task, [dx, dy]: [number, number]): DropTarget | null {
    const column = board.columns.indexOf(task.status);
    const inColumn = (status: string) => board.tasks.filter((t) => t.status === status && t.id !== task.id);
    if (dx) {
      const status = board.columns[column + dx];
      if (!status) return null;
      // The same place in the next column, or its end.
      const index = board.tasks.filter((t) => t.status === task.status).findIndex((t) => t.id === task.id);
      const before = inColumn(status)[index];
      return before ? { status, before: before.id } : { status };
    }
    const others = inColumn(task.status);
    const index = board.tasks.filter((t) => t.status === task.status).findIndex((t) => t.id === task.id) + dy;
    if (index < 0 || index > others.length) return null;
    const before = others[index];
    return before ? { status: task.status, before: before.id } : { status: task.status };
  }

  private async move(board: Board, task: Task, target: DropTarget): Promise<void> {
    this.focusTask = task.id;
    this.cardErrors.delete(task.id);
    const drop = target.before ? { status: target.status, before: target.before } : { status: target.status };
    const moving = sb.moveTask(board.id, task.id, drop);
    this.render();
    const column = this.shown?.tasks.filter((t) => t.status === target.status) ?? [];
    announce(`Moved ${task.title} to ${label(target.status)}, ${column.findIndex((t) => t.id === task.id) + 1} of ${column.length}`);
    try {
      await moving;
    } catch {
      // Rolled back; onRollback says why, on the card.
    }
  }

  // --- The board itself ----------------------------------------------------------------

  private async rename(board: Board): Promise<void> {
    const name = prompt("Board name", board.name);
    if (!name || name === board.name) return;
    try {
      await sb.updateBoard(board.id, { name });
    } catch (e) {
      toast(`Not renamed: ${describe(e)}`);
    }
  }

  private async remove(board: Board): Promise<void> {
    if (!confirm(`Delete the board “${board.name}”?`)) return;
    try {
      await sb.deleteBoard(board.id);
      location.href = listUrl;
    } catch (e) {
      toast(`Not deleted: ${describe(e)}`);
    }
  }
}

/** A re-render must not take the focus, or half-typed text, from the user:
 * remembers the focused element of the board (or the card `taskId`) and
 * gives it back to its new self. */
function keepFocus(taskId: string | null): () => void {
  const active = document.activeElement;
  const id = taskId ? `card-${taskId}` : active instanceof HTMLElement && app.contains(active) ? active.id : "";
  if (!id) return () => {};
  const input = active instanceof HTMLInputElement && active.id === id ? { value: active.value, start: active.selectionStart, end: active.selectionEnd } : null;
  return () => {
    const again = document.getElementById(id);
    if (again instanceof HTMLInputElement && input) {
      again.value = input.value;
      again.setSelectionRange(input.start, input.end);
    }
    again?.focus();
  };
}
