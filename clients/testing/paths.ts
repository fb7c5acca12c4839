import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (tests run from build/test/..., sources from test/...). */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const parent = dirname(dir);
    if (dir.endsWith("/clients")) return parent;
    if (parent === dir) throw new Error("not inside the repository's clients/ folder");
    dir = parent;
  }
}

export const repoRoot = resolve(findRoot());
