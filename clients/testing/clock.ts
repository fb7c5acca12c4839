// The server's test clock (`testing.clock_file`, docs/CONFIGURATION.md):
// while the file holds an RFC 3339 time, the server stamps writes with it
// and analytics take it as now, so a test writes weeks of a board's history
// in a second, at times it knows.
import { randomUUID } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";

export class TestClock {
  readonly path = join(tmpdir(), `sb-clients-clock-${randomUUID()}`);

  /** A clock for a `describe` block (or a test file), removed after it. */
  static forTests(): TestClock {
    const clock = new TestClock();
    after(() => clock.remove());
    return clock;
  }

  /** From now on the server's time is `at`. */
  set(at: string | Date): void {
    writeFileSync(this.path, typeof at === "string" ? at : at.toISOString());
  }

  /** The server setting that makes it read this clock. */
  get settings(): Record<string, string> {
    return { STREAMBOARD__TESTING__CLOCK_FILE: this.path };
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}
