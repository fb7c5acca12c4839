// Builds dist/ for the package in the working directory (@streamboard/client,
// @streamboard/react): ES modules (dist/esm: `import`, and Metro's
// `react-native` condition) and CommonJS (dist/cjs: `require`), each with
// its declarations, from its tsconfig.build.json and tsconfig.cjs.json.
// `npm run build` and `npm pack` (prepack) run it, so a tarball is complete.
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const here = process.cwd();
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
rmSync(join(here, "dist"), { recursive: true, force: true });
for (const config of ["tsconfig.build.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", join(here, config)], { stdio: "inherit" });
}
// The package is "type": "module"; this marks dist/cjs's .js files as CommonJS.
writeFileSync(join(here, "dist", "cjs", "package.json"), JSON.stringify({ type: "commonjs" }) + "\n");
console.log(`built ${join(here, "dist")} (esm, cjs)`);
