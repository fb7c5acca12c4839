// @streamboard/client: REST calls, a live board replica over WebSocket and
// the fold of events into a board, for browsers, React Native and Node.
export { Streamboard, newKey, type StreamboardOptions, type WebSocketLike, type WebSocketConstructor, type FetchLike, type BoardPage, type EventPage } from "./client.js";
export { LiveBoard, type ConnectionState, type FollowListener, type FollowOptions } from "./follow.js";
export { StreamboardError, isTransient } from "./errors.js";
export { apply, fold, toBoard, fromBoard, columnTasks, mergeFields, type BoardState } from "./fold.js";
export { positionFor, STEP, type Drop } from "./position.js";
export type * from "./types.js";
