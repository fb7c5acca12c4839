// The SDK's tests against the real server: the shared server harness
// (clients/testing) and SDK clients of the environment's mode.
import WebSocket from "ws";

import { Streamboard, type StreamboardOptions, type WebSocketConstructor } from "../src/index.js";
import type { TestEnv, TestServer } from "../../testing/server.js";

export { eventually, serverFor } from "../../testing/server.js";

/** A client of the environment's mode against its server, with `ws` as WebSocket. */
export function client(at: { env: TestEnv; server: TestServer }, options: Partial<StreamboardOptions> = {}): Streamboard {
  return new Streamboard({ baseUrl: at.server.url, mode: at.env.mode, WebSocket: WebSocket as unknown as WebSocketConstructor, ...options });
}
