// Starts the real server for the clients' integration, browser and bundle
// tests (every package's), as tests/common does for the Rust suites: the debug binary cargo built
// (STREAMBOARD_BIN, else $CARGO_TARGET_DIR/debug/streamboard, else
// target/debug/streamboard), the test profile, a free loopback port, and in
// `api` mode a private redis-server and a fresh PostgreSQL database that
// are removed again at the end.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { after, before } from "node:test";

import { repoRoot } from "./paths.js";

/** `quick` (in-memory boards) or `api` (Redis + PostgreSQL). */
export type Mode = "quick" | "api";

export const streamboardBin =
  process.env.STREAMBOARD_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target"), "debug", "streamboard");
const postgresAdmin = process.env.STREAMBOARD_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

function psql(url: string, sql: string): void {
  execFileSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-XAtq", "-c", sql], { stdio: "pipe" });
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The dependencies of one test file: none (quick) or Redis + PostgreSQL (api). */
export class TestEnv {
  private redis: ChildProcess | null = null;
  private redisDir: string | null = null;
  private database: string | null = null;
  readonly servers: TestServer[] = [];
  settings: Record<string, string> = {};

  private constructor(readonly mode: Mode) {}

  static async start(mode: Mode): Promise<TestEnv> {
    if (!existsSync(streamboardBin)) {
      throw new Error(`${streamboardBin} is missing: cargo build -p streamboard --bins (or set STREAMBOARD_BIN)`);
    }
    const env = new TestEnv(mode);
    if (mode === "api") await env.startDependencies();
    return env;
  }

  private async startDependencies(): Promise<void> {
    const port = await freePort();
    this.redisDir = mkdtempSync(join(tmpdir(), "sb-clients-redis-"));
    this.redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", this.redisDir], { stdio: "ignore" });
    await waitFor(() => {
      try {
        return execFileSync("redis-cli", ["-p", String(port), "ping"], { stdio: "pipe" }).toString().startsWith("PONG");
      } catch {
        return false;
      }
    }, "redis-server");
    this.database = `sb_clients_${randomUUID().replace(/-/g, "")}`;
    psql(postgresAdmin, `CREATE DATABASE ${this.database}`);
    const server = postgresAdmin.slice(0, postgresAdmin.lastIndexOf("/"));
    this.settings = {
      STREAMBOARD__REDIS__URL: `redis://127.0.0.1:${port}`,
      STREAMBOARD__POSTGRES__URL: `${server}/${this.database}`,
    };
  }

  /** Starts a server (on `port`, e.g. the one a stopped server had). */
  async server(port?: number): Promise<TestServer> {
    const server = await TestServer.start({ ...this.settings }, port);
    this.servers.push(server);
    return server;
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
    this.redis?.kill("SIGKILL");
    if (this.redisDir) rmSync(this.redisDir, { recursive: true, force: true });
    if (this.database) psql(postgresAdmin, `DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`);
  }
}

export class TestServer {
  private constructor(readonly url: string, readonly port: number, private readonly child: ChildProcess) {}

  static async start(settings: Record<string, string>, port = 0): Promise<TestServer> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (!key.startsWith("STREAMBOARD") && value !== undefined) env[key] = value;
    }
    Object.assign(env, {
      STREAMBOARD_ENV: "test",
      STREAMBOARD_CONFIG_DIR: join(repoRoot, "config"),
      STREAMBOARD__SERVER__ADDR: `127.0.0.1:${port}`,
      STREAMBOARD__SERVER__WEB_DIR: join(repoRoot, "clients", "web", "dist"),
      RUST_LOG: "warn",
      ...settings,
    });
    const child = spawn(streamboardBin, [], { env, cwd: tmpdir(), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 30_000);
      child.stdout!.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        const found = /listening on (http:\/\/\S+)/.exec(output);
        if (found) {
          clearTimeout(timer);
          resolve(found[1]!);
        }
      });
      child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.once("exit", (code) => reject(new Error(`server exited (${code}):\n${output}`)));
    });
    return new TestServer(url, Number(new URL(url).port), child);
  }

  /** SIGTERM, and wait for the process to be gone. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    await exited;
  }
}

/** Waits until `check` holds, polling; for conditions reached through the network. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  await waitFor(check, what, ms);
}

/** For a `describe` block: an environment of `mode` and one server in it
 * (with extra `settings`, e.g. a `TestClock`'s), started before its tests
 * and stopped after them. A test that restarts the server sets `server` to
 * the new one. */
export function serverFor(mode: Mode, settings: Record<string, string> = {}): { env: TestEnv; server: TestServer } {
  const context = {} as { env: TestEnv; server: TestServer };
  before(async () => {
    context.env = await TestEnv.start(mode);
    Object.assign(context.env.settings, settings);
    context.server = await context.env.server();
  });
  after(() => context.env.stop());
  return context;
}
