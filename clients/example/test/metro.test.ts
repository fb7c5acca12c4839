// The SDK as a React Native app gets it: `npm pack` makes the two packages'
// tarballs, Metro (with React Native's own config and Babel preset) bundles
// the example app against what the tarballs hold, and the bundle, run in
// Node with the `ws` WebSocket standing in for React Native's, follows a
// board on the real server, and, killed in the middle of its outbox and
// started again, loses no write and doubles none. React Native itself is
// not installed: its components and AppState, and AsyncStorage, are
// stand-ins (bundle/).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { before, describe, test } from "node:test";
import { runInThisContext } from "node:vm";
import WebSocket from "ws";
import { Streamboard, type WebSocketConstructor } from "@streamboard/client";

import { AppProcess } from "../../testing/app-process.js";
import { storedBoards, storedWrites } from "../../testing/file-storage.js";
import { repoRoot } from "../../testing/paths.js";
import { Proxy } from "../../testing/proxy.js";
import { eventually, serverFor } from "../../testing/server.js";

const require = createRequire(import.meta.url);
const Metro = require("metro") as typeof import("metro");
const { FileStore } = require("metro-cache") as { FileStore: new (options: { root: string }) => unknown };

const clients = join(repoRoot, "clients");
const example = join(clients, "example");
const work = join(example, "build", "bundle-test");
const installed = join(work, "installed");

/** What `npm pack` put in a tarball, by package name. */
const packed = new Map<string, string[]>();
let bundle = "";
let sources: string[] = [];

/** `npm pack` both packages (their prepack builds them) and unpack them as an app's node_modules would hold them. */
function packAndInstall(): void {
  const out = execFileSync("npm", ["pack", "--json", "--pack-destination", work, "-w", "@streamboard/client", "-w", "@streamboard/react"], { cwd: clients, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const tarballs = JSON.parse(out.slice(out.indexOf("["))) as { name: string; filename: string; files: { path: string }[] }[];
  for (const tarball of tarballs) {
    packed.set(tarball.name, tarball.files.map((f) => f.path));
    const dir = join(installed, "node_modules", tarball.name);
    mkdirSync(dir, { recursive: true });
    execFileSync("tar", ["-xzf", join(work, tarball.filename), "-C", dir, "--strip-components=1"]);
  }
}

/** The example's own Metro config, with what this test changes: the
 * stand-ins, the packages from the tarballs, no React Native start-up
 * module, a cache in build/. */
async function metroConfig() {
  const standIns: Record<string, string> = {
    "react-native": join(example, "bundle", "react-native.js"),
    "@react-native-async-storage/async-storage": join(example, "bundle", "async-storage.js"),
  };
  const config = await Metro.loadConfig({ config: join(example, "metro.config.cjs"), cwd: example });
  return Metro.mergeConfig(config, {
    resolver: {
      resolveRequest: (context, moduleName, platform) => {
        const standIn = standIns[moduleName];
        if (standIn) return { type: "sourceFile", filePath: standIn };
        // @streamboard/* as installed from the tarballs, not the workspace's links.
        if (moduleName.startsWith("@streamboard/")) return context.resolveRequest({ ...context, originModulePath: join(installed, "app.js") }, moduleName, platform);
        return context.resolveRequest(context, moduleName, platform);
      },
    },
    serializer: { getModulesRunBeforeMainModule: () => [] },
    cacheStores: [new FileStore({ root: join(work, "cache") })] as never,
    maxWorkers: 2,
    reporter: { update: () => {} },
  });
}

before(async () => {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  packAndInstall();
  const out = join(work, "bundle.js");
  const built = await Metro.runBuild(await metroConfig(), { entry: join(example, "bundle", "entry.tsx"), out, platform: "android", dev: false, minify: false, sourceMap: true });
  bundle = built.code;
  writeFileSync(join(work, "bundle.js"), bundle);
  sources = (JSON.parse(built.map) as { sources: string[] }).sources;
});

describe("the packages as npm pack makes them", () => {
  test("hold the built ES modules, CommonJS and declarations, and no sources or tests", () => {
    for (const name of ["@streamboard/client", "@streamboard/react"]) {
      const files = packed.get(name) ?? [];
      for (const file of ["package.json", "README.md", "dist/esm/index.js", "dist/esm/index.d.ts", "dist/cjs/index.js", "dist/cjs/index.d.ts", "dist/cjs/package.json"]) {
        assert.ok(files.includes(file), `${name} lacks ${file}: ${files.join(", ")}`);
      }
      assert.ok(!files.some((f) => /^(src|test|build)\//.test(f)), `${name} ships sources or tests: ${files.join(", ")}`);
    }
  });

  test("Metro took both from the tarballs, through their react-native export", () => {
    const from = (name: string) => sources.filter((s) => s.includes(`/installed/node_modules/${name}/`));
    for (const name of ["@streamboard/client", "@streamboard/react"]) {
      assert.ok(from(name).length > 0 && from(name).every((s) => s.includes("/dist/esm/")), `${name}: ${from(name).join(", ")}`);
    }
    assert.ok(!sources.some((s) => s.includes("/clients/typescript/src/") || s.includes("/clients/react/src/")), "no workspace sources in the bundle");
  });
});

describe("the Metro bundle, run in Node", () => {
  const at = serverFor("quick");

  test("follows a real board, moves a card on a tap, and goes offline and back with AppState", async () => {
    const writer = new Streamboard({ baseUrl: at.server.url, mode: "quick", WebSocket: WebSocket as unknown as WebSocketConstructor });
    const board = await writer.createBoard({ name: "Phone" });
    const login = await writer.createTask(board.id, { title: "Write the login screen" });
    await writer.createTask(board.id, { title: "Review the API", status: "in_progress" });

    // React Native has a WebSocket global; Node 20 has not.
    (globalThis as { WebSocket?: unknown }).WebSocket = WebSocket;
    runInThisContext(bundle, { filename: join(work, "bundle.js") });
    type Started = { texts(): string[]; press(title: string): void; unmount(): void };
    const app = (globalThis as unknown as { exampleApp: { start(url: string, id: string): Started } }).exampleApp.start(at.server.url, board.id);
    const appState = (globalThis as unknown as { exampleAppState: (state: string) => void }).exampleAppState;
    const shows = (...texts: string[]) => texts.every((t) => app.texts().includes(t));
    try {
      await eventually(() => shows("Phone · live", "Write the login screen", "Review the API"), "the board, live");

      await writer.createTask(board.id, { title: "Added elsewhere" });
      await eventually(() => shows("Added elsewhere"), "a card added by another client");

      app.press("Write the login screen");
      await eventually(() => app.texts().indexOf("Write the login screen") > app.texts().indexOf("finished"), "the card in the last column");
      await eventually(async () => (await writer.getBoard(board.id)).tasks.find((t) => t.id === login.id)?.status === "finished", "the move on the server");

      appState("background");
      await eventually(() => shows("Phone · offline"), "offline in the background");
      await writer.createTask(board.id, { title: "While in the background" });
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(!shows("While in the background"), "nothing arrives while offline");
      const back = Date.now();
      appState("active");
      await eventually(() => shows("Phone · live", "While in the background"), "live again, with what was written meanwhile");
      assert.ok(Date.now() - back < 2000, `back in ${Date.now() - back} ms`);
    } finally {
      app.unmount();
    }
  });
});

describe("the Metro bundle, killed in the middle of its outbox", () => {
  const at = serverFor("quick");
  const runner = join(dirname(fileURLToPath(import.meta.url)), "bundle-app.js");

  test("shows the board at once when started again, and every tap's move is applied once", async () => {
    const writer = new Streamboard({ baseUrl: at.server.url, mode: "quick", WebSocket: WebSocket as unknown as WebSocketConstructor });
    const board = await writer.createBoard({ name: "Train" });
    const titles = ["Card A", "Card B", "Card C"];
    for (const title of titles) await writer.createTask(board.id, { title });
    const proxy = await Proxy.start(at.server.url);
    const env = { SB_BUNDLE: join(work, "bundle.js"), SB_URL: proxy.url, SB_BOARD: board.id, SB_STORE: join(work, "storage.json") };
    const finished = (texts: string[] | undefined, title: string) => !!texts && texts.indexOf(title) > texts.indexOf("finished");
    try {
      // Three taps while writes cannot get through: all three stored.
      proxy.holdWrites = true;
      const first = new AppProcess(runner, { ...env, SB_TAPS: JSON.stringify(titles) });
      await eventually(() => storedWrites(env.SB_STORE).length === 3 && storedBoards(env.SB_STORE).includes(board.id), "three moves and the board stored");
      // The server applies the second move; the app dies before it hears so.
      let writes = 0;
      proxy.onAnswer = (seen) => {
        if (seen.method === "GET" || ++writes < 2) return "pass";
        first.kill();
        return "drop";
      };
      proxy.release();
      await first.exited;
      assert.equal(storedWrites(env.SB_STORE).length, 2, "B (unanswered) and C left");

      // Started again with no network: the stored board, with the moves still queued.
      proxy.onAnswer = () => "pass";
      proxy.holdAll = true;
      const before = proxy.seen.length;
      const second = new AppProcess(runner, env);
      await eventually(() => second.lines.some((line) => (line.texts as string[]).some((t) => t.startsWith("Train · "))), "the stored board on screen", 5000);
      const shown = second.lines.map((line) => line.texts as string[]).find((texts) => texts.some((t) => t.startsWith("Train · ")))!;
      assert.ok(finished(shown, "Card B") && finished(shown, "Card C"), `the queued moves shown: ${shown.join(" | ")}`);
      assert.equal(proxy.seen.length, before, "before any network");

      proxy.release();
      await eventually(() => {
        const texts = second.lines.at(-1)?.texts as string[] | undefined;
        return !!texts?.includes("Train · live") && titles.every((t) => finished(texts, t));
      }, "all three in the last column, live");
      await eventually(() => storedWrites(env.SB_STORE).length === 0, "the outbox empty");
      const resent = proxy.seen.slice(before).filter((s) => s.method !== "GET");
      assert.deepEqual(resent.map((s) => [s.method, s.replayed]), [["PATCH", true], ["PATCH", false]], "B answered from its first result, C sent once");
      const moves = (await writer.events(board.id, 0, 100)).events.filter((e) => e.type === "task.moved");
      assert.equal(moves.length, 3, "each tap's move applied once");
      assert.ok((await writer.getBoard(board.id)).tasks.every((t) => t.status === "finished"));
    } finally {
      AppProcess.killAll();
      await proxy.stop();
    }
  });
});
