// The Socket.IO side of `scripts/bench.sh peers`: the fan-out app a Node.js
// team would write for live task boards, to measure Streamboard beside.
//
// Several instances share one Redis through the official Redis Streams
// adapter. Clients connect over WebSocket, send `join` with a board id and
// get `joined` back once they are in the board's room. A writer POSTs a
// mutation to any one instance:
//
//   POST /mutate  {"board": "b7", "seq": 12, "t": <send time, unix us>}
//
// and that instance emits it to the room as `mutation` (the same JSON), to
// its own clients and, through the adapter's stream, to every other
// instance's. Nothing is stored beyond the adapter's stream.
//
// Environment: PORT (default 3000), HOST (127.0.0.1), REDIS_URL
// (redis://127.0.0.1:6379).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-streams-adapter");
const { createClient } = require("redis");

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || "127.0.0.1";
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const MAX_BODY = 16 * 1024;

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => {
      body += chunk;
      if (body.length > MAX_BODY) reject(new Error("body too large"));
    });
    req.on("end", () => {
      try {
        resolve(JSON.parse(body));
      } catch (error) {
        reject(error);
      }
    });
    req.on("error", reject);
  });
}

function answer(res, status, text = "") {
  res.writeHead(status, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

// POST /mutate broadcasts the mutation to its board's room; anything else
// is a 404 (Socket.IO answers its own /socket.io/ path before this).
function mutationHandler(getIo) {
  return async (req, res) => {
    const io = getIo();
    if (req.method !== "POST" || req.url !== "/mutate") return answer(res, 404, "not found");
    let mutation;
    try {
      mutation = await readJson(req);
    } catch (error) {
      return answer(res, 400, String(error.message));
    }
    if (typeof mutation.board !== "string") return answer(res, 400, "board must be a string");
    io.to(mutation.board).emit("mutation", mutation);
    answer(res, 204);
  };
}

async function main() {
  const redis = createClient({ url: REDIS_URL });
  redis.on("error", (error) => console.error("redis:", error.message));
  await redis.connect();

  let io;
  const httpServer = http.createServer(mutationHandler(() => io));
  io = new Server(httpServer, {
    adapter: createAdapter(redis),
    transports: ["websocket"],
    serveClient: false,
  });

  io.on("connection", (socket) => {
    socket.on("join", (board) => {
      if (typeof board !== "string") return;
      socket.join(board);
      socket.emit("joined", board);
    });
  });

  httpServer.listen(PORT, HOST, () => {
    console.log(`socket.io peer listening on ${HOST}:${PORT} (pid ${process.pid})`);
  });
  const stop = () => {
    io.close();
    redis.quit().finally(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
