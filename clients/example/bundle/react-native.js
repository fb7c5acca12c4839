// Stand-ins for React Native in the test bundle, so it renders in Node's
// test renderer: host components by name, and an AppState the test drives
// (globalThis.exampleAppState("background" | "active")).
const listeners = new Set();

export const View = "View";
export const Text = "Text";
export const Pressable = "Pressable";

export const AppState = {
  currentState: "active",
  addEventListener(_type, listener) {
    listeners.add(listener);
    return { remove: () => listeners.delete(listener) };
  },
};

globalThis.exampleAppState = (state) => {
  AppState.currentState = state;
  for (const listener of listeners) listener(state);
};
