// What the card panel and the share dialog need of the open board: the
// board as shown, what the signed-in user may do, names for user ids, and
// changes as they come.
import type { Board, BoardEvent, Member } from "@streamboard/client";

/** What the user may do on this board: `edit` tasks, `manage` the board
 * (rename, delete), `share` it (members); quick-win boards have no roles. */
export interface Access {
  role: "owner" | "editor" | "viewer" | "anyone";
  edit: boolean;
  manage: boolean;
  share: boolean;
}

export interface BoardScreen {
  board(): Board | null;
  access(): Access;
  /** A user's name: their username when known, else the start of their id. */
  name(userId: string | null | undefined): string;
  /** Remembers usernames (members from the REST answers). */
  learn(members: Member[]): void;
  /** Called on every change of the board; returns the unsubscribe. */
  onChange(listener: (event?: BoardEvent) => void): () => void;
}
