// The board page: a boards list, a board with its columns and cards, live
// updates through the SDK's `follow`, drag and drop (mouse and touch) with
// positions from the SDK, and login / register in `/api` mode.
//
// URL: `/?board=<uuid>` a quick-win board, `/?board=<uuid>&mode=api` an
// event-sourced one (the `token` cookie, else a login form); without
// `board`, the boards of that mode (or, on a server with no quick-win board
// yet, a new sample board). Stable hooks for tests and scripts:
// each card has `data-task-id`, inside its column's `data-column` element.
import { Streamboard, StreamboardError, type Board, type LiveBoard, type Task, type Watcher } from "@streamboard/client";

const params = new URLSearchParams(location.search);
const mode = params.get("mode") === "api" ? "api" : "quick";
const boardId = params.get("board");
const sb = new Streamboard({ baseUrl: "", mode });

const app = byId("app");
const connection = byId("connection");
const watchersView = byId("watchers");
const account = byId("account");
byId("mode").textContent = mode === "api" ? "event-sourced (/api)" : "quick-win (/quick)";

function byId(id: string): HTMLElement {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} missing`);
  return found;
}

/** A small element builder: `el("button", {class: "x", onclick}, "text")`. */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | ((event: any) => void) | undefined> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined) continue;
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else element.setAttribute(name, value);
  }
  element.append(...children);
  return element;
}

function toast(message: string): void {
  const box = byId("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout((toast as any).timer);
  (toast as any).timer = setTimeout(() => (box.hidden = true), 4000);
}

function describe(error: unknown): string {
  if (error instanceof StreamboardError) return `${error.message} (${error.status})`;
  return error instanceof Error ? error.message : String(error);
}

function boardUrl(id: string): string {
  return `/?board=${id}${mode === "api" ? "&mode=api" : ""}`;
}

// --- Accounts --------------------------------------------------------------

async function signedIn(): Promise<boolean> {
  if (mode !== "api") return true;
  const user = await sb.me();
  if (!user) return false;
  account.replaceChildren(
    el("span", { "data-user": user.username }, user.username),
    el("button", {
      onclick: async () => {
        await sb.logout();
        location.reload();
      },
    }, "Log out"),
  );
  return true;
}

function loginForm(then: () => void): void {
  connection.dataset.state = "offline";
  connection.textContent = "signed out";
  const username = el("input", { name: "username", autocomplete: "username", placeholder: "username", required: "" });
  const password = el("input", { name: "password", type: "password", autocomplete: "current-password", placeholder: "password", required: "" });
  const error = el("p", { class: "error", role: "alert" });
  const submit = (register: boolean) => async (event: Event) => {
    event.preventDefault();
    try {
      if (register) await sb.register(username.value, password.value);
      else await sb.login(username.value, password.value);
      then();
    } catch (e) {
      error.textContent = describe(e);
    }
  };
  const form = el("form", { class: "panel", onsubmit: submit(false) },
    el("h2", {}, "Sign in to Streamboard"),
    username, password, error,
    el("div", { class: "buttons" },
      el("button", { class: "primary", type: "submit", name: "login" }, "Log in"),
      el("button", { type: "button", name: "register", onclick: submit(true) }, "Register")),
  );
  app.replaceChildren(form);
}

// --- Boards list -------------------------------------------------------------

async function showBoards(): Promise<void> {
  connection.dataset.state = "live";
  connection.textContent = "ready";
  const name = el("input", { name: "name", placeholder: "New board name", required: "" });
  const list = el("ul", { class: "boards" });
  const form = el("form", {
    class: "inline",
    onsubmit: async (event: Event) => {
      event.preventDefault();
      try {
        const board = await sb.createBoard({ name: name.value });
        location.href = boardUrl(board.id);
      } catch (e) {
        toast(describe(e));
      }
    },
  }, name, el("button", { class: "primary", type: "submit" }, "Create board"));
  app.replaceChildren(el("h1", {}, "Boards"), form, list);
  try {
    const page = await sb.listBoards();
    if (page.boards.length === 0) list.append(el("li", { class: "hint" }, "No boards yet: create one."));
    for (const board of page.boards) {
      list.append(el("li", {}, el("a", { href: boardUrl(board.id) }, board.name, el("span", { class: "desc hint" }, ` · ${board.tasks.length} cards`))));
    }
  } catch (e) {
    list.append(el("li", { class: "error" }, describe(e)));
  }
}

/** A first visit to a server with no quick-win boards opens a sample board,
 * so `/` shows a live board straight away. */
async function openWelcomeBoard(): Promise<void> {
  const board = await sb.createBoard({ name: "Welcome to Streamboard" });
  const cards: [string, string][] = [
    ["Drag me to another column", "todo"],
    ["Open this page in a second window", "todo"],
    ["Add a card below", "in_progress"],
    ["Read the SDK's README (clients/typescript)", "finished"],
  ];
  for (const [title, status] of cards) await sb.createTask(board.id, { title, status });
  history.replaceState(null, "", boardUrl(board.id));
  showBoard(board.id);
}

// --- A board ------------------------------------------------------------------

let live: LiveBoard | null = null;
let shown: Board | null = null;
let dragging = false;
let editing: string | null = null;

function showBoard(id: string): void {
  live = sb.follow(id, (board) => {
    shown = board;
    if (!dragging) render();
  }, {
    onState: (state) => {
      connection.dataset.state = state;
      connection.textContent = state;
    },
    onWatchers: showWatchers,
    onRollback: (_taskId, error) => toast(`Move undone: ${describe(error)}`),
    onError: (error) => {
      if (!shown) app.replaceChildren(el("p", { class: "error" }, `This board cannot be opened: ${describe(error)}`), el("a", { href: "/" + (mode === "api" ? "?mode=api" : "") }, "All boards"));
    },
  });
}

function showWatchers(watchers: Watcher[]): void {
  watchersView.replaceChildren(
    ...(watchers.length ? ["Watching:"] : []),
    ...watchers.map((w) => el("span", { class: "who", "data-watcher": w.id }, w.username)),
  );
}

function render(): void {
  const board = shown;
  if (!board) {
    if (live?.state?.deleted) app.replaceChildren(el("p", {}, "This board was deleted. "), el("a", { href: "/" }, "All boards"));
    return;
  }
  document.title = `${board.name} · Streamboard`;
  const title = el("h1", {},
    el("span", { "data-board-name": "" }, board.name),
    el("button", { class: "icon", title: "Rename board", onclick: () => renameBoard(board) }, "✎"),
    el("button", { class: "icon", title: "Delete board", onclick: () => deleteBoard(board) }, "✕"),
  );
  const columns = el("div", { class: "columns" });
  for (const status of board.columns) {
    const tasks = board.tasks.filter((t) => t.status === status);
    const cards = el("div", { class: "cards" }, ...tasks.map((task) => card(board, task)));
    const input = el("input", { name: "title", placeholder: "Add a card", required: "" });
    const add = el("form", {
      class: "inline add",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const titleText = input.value;
        input.value = "";
        try {
          await sb.createTask(board.id, { title: titleText, status });
        } catch (e) {
          toast(describe(e));
        }
      },
    }, input, el("button", { type: "submit", title: "Add card" }, "+"));
    columns.append(el("section", { class: "column", "data-column": status },
      el("h2", {}, status.replace(/_/g, " "), el("span", { class: "count" }, String(tasks.length))),
      cards, add));
  }
  app.replaceChildren(title, columns);
}

function card(board: Board, task: Task): HTMLElement {
  if (editing === task.id) return editor(board, task);
  const pending = live?.state?.tasks.get(task.id);
  const moved = pending && (pending.status !== task.status || pending.position !== task.position);
  const element = el("article", { class: "card" + (moved ? " pending" : ""), "data-task-id": task.id },
    el("span", { class: "title" }, task.title, ...(task.description ? [el("span", { class: "desc" }, task.description)] : [])),
    el("button", { class: "icon", title: "Edit", "data-action": "edit", onclick: () => { editing = task.id; render(); } }, "✎"),
    el("button", { class: "icon", title: "Delete", "data-action": "delete", onclick: () => removeTask(board, task) }, "×"),
  );
  element.addEventListener("pointerdown", (event) => startDrag(event, element, board, task));
  return element;
}

function editor(board: Board, task: Task): HTMLElement {
  const title = el("input", { name: "title", value: task.title, required: "" });
  const description = el("textarea", { name: "description", rows: "3" });
  description.value = task.description;
  const done = () => { editing = null; render(); };
  return el("article", { class: "card", "data-task-id": task.id },
    el("form", {
      onsubmit: async (event: Event) => {
        event.preventDefault();
        try {
          await sb.updateTask(board.id, task.id, { title: title.value, description: description.value });
        } catch (e) {
          toast(describe(e));
        }
        done();
      },
    }, title, description,
    el("div", { class: "buttons" }, el("button", { class: "primary", type: "submit" }, "Save"), el("button", { type: "button", onclick: done }, "Cancel"))));
}

async function removeTask(board: Board, task: Task): Promise<void> {
  try {
    await sb.deleteTask(board.id, task.id);
  } catch (e) {
    toast(describe(e));
  }
}

async function renameBoard(board: Board): Promise<void> {
  const name = prompt("Board name", board.name);
  if (!name || name === board.name) return;
  try {
    await sb.updateBoard(board.id, { name });
  } catch (e) {
    toast(describe(e));
  }
}

async function deleteBoard(board: Board): Promise<void> {
  if (!confirm(`Delete the board “${board.name}”?`)) return;
  try {
    await sb.deleteBoard(board.id);
    location.href = "/" + (mode === "api" ? "?mode=api" : "");
  } catch (e) {
    toast(describe(e));
  }
}

// --- Drag and drop (pointer events: mouse, pen and touch alike) ---------------

function startDrag(start: PointerEvent, element: HTMLElement, board: Board, task: Task): void {
  if ((start.target as HTMLElement).closest("button, input, textarea") || start.button !== 0) return;
  let moved = false;
  let target: HTMLElement | null = null;
  const move = (event: PointerEvent) => {
    const dx = event.clientX - start.clientX;
    const dy = event.clientY - start.clientY;
    if (!moved && Math.hypot(dx, dy) < 5) return;
    if (!moved) {
      moved = true;
      dragging = true;
      element.classList.add("dragging");
    }
    element.style.transform = `translate(${dx}px, ${dy}px)`;
    const column = columnAt(event.clientX, event.clientY);
    if (column !== target) {
      target?.classList.remove("target");
      column?.classList.add("target");
      target = column;
    }
  };
  const end = async (event: PointerEvent) => {
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", end);
    window.removeEventListener("pointercancel", end);
    target?.classList.remove("target");
    if (!moved) return;
    const column = event.type === "pointerup" ? columnAt(event.clientX, event.clientY) : null;
    dragging = false;
    element.classList.remove("dragging");
    element.style.transform = "";
    if (!column) {
      render();
      return;
    }
    const status = column.dataset.column!;
    const before = [...column.querySelectorAll<HTMLElement>("[data-task-id]")]
      .filter((card) => card.dataset.taskId !== task.id)
      .find((card) => {
        const box = card.getBoundingClientRect();
        return event.clientY < box.top + box.height / 2;
      });
    try {
      await sb.moveTask(board.id, task.id, before ? { status, before: before.dataset.taskId! } : { status });
    } catch {
      // Rolled back; onRollback says why.
    }
    render();
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", end);
  window.addEventListener("pointercancel", end);
}

function columnAt(x: number, y: number): HTMLElement | null {
  const found = document.elementFromPoint(x, y);
  return found instanceof HTMLElement ? found.closest<HTMLElement>("[data-column]") : null;
}

// --- Start ----------------------------------------------------------------------

async function main(): Promise<void> {
  try {
    if (!(await signedIn())) {
      loginForm(() => location.reload());
      return;
    }
  } catch (e) {
    app.replaceChildren(el("p", { class: "error" }, describe(e)));
    return;
  }
  if (boardId) showBoard(boardId);
  else if (mode === "quick" && (await sb.listBoards()).boards.length === 0) await openWelcomeBoard();
  else await showBoards();
}

void main();
