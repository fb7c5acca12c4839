// @streamboard/react: React and React Native bindings for @streamboard/client.
export { StreamboardProvider, useStreamboard } from "./context.js";
export { useBoard, useBoards, useConnection, useWatchers, type BoardList } from "./hooks.js";
export { useAnalytics, useBoardAt, type AnalyticsReading, type BoardAtReading } from "./past.js";
export type { BoardSnapshot } from "./board-store.js";
