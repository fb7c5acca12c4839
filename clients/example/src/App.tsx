import { useEffect, useMemo } from "react";
import { AppState } from "react-native";
import AsyncStorage from "@react-native-async-storage/async-storage";
import { Streamboard } from "@streamboard/client";
import { StreamboardProvider } from "@streamboard/react";

import { BoardScreen } from "./BoardScreen";

// The app's root: one client for the app, its writes and boards kept in
// AsyncStorage across restarts, online while the app is in the foreground.
// Quick-win boards need no account; for /api boards use mode "api" and a
// saved token (`sb.login(...)` once, then `token` here).
export function App({ baseUrl, boardId }: { baseUrl: string; boardId: string }) {
  const sb = useMemo(() => new Streamboard({ baseUrl, mode: "quick", storage: AsyncStorage }), [baseUrl]);
  useEffect(() => {
    const subscription = AppState.addEventListener("change", (state) => sb.setOnline(state === "active"));
    return () => subscription.remove();
  }, [sb]);
  return (
    <StreamboardProvider client={sb}>
      <BoardScreen boardId={boardId} />
    </StreamboardProvider>
  );
}
