// An app as a process of its own, for the tests that kill one with SIGKILL
// in the middle of its work and start it again: a Node script that prints
// one JSON object a line on stdout, kept here as it arrives.
import { spawn, type ChildProcess } from "node:child_process";

import { eventually } from "./server.js";

export class AppProcess {
  /** Every app still running, for a test's `finally` to kill. */
  static readonly running = new Set<AppProcess>();
  readonly lines: Record<string, any>[] = [];
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;

  constructor(script: string, env: Record<string, string>) {
    this.child = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
    let buffer = "";
    this.child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let end = buffer.indexOf("\n"); end !== -1; end = buffer.indexOf("\n")) {
        this.lines.push(JSON.parse(buffer.slice(0, end)));
        buffer = buffer.slice(end + 1);
      }
    });
    this.exited = new Promise((resolve) => this.child.once("exit", () => resolve()));
    AppProcess.running.add(this);
    void this.exited.then(() => AppProcess.running.delete(this));
  }

  /** The first line with `key`. */
  async first(key: string, ms = 10_000): Promise<Record<string, any>> {
    await eventually(() => this.lines.some((line) => key in line), `the app to say ${key}`, ms);
    return this.lines.find((line) => key in line)!;
  }

  kill(): void {
    this.child.kill("SIGKILL");
  }

  static killAll(): void {
    for (const app of AppProcess.running) app.kill();
  }
}
