// Builds the board page into dist/: index.html, assets/app.js (the page and
// the SDK, bundled by esbuild) and assets/style.css. The server serves dist/
// (setting server.web_dir); nothing here runs at the server's run time.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "assets"), { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.ts")],
  outfile: join(dist, "assets", "app.js"),
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  sourcemap: false,
  // The SDK from source: the page needs no separate SDK build first.
  alias: { "@streamboard/client": join(here, "..", "typescript", "src", "index.ts") },
  logLevel: "warning",
});
cpSync(join(here, "src", "index.html"), join(dist, "index.html"));
cpSync(join(here, "src", "style.css"), join(dist, "assets", "style.css"));
console.log(`built ${dist}`);
