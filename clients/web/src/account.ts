// Accounts in `/api` mode: who is signed in (shown once, in the header) and
// the login / register form.
import { byId, describe, el } from "./dom.js";
import { mode, sb, setMe } from "./session.js";

/** Finds the signed-in user (`api`); true when there is one, or in quick-win. */
export async function signIn(): Promise<boolean> {
  if (mode !== "api") return true;
  const user = await sb.me();
  setMe(user);
  if (!user) return false;
  byId("account").replaceChildren(
    el("span", { class: "user", "data-user": user.username, title: `Signed in as ${user.username}` }, user.username),
    el("button", {
      class: "logout",
      "aria-label": "Log out",
      title: "Log out",
      onclick: async () => {
        await sb.logout();
        location.reload();
      },
    }, el("span", { "aria-hidden": "true" }, "⎋"), el("span", { class: "wide" }, " Log out")),
  );
  return true;
}

/** The login / register form; `then` runs once signed in. */
export function loginForm(then: () => void): void {
  const connection = byId("connection");
  connection.dataset.state = "offline";
  connection.textContent = "signed out";
  const username = el("input", { id: "login-username", name: "username", autocomplete: "username", required: true });
  const password = el("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
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
  byId("app").replaceChildren(
    el("form", { class: "panel", onsubmit: submit(false) },
      el("h1", {}, "Sign in to Streamboard"),
      el("label", { for: "login-username" }, "Username"), username,
      el("label", { for: "login-password" }, "Password"), password,
      error,
      el("div", { class: "buttons" },
        el("button", { class: "primary", type: "submit", name: "login" }, "Log in"),
        el("button", { type: "button", name: "register", onclick: submit(true) }, "Register"))),
  );
}
