// Small DOM helpers the page's modules share: an element builder, the
// screen-reader announcer, the toast, and errors said in words.
import { StreamboardError } from "@streamboard/client";

type Attribute = string | boolean | ((event: any) => void) | undefined;

/** `el("button", {class: "x", onclick}, "text")`: `on*` attributes become
 * listeners, `true` an empty attribute, `false`/`undefined` none. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, Attribute> = {}, ...children: (Node | string | null | false)[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.filter((c): c is Node | string => c !== null && c !== false));
  return element;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} missing`);
  return found as T;
}

/** Says `text` to screen readers (a polite live region). */
export function announce(text: string): void {
  const region = byId("announce");
  region.textContent = "";
  // A new text node, a moment later, so the same words are read again.
  setTimeout(() => (region.textContent = text), 50);
}

let toastTimer: ReturnType<typeof setTimeout> | undefined;

/** A passing note at the bottom of the screen (what has no place of its own). */
export function toast(message: string): void {
  const box = byId("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 5000);
}

/** An error in words: the server's message and status, or the platform's. */
export function describe(error: unknown): string {
  if (error instanceof StreamboardError) {
    if (error.status === 0) return error.message;
    if (error.status === 403) return `you may only read this board (${error.status})`;
    return `${error.message} (${error.status})`;
  }
  if (error instanceof TypeError) return "the server cannot be reached";
  return error instanceof Error ? error.message : String(error);
}

/** A time as people read it, in their locale. */
export function when(time: string): string {
  return new Date(time).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** A status name as a label: `in_progress` -> `in progress`. */
export function label(status: string): string {
  return status.replace(/_/g, " ");
}
