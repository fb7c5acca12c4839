// Who and where: the page's mode (from the URL), its one SDK client (with
// the browser's online state fed to it), the signed-in user, and its URLs.
import { Streamboard, type Mode, type User } from "@streamboard/client";

const params = new URLSearchParams(location.search);

export const mode: Mode = params.get("mode") === "api" ? "api" : "quick";
export const boardParam = params.get("board");
/** `insights`: the board's Insights view instead of the board. */
export const viewParam = params.get("view");
export const sb = new Streamboard({ baseUrl: "", mode });

// The browser says when the network comes and goes: writes wait, follows
// reconnect at once when it is back.
sb.setOnline(navigator.onLine);
addEventListener("online", () => sb.setOnline(true));
addEventListener("offline", () => sb.setOnline(false));

/** The signed-in user (`api` mode), once `signIn` found one. */
export let me: User | null = null;

export function setMe(user: User | null): void {
  me = user;
}

export function boardUrl(id: string): string {
  return `/?board=${id}${mode === "api" ? "&mode=api" : ""}`;
}

export function insightsUrl(id: string): string {
  return `${boardUrl(id)}&view=insights`;
}

/** This mode's board list. */
export const listUrl = mode === "api" ? "/?mode=api" : "/";
