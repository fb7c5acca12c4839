// The client the hooks use, given once near the root of the app.
import { createContext, useContext, type ReactNode } from "react";
import type { Streamboard } from "@streamboard/client";

const StreamboardContext = createContext<Streamboard | null>(null);

/** Makes `client` the one `useBoard` and the other hooks use below it. */
export function StreamboardProvider({ client, children }: { client: Streamboard; children?: ReactNode }) {
  return <StreamboardContext.Provider value={client}>{children}</StreamboardContext.Provider>;
}

/** The client of the nearest `StreamboardProvider` (for writes: `useStreamboard().moveTask(...)`). */
export function useStreamboard(): Streamboard {
  const client = useContext(StreamboardContext);
  if (!client) throw new Error("useStreamboard: no <StreamboardProvider client={...}> above this component");
  return client;
}
