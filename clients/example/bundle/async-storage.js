// A stand-in for @react-native-async-storage/async-storage in the test
// bundle: what the test process gives as globalThis.exampleStorage (a file,
// to outlive the process), else memory.
const memory = new Map();
const fallback = {
  getItem: async (key) => memory.get(key) ?? null,
  setItem: async (key, value) => void memory.set(key, value),
  removeItem: async (key) => void memory.delete(key),
};

export default {
  getItem: (key) => (globalThis.exampleStorage ?? fallback).getItem(key),
  setItem: (key, value) => (globalThis.exampleStorage ?? fallback).setItem(key, value),
  removeItem: (key) => (globalThis.exampleStorage ?? fallback).removeItem(key),
};
