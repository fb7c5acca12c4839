// The TypeScript packages' module graph (scripts/test-clients.sh runs
// `npm run check:graph`), as tests/module_graph.rs checks the Rust crates:
// no import cycle, type-only imports included, and each package uses
// another only through its public entry.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "An import cycle: modules that know each other's internals. Move what both need into a module of its own.",
      from: {},
      to: { circular: true },
    },
    {
      name: "sdk-stands-alone",
      severity: "error",
      comment: "The SDK imports nothing of the page, the React bindings or the example.",
      from: { path: "^typescript/src" },
      to: { path: "^(web|react|example)/" },
    },
    {
      name: "public-entry-only",
      severity: "error",
      comment: "Other packages import the SDK and the bindings by name, never their files.",
      from: { path: "^([^/]+)/" },
      to: { path: "^(typescript|react)/src/(?!index\\.ts$)", pathNot: "^$1/" },
    },
    {
      name: "no-unresolvable",
      severity: "error",
      comment: "React Native and AsyncStorage are the example app's platform, not installed here (its bundle test stands in for them).",
      from: {},
      to: { couldNotResolve: true, pathNot: "^(react-native|@react-native-async-storage/async-storage)$" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)(dist|build|node_modules)/" },
    // `import type` counts: a cycle of types is still a cycle.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.graph.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "types", "default"] },
  },
};
