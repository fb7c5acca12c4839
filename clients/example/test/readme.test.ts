// The SDK README's React Native example is this app's code (the bundle test
// runs that): each ```tsx block headed `// <File>.tsx` is src/<File>.tsx,
// comments and blank lines aside.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { repoRoot } from "../../testing/paths.js";

const code = (text: string) =>
  text
    .split("\n")
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() !== "" && !line.trim().startsWith("//"))
    .join("\n");

test("the SDK README's React Native example is clients/example/src", () => {
  const readme = readFileSync(join(repoRoot, "clients", "typescript", "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```tsx\n\/\/ (\w+\.tsx)\n([\s\S]*?)```/g)];
  assert.deepEqual(blocks.map((b) => b[1]).sort(), ["App.tsx", "BoardScreen.tsx"]);
  for (const [, file, shown] of blocks) {
    assert.equal(code(shown!), code(readFileSync(join(repoRoot, "clients", "example", "src", file!), "utf8")), `README's ${file} differs from clients/example/src/${file}`);
  }
});
