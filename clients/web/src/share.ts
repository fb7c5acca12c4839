// Sharing a board (`/api`, its owner): who is a member with which role; add
// someone by username, change a role, remove a member. Each refusal is said
// in the dialog.
import type { Member, Role } from "@streamboard/client";

import { byId, describe, el } from "./dom.js";
import type { BoardScreen } from "./screen.js";
import { sb } from "./session.js";

const ROLES: Exclude<Role, "owner">[] = ["editor", "viewer"];

export function openShare(screen: BoardScreen, boardId: string): void {
  const dialog = byId<HTMLDialogElement>("share");
  const list = el("ul", { class: "members", "aria-label": "Members" });
  const error = el("p", { class: "error", role: "alert" });
  const username = el("input", { id: "share-username", name: "username", autocomplete: "off", required: true, placeholder: "username" });
  const role = roleSelect("share-role", "editor");

  const refresh = async () => {
    try {
      const members = await sb.members(boardId);
      screen.learn(members);
      list.replaceChildren(...members.map(row));
    } catch (e) {
      error.textContent = describe(e);
    }
  };
  const attempt = async (what: string, write: () => Promise<unknown>) => {
    error.textContent = "";
    try {
      await write();
      await refresh();
    } catch (e) {
      error.textContent = `${what}: ${describe(e)}`;
    }
  };
  const row = (member: Member) => {
    const name = member.username ?? member.user_id.slice(0, 8);
    if (member.role === "owner") return el("li", { "data-member": name }, el("span", {}, name), el("span", { class: "badge" }, "owner"));
    const select = roleSelect(`role-${member.user_id}`, member.role);
    select.setAttribute("aria-label", `Role of ${name}`);
    select.addEventListener("change", () => void attempt("Not changed", () => sb.addMember(boardId, { user_id: member.user_id }, select.value as Exclude<Role, "owner">)));
    return el("li", { "data-member": name }, el("span", {}, name), select,
      el("button", { type: "button", "aria-label": `Remove ${name}`, onclick: () => void attempt("Not removed", () => sb.removeMember(boardId, member.user_id)) }, "Remove"));
  };

  dialog.replaceChildren(
    el("div", { class: "panel-head" },
      el("h2", { id: "share-heading" }, `Share “${screen.board()?.name ?? "board"}”`),
      el("button", { type: "button", "aria-label": "Close", onclick: () => dialog.close() }, "×")),
    list,
    el("form", {
      class: "inline",
      onsubmit: (event: Event) => {
        event.preventDefault();
        void attempt("Not added", async () => {
          await sb.addMember(boardId, { username: username.value.trim() }, role.value as Exclude<Role, "owner">);
          username.value = "";
        });
      },
    },
      el("label", { for: "share-username", class: "sr-only" }, "Username"), username,
      el("label", { for: "share-role", class: "sr-only" }, "Role"), role,
      el("button", { class: "primary", type: "submit" }, "Add")),
    error,
    el("p", { class: "hint" }, "Editors change cards; viewers only read. Only you, the owner, share, rename and delete the board."),
  );
  dialog.setAttribute("aria-labelledby", "share-heading");
  dialog.showModal();
  username.focus();
  void refresh();
}

function roleSelect(id: string, value: string): HTMLSelectElement {
  const select = el("select", { id, name: "role" }, ...ROLES.map((r) => el("option", { value: r }, r)));
  select.value = value;
  return select;
}
