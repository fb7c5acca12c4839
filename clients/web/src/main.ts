// The board page: the board list of a mode, a live board (board.ts) with
// its card panel and sharing, and login / register in `/api` mode, all on
// the SDK (@streamboard/client).
//
// URL: `/?board=<uuid>` a quick-win board, `/?board=<uuid>&mode=api` an
// event-sourced one (the `token` cookie, else a login form); without
// `board`, the boards of that mode (or, on a server with no quick-win board
// yet, a new sample board); `&view=insights` the board's flow metrics and
// history (insights.ts). Stable hooks for tests and scripts: each card
// has `data-task-id`, inside its column's `data-column` element.
import { loginForm, signIn } from "./account.js";
import { showBoard } from "./board.js";
import { showBoards, welcomeBoard } from "./boards.js";
import { byId, describe, el } from "./dom.js";
import { showInsights } from "./insights.js";
import { boardParam, listUrl, mode, viewParam } from "./session.js";

byId("mode").textContent = mode === "api" ? "event-sourced" : "quick-win";
byId<HTMLAnchorElement>("brand").href = listUrl;

async function main(): Promise<void> {
  try {
    if (!(await signIn())) return loginForm(() => location.reload());
    const boardId = boardParam ?? (await welcomeBoard());
    if (boardId && viewParam === "insights") showInsights(boardId);
    else if (boardId) showBoard(boardId);
    else await showBoards();
  } catch (e) {
    byId("app").replaceChildren(el("p", { class: "error", role: "alert" }, describe(e)));
  }
}

void main();
