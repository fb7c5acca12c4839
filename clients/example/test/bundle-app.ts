// The Metro bundle as an app process, for the restart test in
// metro.test.ts: evaluates the bundle in Node with the `ws` WebSocket and a
// file as AsyncStorage (so what it stored outlives a SIGKILL), starts the
// example App, taps the cards named in SB_TAPS once the board is live, and
// prints `{"texts": [...]}` whenever the screen changes, `{"tapped": n}`
// after tapping. Settings: SB_BUNDLE, SB_URL, SB_BOARD, SB_STORE, SB_TAPS
// (JSON, card titles).
import { readFileSync } from "node:fs";
import { runInThisContext } from "node:vm";
import WebSocket from "ws";

import { fileStorage } from "../../testing/file-storage.js";

type Screen = { texts(): string[]; press(title: string): void };
const env = (name: string) => process.env[name] ?? "";
const global = globalThis as unknown as Record<string, unknown>;

global.WebSocket = WebSocket;
global.exampleStorage = fileStorage(env("SB_STORE"));
runInThisContext(readFileSync(env("SB_BUNDLE"), "utf8"), { filename: env("SB_BUNDLE") });
const screen = (global.exampleApp as { start(url: string, id: string): Screen }).start(env("SB_URL"), env("SB_BOARD"));

const taps = JSON.parse(env("SB_TAPS") || "[]") as string[];
let shown = "";
setInterval(() => {
  const texts = screen.texts();
  const line = JSON.stringify({ texts });
  if (line !== shown) process.stdout.write(`${(shown = line)}\n`);
  if (taps.length && texts.some((t) => t.endsWith("· live"))) {
    const tapped = taps.splice(0);
    for (const title of tapped) screen.press(title);
    process.stdout.write(`${JSON.stringify({ tapped: tapped.length })}\n`);
  }
}, 20);
