// A board's past in React: its flow metrics, live while their range runs to
// now, and the board at a past version or time. Both read through the
// client of the nearest provider.
import { useEffect, useState } from "react";
import type { AnalyticsRange, Board, FlowReport, Moment, Streamboard } from "@streamboard/client";

import { useStreamboard } from "./context.js";
import { useBoard } from "./hooks.js";

export interface AnalyticsReading {
  /** The last report read (kept while the next one loads, and after a failed read). */
  report: FlowReport | null;
  loading: boolean;
  error: unknown;
}

export interface BoardAtReading {
  board: Board | null;
  loading: boolean;
  error: unknown;
}

interface Reading<T> {
  data: T | null;
  loading: boolean;
  error: unknown;
}

/** Reads `read()` whenever the client or `key` (all else `read` depends on)
 * changes; an answer to an older key is dropped. */
function useReading<T>(client: Streamboard, key: string, read: (() => Promise<T>) | null): Reading<T> {
  const [state, setState] = useState<Reading<T>>({ data: null, loading: read !== null, error: null });
  useEffect(() => {
    if (!read) return setState({ data: null, loading: false, error: null });
    let current = true;
    setState((s) => ({ ...s, loading: true }));
    read().then(
      (data) => current && setState({ data, loading: false, error: null }),
      (error: unknown) => current && setState((s) => ({ data: s.data, loading: false, error })),
    );
    return () => {
      current = false;
    };
  }, [client, key]);
  return state;
}

const stamp = (time: string | Date | undefined) => (time instanceof Date ? time.toISOString() : (time ?? ""));

/**
 * A board's flow metrics over `range` (`sb.analytics`). Without `to` the
 * range runs to now: the hook then follows the board (sharing `useBoard`'s
 * follow) and reads the metrics again at each new version. `null` reads
 * nothing.
 */
export function useAnalytics(boardId: string | null | undefined, range: AnalyticsRange = {}): AnalyticsReading {
  const client = useStreamboard();
  const live = range.to === undefined;
  const version = useBoard(live ? boardId : null).board?.version ?? 0;
  const key = JSON.stringify([boardId, stamp(range.from), stamp(range.to), range.seed, live ? version : 0]);
  const { data, loading, error } = useReading(client, key, boardId ? () => client.analytics(boardId, range) : null);
  return { report: data, loading, error };
}

/** The board at a past version, or `{asOf}` a time (`sb.boardAt`). */
export function useBoardAt(boardId: string | null | undefined, moment: Moment): BoardAtReading {
  const client = useStreamboard();
  const key = JSON.stringify([boardId, typeof moment === "number" ? moment : stamp(moment.asOf)]);
  const { data, loading, error } = useReading(client, key, boardId ? () => client.boardAt(boardId, moment) : null);
  return { board: data, loading, error };
}
