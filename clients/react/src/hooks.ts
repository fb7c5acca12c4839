// The hooks: a followed board (and its connection and watchers, from the
// same shared follow), and the list of boards a page at a time.
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import type { Board, ConnectionState, Watcher } from "@streamboard/client";

import { boardStore, type BoardSnapshot, type BoardStore } from "./board-store.js";
import { useStreamboard } from "./context.js";

/** `useBoard(null)`: no board, no follow. */
const NOTHING: BoardSnapshot = { board: null, connection: "closed", watchers: [], error: null, rollback: null };
const NO_BOARD: BoardStore = { subscribe: () => () => {}, getSnapshot: () => NOTHING };

/**
 * Follows a board while the component is mounted: the board (live, with
 * optimistic moves), the connection state, who watches it, why it failed,
 * and the last refused move. Components showing the same board share one
 * follow. `null` follows nothing.
 */
export function useBoard(boardId: string | null | undefined): BoardSnapshot {
  const client = useStreamboard();
  const store = useMemo(() => (boardId ? boardStore(client, boardId) : NO_BOARD), [client, boardId]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/** The connection state of a board's follow (shared with `useBoard`). */
export function useConnection(boardId: string | null | undefined): ConnectionState {
  return useBoard(boardId).connection;
}

/** Who watches a board now (`api` mode; shared with `useBoard`). */
export function useWatchers(boardId: string | null | undefined): Watcher[] {
  return useBoard(boardId).watchers;
}

export interface BoardList {
  boards: Board[];
  loading: boolean;
  error: unknown;
  /** More pages wait behind `loadMore`. */
  hasMore: boolean;
  loadMore(): Promise<void>;
  /** Reads the first page again. */
  refresh(): Promise<void>;
}

/** The boards of the client's mode (in `api` mode, the caller's), a page at a time. */
export function useBoards(): BoardList {
  const client = useStreamboard();
  const [state, setState] = useState<{ boards: Board[]; cursor: string | undefined; loading: boolean; error: unknown }>({
    boards: [],
    cursor: undefined,
    loading: true,
    error: null,
  });
  const cursor = useRef<string | undefined>(undefined);
  const generation = useRef(0);

  const load = useCallback(
    async (more: boolean) => {
      if (more && cursor.current === undefined) return; // no next page
      const run = more ? generation.current : ++generation.current;
      setState((s) => ({ ...s, loading: true, error: null }));
      try {
        const page = await client.listBoards(more ? cursor.current : undefined);
        if (run !== generation.current) return; // a refresh started meanwhile
        cursor.current = page.next_cursor;
        setState((s) => ({ boards: more ? [...s.boards, ...page.boards] : page.boards, cursor: page.next_cursor, loading: false, error: null }));
      } catch (error) {
        if (run === generation.current) setState((s) => ({ ...s, loading: false, error }));
      }
    },
    [client],
  );

  useEffect(() => {
    void load(false);
  }, [load]);

  return {
    boards: state.boards,
    loading: state.loading,
    error: state.error,
    hasMore: state.cursor !== undefined,
    loadMore: () => load(true),
    refresh: () => load(false),
  };
}
