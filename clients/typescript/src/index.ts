// @streamboard/client: REST calls, a live board replica over WebSocket, an
// outbox of writes that survives restarts, and the fold of events into a
// board, for browsers, React Native and Node.
export { Streamboard, type StreamboardOptions, type BoardPage, type EventPage } from "./client.js";
export { LiveBoard, type ConnectionState, type FollowListener, type FollowOptions, type WebSocketLike, type WebSocketConstructor } from "./follow.js";
export { newKey } from "./outbox.js";
export type { FetchLike } from "./rest.js";
export { fromWebStorage, CACHED_BOARDS, type KeyValueStorage, type QueuedWrite } from "./storage.js";
export { StreamboardError, isTransient } from "./errors.js";
export { apply, fold, toBoard, fromBoard, columnTasks, mergeFields, type BoardState } from "./fold.js";
export { positionFor, STEP, type Drop } from "./position.js";
export type * from "./types.js";
