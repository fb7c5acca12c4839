// An app process for the restart tests (test/integration/restart.test.ts),
// which SIGKILLs it mid-outbox and starts it again on the same storage file.
// It follows one board and reports on stdout, one JSON object a line:
// `{"board": {...}}` on every change, `{"state": ...}`, `{"queued": n}`,
// `{"drained": true}` once no write is left. Settings in the environment:
// SB_URL, SB_TOKEN, SB_BOARD, SB_STORE (the storage file), SB_PLAN (JSON,
// the writes made once the board is live: `[{"create": title} | {"move":
// {"task_id", "status"}}]`).
import WebSocket from "ws";

import { Streamboard, type WebSocketConstructor } from "../../src/index.js";
import { fileStorage } from "../../../testing/file-storage.js";

const env = (name: string) => process.env[name] ?? "";
const say = (line: object) => process.stdout.write(JSON.stringify(line) + "\n");
type Step = { create: string } | { move: { task_id: string; status: string } };
const plan = JSON.parse(env("SB_PLAN") || "[]") as Step[];
const boardId = env("SB_BOARD");

const sb = new Streamboard({
  baseUrl: env("SB_URL"),
  mode: "api",
  token: env("SB_TOKEN"),
  WebSocket: WebSocket as unknown as WebSocketConstructor,
  storage: fileStorage(env("SB_STORE")),
  maxBackoffMs: 300,
  onWriteRefused: (write, error) => say({ refused: write.key, status: error.status }),
});

let planned = false;
sb.follow(boardId, (board) => say({ board: board && { version: board.version, tasks: board.tasks.map(({ id, title, status }) => ({ id, title, status })) } }), {
  onState: (state) => {
    say({ state });
    if (state === "live" && !planned) {
      planned = true;
      void carryOut();
    }
  },
});

async function carryOut(): Promise<void> {
  const writes = plan.map((step) =>
    "create" in step ? sb.createTask(boardId, { title: step.create }) : sb.moveTask(boardId, step.move.task_id, { status: step.move.status }),
  );
  if (writes.length) say({ queued: writes.length });
  await Promise.allSettled(writes);
}

await sb.ready();
const drained = setInterval(() => {
  if (sb.queuedWrites.length === 0 && (planned || plan.length === 0)) {
    say({ drained: true });
    clearInterval(drained);
  }
}, 50);
