// A card's panel (a modal dialog): title, description, column, assignee
// (one of the board's members in `/api`), custom fields (add, edit,
// remove), who created and last changed it and when, and its own history.
// Saving sends what changed in one write; the column picker moves the card
// at once. A refused write says why in the panel, beside the field named.
import { StreamboardError, type Board, type BoardEvent, type Member, type Task } from "@streamboard/client";

import { byId, describe, el, label, when } from "./dom.js";
import type { BoardScreen } from "./screen.js";
import { mode, sb } from "./session.js";

/** How much of a board's history is read for one card's (oldest first). */
const HISTORY_EVENTS = 5000;

export function openCard(screen: BoardScreen, taskId: string): void {
  const board = screen.board();
  const task = board?.tasks.find((t) => t.id === taskId);
  if (!board || !task) return;
  new CardPanel(screen, board, task).open();
}

class CardPanel {
  private readonly dialog = byId<HTMLDialogElement>("card-panel");
  private readonly error = el("p", { class: "error", role: "alert", id: "panel-error" });
  private readonly meta = el("p", { class: "meta" });
  private readonly history = el("ol", { class: "history", "aria-label": "History" });
  private readonly status: HTMLSelectElement;
  private readonly removed = new Set<string>();
  private readonly fieldRows = el("div", { class: "fields" });
  private members: Member[] = [];
  private stop: () => void = () => {};

  constructor(private readonly screen: BoardScreen, private readonly board: Board, private task: Task) {
    this.status = el("select", { id: "panel-status", name: "status", onchange: () => void this.move() }, ...board.columns.map((c) => el("option", { value: c }, label(c))));
  }

  open(): void {
    const editable = this.screen.access().edit;
    const title = el("input", { id: "panel-title-input", name: "title", value: this.task.title, required: true, disabled: !editable });
    const description = el("textarea", { id: "panel-description", name: "description", rows: "4", disabled: !editable });
    description.value = this.task.description;
    this.status.value = this.task.status;
    this.status.disabled = !editable;
    const assignee = this.assigneeInput(editable);
    this.renderFields(editable);
    const form = el("form", {
      class: "panel-form",
      "data-panel-task": this.task.id,
      onsubmit: (event: Event) => {
        event.preventDefault();
        void this.save(title.value, description.value, assignee.value);
      },
    },
      el("div", { class: "panel-head" },
        el("h2", { id: "panel-heading" }, "Card"),
        el("button", { type: "button", "aria-label": "Close", onclick: () => this.dialog.close() }, "×")),
      el("label", { for: "panel-title-input" }, "Title"), title,
      el("label", { for: "panel-description" }, "Description"), description,
      el("label", { for: "panel-status" }, "Column"), this.status,
      el("label", { for: "panel-assignee" }, "Assignee"), assignee,
      el("fieldset", {}, el("legend", {}, "Custom fields"), this.fieldRows),
      this.error,
      editable && el("div", { class: "buttons" },
        el("button", { class: "primary", type: "submit" }, "Save"),
        el("button", { type: "button", class: "danger", onclick: () => void this.remove() }, "Delete card")),
      this.meta,
      el("h3", {}, "History"), this.history,
    );
    this.dialog.replaceChildren(form);
    this.dialog.setAttribute("aria-labelledby", "panel-heading");
    this.showMeta();
    this.stop = this.screen.onChange((event) => this.changed(event));
    this.dialog.addEventListener("close", () => this.stop(), { once: true });
    this.dialog.showModal();
    title.focus();
    void this.loadHistory();
    if (mode === "api") void this.loadMembers(assignee as HTMLSelectElement);
  }

  // --- Fields --------------------------------------------------------------------

  private assigneeInput(editable: boolean): HTMLInputElement | HTMLSelectElement {
    if (mode === "quick") {
      // Quick-win boards have no members: the assignee is free text.
      return el("input", { id: "panel-assignee", name: "assigned_to", value: this.task.assigned_to ?? "", disabled: !editable, placeholder: "nobody" });
    }
    const select = el("select", { id: "panel-assignee", name: "assigned_to", disabled: !editable });
    this.fillAssignees(select);
    return select;
  }

  private fillAssignees(select: HTMLSelectElement): void {
    const members = this.members.length ? this.members : (this.screen.board()?.members ?? []);
    const options = [el("option", { value: "" }, "nobody"), ...members.map((m) => el("option", { value: m.user_id }, this.screen.name(m.user_id)))];
    const current = this.task.assigned_to;
    if (current && !members.some((m) => m.user_id === current)) options.push(el("option", { value: current }, this.screen.name(current)));
    // Filled again once the member list arrives: a choice made meanwhile stays.
    const chosen = select.options.length ? select.value : (current ?? "");
    select.replaceChildren(...options);
    select.value = options.some((o) => o.value === chosen) ? chosen : (current ?? "");
  }

  private async loadMembers(select: HTMLSelectElement): Promise<void> {
    try {
      this.members = await sb.members(this.board.id);
      this.screen.learn(this.members);
      this.fillAssignees(select);
      this.showMeta();
    } catch {
      // The board's own member list stands (names may be short ids).
    }
  }

  private renderFields(editable: boolean): void {
    const rows = Object.entries(this.task.fields ?? {})
      .filter(([key]) => !this.removed.has(key))
      .map(([key, value], i) =>
        el("div", { class: "field", "data-field": key },
          el("label", { for: `field-${i}` }, key),
          el("input", { id: `field-${i}`, name: `field:${key}`, value: show(value), disabled: !editable }),
          editable && el("button", {
            type: "button",
            "aria-label": `Remove ${key}`,
            onclick: (event: Event) => {
              // Only this row goes: what was typed in the others stays.
              this.removed.add(key);
              (event.currentTarget as HTMLElement).closest(".field")?.remove();
            },
          }, "Remove")),
      );
    const add = editable
      ? el("div", { class: "field new" },
          el("input", { id: "field-new-key", name: "new-key", "aria-label": "New field name", placeholder: "name" }),
          el("input", { id: "field-new-value", name: "new-value", "aria-label": "New field value", placeholder: "value" }))
      : null;
    this.fieldRows.replaceChildren(...rows, ...(rows.length || add ? [] : [el("p", { class: "hint" }, "none")]), ...(add ? [add] : []));
  }

  /** The custom fields that changed: new and edited keys, removed ones as null. */
  private fieldChanges(): Record<string, unknown> {
    const changes: Record<string, unknown> = {};
    for (const key of this.removed) changes[key] = null;
    for (const input of this.fieldRows.querySelectorAll<HTMLInputElement>("input[name^='field:']")) {
      const key = input.name.slice("field:".length);
      const value = parse(input.value);
      if (JSON.stringify(value) !== JSON.stringify(this.task.fields?.[key])) changes[key] = value;
    }
    const newKey = this.fieldRows.querySelector<HTMLInputElement>("#field-new-key")?.value.trim();
    if (newKey) changes[newKey] = parse(this.fieldRows.querySelector<HTMLInputElement>("#field-new-value")?.value ?? "");
    return changes;
  }

  // --- Writes ----------------------------------------------------------------------

  private async save(title: string, description: string, assignee: string): Promise<void> {
    const patch: Record<string, unknown> = {};
    if (title !== this.task.title) patch.title = title;
    if (description !== this.task.description) patch.description = description;
    const assigned = assignee.trim() === "" ? null : assignee;
    if (assigned !== (this.task.assigned_to ?? null)) patch.assigned_to = assigned;
    const fields = this.fieldChanges();
    if (Object.keys(fields).length) patch.fields = fields;
    this.say(null);
    if (Object.keys(patch).length === 0) return this.dialog.close();
    try {
      this.task = await sb.updateTask(this.board.id, this.task.id, patch);
      this.removed.clear();
      this.dialog.close();
    } catch (error) {
      this.say(error, "Not saved");
    }
  }

  private async move(): Promise<void> {
    this.say(null);
    try {
      await sb.moveTask(this.board.id, this.task.id, { status: this.status.value });
    } catch (error) {
      this.status.value = this.task.status;
      this.say(error, "Not moved");
    }
  }

  private async remove(): Promise<void> {
    if (!confirm(`Delete the card “${this.task.title}”?`)) return;
    try {
      await sb.deleteTask(this.board.id, this.task.id);
      this.dialog.close();
    } catch (error) {
      this.say(error, "Not deleted");
    }
  }

  /** Says why a write was refused, marking the field the server named. */
  private say(error: unknown, what = ""): void {
    for (const marked of this.dialog.querySelectorAll("[aria-invalid]")) marked.removeAttribute("aria-invalid");
    if (!error) {
      this.error.textContent = "";
      return;
    }
    this.error.textContent = `${what}: ${describe(error)}`;
    const field = error instanceof StreamboardError ? (error.details as { field?: string } | undefined)?.field : undefined;
    const input = field && this.dialog.querySelector<HTMLElement>(`[name="${field.startsWith("fields.") ? `field:${field.slice(7)}` : field}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-errormessage", "panel-error");
      input.focus();
    }
  }

  // --- What happened to the card -----------------------------------------------------

  private changed(event?: BoardEvent): void {
    const task = this.screen.board()?.tasks.find((t) => t.id === this.task.id);
    if (!task) {
      this.error.textContent = "This card was deleted.";
      this.dialog.querySelectorAll<HTMLInputElement>("input, textarea, select, button[type=submit]").forEach((input) => (input.disabled = true));
      return;
    }
    this.task = task;
    if (document.activeElement !== this.status) this.status.value = task.status;
    this.showMeta();
    const mine = event && "task_id" in event.data && event.data.task_id === task.id;
    if (mine && !this.history.querySelector(`[data-version="${event.version}"]`)) this.history.append(this.entry(event));
  }

  private showMeta(): void {
    const by = (user: string | undefined) => (mode === "api" && user ? ` by ${this.screen.name(user)}` : "");
    this.meta.textContent = `Created${by(this.task.created_by)} ${when(this.task.created_at)}; last changed${by(this.task.updated_by)} ${when(this.task.updated_at)}.`;
  }

  private async loadHistory(): Promise<void> {
    const mine: BoardEvent[] = [];
    let after = 0;
    try {
      for (let read = 0; read < HISTORY_EVENTS; ) {
        const page = await sb.events(this.board.id, after, 500);
        mine.push(...page.events.filter((e) => "task_id" in e.data && e.data.task_id === this.task.id));
        read += page.events.length;
        if (page.next_after === null || page.events.length === 0) break;
        after = page.next_after;
      }
      this.history.replaceChildren(...mine.map((event) => this.entry(event)));
    } catch (error) {
      this.history.replaceChildren(el("li", { class: "error" }, `History unavailable: ${describe(error)}`));
    }
  }

  private entry(event: BoardEvent): HTMLElement {
    let what: string;
    switch (event.type) {
      case "task.created":
        what = `created in ${label(event.data.status)}`;
        break;
      case "task.moved":
        what = event.data.from.status === event.data.to.status ? `moved within ${label(event.data.to.status)}` : `moved from ${label(event.data.from.status)} to ${label(event.data.to.status)}`;
        break;
      case "task.updated":
        what = `changed ${Object.keys(event.data.changes).map((k) => (k === "assigned_to" ? "the assignee" : k)).join(", ")}`;
        break;
      case "task.deleted":
        what = "deleted";
        break;
      default:
        what = event.type;
    }
    // Quick-win events have no actor.
    const line = event.actor ? `${this.screen.name(event.actor)}: ${what}` : what[0]!.toUpperCase() + what.slice(1);
    return el("li", { "data-version": String(event.version) }, line, el("span", { class: "hint" }, ` · ${when(event.at)}`));
  }
}

/** A field's value as typed: numbers and true/false as such, the rest as text. */
function parse(text: string): unknown {
  const trimmed = text.trim();
  if (/^-?\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  if (trimmed === "true" || trimmed === "false") return trimmed === "true";
  return text;
}

function show(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}
