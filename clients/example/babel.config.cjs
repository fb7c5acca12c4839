// React Native's Babel preset, as `npx @react-native-community/cli init` writes it.
module.exports = { presets: ["module:@react-native/babel-preset"] };
