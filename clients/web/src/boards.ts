// The board list of the page's mode, and the sample board a first visit to
// a server with no quick-win boards opens.
import { byId, describe, el, toast } from "./dom.js";
import { boardUrl, mode, sb } from "./session.js";

export async function showBoards(): Promise<void> {
  const connection = byId("connection");
  connection.dataset.state = "live";
  connection.textContent = "ready";
  const name = el("input", { id: "new-board", name: "name", required: true, placeholder: "Roadmap" });
  const list = el("ul", { class: "boards", "aria-label": "Boards" });
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
  }, el("label", { for: "new-board", class: "sr-only" }, "New board name"), name, el("button", { class: "primary", type: "submit" }, "Create board"));
  byId("app").replaceChildren(el("h1", {}, "Boards"), form, list);
  try {
    const page = await sb.listBoards();
    if (page.boards.length === 0) list.append(el("li", { class: "hint" }, "No boards yet: create one."));
    for (const board of page.boards) {
      list.append(el("li", {}, el("a", { href: boardUrl(board.id) }, board.name, el("span", { class: "desc" }, ` · ${board.tasks.length} cards`))));
    }
  } catch (e) {
    list.append(el("li", { class: "error" }, describe(e)));
  }
}

/** A first visit to a server with no quick-win boards opens a sample board,
 * so `/` shows a live board straight away. Returns its id. */
export async function welcomeBoard(): Promise<string | null> {
  if (mode !== "quick" || (await sb.listBoards()).boards.length > 0) return null;
  const board = await sb.createBoard({ name: "Welcome to Streamboard" });
  const cards: [string, string][] = [
    ["Drag me to another column", "todo"],
    ["Open me: click, or Enter", "todo"],
    ["Open this page in a second window", "in_progress"],
    ["Read the SDK's README (clients/typescript)", "finished"],
  ];
  for (const [title, status] of cards) await sb.createTask(board.id, { title, status });
  history.replaceState(null, "", boardUrl(board.id));
  return board.id;
}
