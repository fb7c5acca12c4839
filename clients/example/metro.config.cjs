// Metro for the example, as a React Native app inside this repository would
// have it: React Native's defaults (its Babel preset and transformer, the
// `react-native` export condition), and the clients' node_modules, where npm
// workspaces put the packages, watched.
const path = require("node:path");
const { getDefaultConfig, mergeConfig } = require("@react-native/metro-config");

const clients = path.resolve(__dirname, "..");
module.exports = mergeConfig(getDefaultConfig(__dirname), {
  watchFolders: [clients],
  resolver: { nodeModulesPaths: [path.join(clients, "node_modules")] },
});
