// The SDK's REST types are generated from docs/openapi.yaml. A change to
// the API description that src/openapi.ts does not follow fails here:
// run `npm run generate` in clients/ and commit the result.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { repoRoot } from "../../../testing/paths.js";

test("src/openapi.ts is what openapi-typescript makes of docs/openapi.yaml", () => {
  const out = mkdtempSync(join(tmpdir(), "sb-openapi-"));
  try {
    const generated = join(out, "openapi.ts");
    const bin = join(repoRoot, "clients", "node_modules", ".bin", "openapi-typescript");
    execFileSync(bin, [join(repoRoot, "docs", "openapi.yaml"), "-o", generated], { stdio: "pipe" });
    const committed = readFileSync(join(repoRoot, "clients", "typescript", "src", "openapi.ts"), "utf8");
    assert.ok(
      readFileSync(generated, "utf8") === committed,
      "clients/typescript/src/openapi.ts is stale: run `npm run generate` in clients/",
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
