// What the page says of a followed board, on the board and in its
// Insights alike: the connection state in the header, and a board that
// cannot be opened (said once, with a way back).
import { StreamboardError } from "@streamboard/client";

import { byId, describe, el } from "./dom.js";
import { listUrl, mode } from "./session.js";

export function showConnection(state: string): void {
  const connection = byId("connection");
  connection.dataset.state = state;
  connection.textContent = state === "failed" ? "unavailable" : state;
}

/** The board cannot be opened (404 or no access, 401). */
export function showUnavailable(error: unknown): void {
  const gone = error instanceof StreamboardError && (error.status === 404 || error.status === 403);
  const message = gone
    ? mode === "api"
      ? "This board does not exist, or you are not one of its members."
      : "This board does not exist (quick-win boards are gone when the server restarts)."
    : `This board cannot be opened: ${describe(error)}`;
  byId("app").replaceChildren(el("div", { class: "panel", role: "alert", "data-board-state": "unavailable" }, el("h1", {}, "Board unavailable"), el("p", {}, message), el("a", { href: listUrl }, "All boards")));
}
