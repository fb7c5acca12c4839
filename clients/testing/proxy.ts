// A forwarding proxy in front of the real server, for tests that must see
// or hold what a client sends: HTTP requests one by one (with a hook on each
// answer, which may drop it), and WebSocket upgrades piped as they are.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";

/** One request that went through, with the status the server answered. */
export interface Seen {
  method: string;
  path: string;
  status: number;
  replayed: boolean;
}

/** What to do with the server's answer: pass it on, or drop it (the client never hears). */
export type Verdict = "pass" | "drop";

export class Proxy {
  /** Requests that got an answer from the server, in order. */
  readonly seen: Seen[] = [];
  /** Hold everything (HTTP and WebSocket) until `release`. */
  holdAll = false;
  /** Hold writes (POST, PATCH, DELETE) until `release`. */
  holdWrites = false;
  /** Called with each answer before it is passed on. */
  onAnswer: (seen: Seen) => Verdict = () => "pass";
  private readonly held: (() => void)[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, readonly url: string) {}

  static async start(target: string): Promise<Proxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const proxy = new Proxy(server, `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`);
    const upstream = new URL(target);
    server.on("request", (req: IncomingMessage, res: ServerResponse) => proxy.whenFree(req, () => proxy.forward(upstream, req, res)));
    server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => proxy.whenFree(req, () => proxy.pipe(upstream, req, socket, head)));
    server.on("connection", (socket: Socket) => {
      proxy.sockets.add(socket);
      socket.on("close", () => proxy.sockets.delete(socket));
    });
    return proxy;
  }

  /** Lets held requests through (and stops holding). */
  release(): void {
    this.holdAll = this.holdWrites = false;
    for (const go of this.held.splice(0)) go();
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private whenFree(req: IncomingMessage, go: () => void): void {
    const write = ["POST", "PATCH", "DELETE"].includes(req.method ?? "");
    if (this.holdAll || (this.holdWrites && write)) this.held.push(go);
    else go();
  }

  private forward(upstream: URL, req: IncomingMessage, res: ServerResponse): void {
    const out = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const seen: Seen = { method: req.method ?? "", path: req.url ?? "", status: answer.statusCode ?? 0, replayed: answer.headers["idempotent-replayed"] === "true" };
      this.seen.push(seen);
      if (this.onAnswer(seen) === "drop") {
        answer.resume();
        res.destroy();
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    out.on("error", () => res.destroy());
    req.pipe(out);
  }

  private pipe(upstream: URL, req: IncomingMessage, socket: Socket, head: Buffer): void {
    const out = connect(Number(upstream.port), upstream.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      out.write(lines.join("\r\n") + "\r\n\r\n");
      out.write(head);
      out.pipe(socket);
      socket.pipe(out);
    });
    this.sockets.add(out);
    const end = () => {
      out.destroy();
      socket.destroy();
      this.sockets.delete(out);
    };
    out.on("error", end).on("close", end);
    socket.on("error", end).on("close", end);
  }
}
