// One fold, two languages: replays the golden fixtures the Rust domain
// tests write (clients/fixtures/, tests/fold_fixtures.rs) and expects the
// very board the server's fold made.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { fold, toBoard, type BoardEvent } from "../../src/index.js";
import { repoRoot } from "../../../testing/paths.js";

const dir = join(repoRoot, "clients", "fixtures");
const files = readdirSync(dir).filter((f) => f.endsWith(".json"));

test("there are fixtures to replay", () => {
  assert.ok(files.length >= 4, `fixtures in ${dir}: ${files.join(", ")}`);
});

for (const file of files) {
  test(`the fold gives the server's board: ${file}`, () => {
    const fixture = JSON.parse(readFileSync(join(dir, file), "utf8")) as {
      events: BoardEvent[];
      board: unknown;
      deleted: boolean;
    };
    const state = fold(fixture.events);
    assert.ok(state, "the history starts with board.created");
    assert.deepEqual(toBoard(state), fixture.board);
    assert.equal(state.deleted, fixture.deleted);
  });
}
