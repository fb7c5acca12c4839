// A KeyValueStorage (the AsyncStorage shape) kept in one JSON file, as an
// app's storage that outlives the process: each write replaces the file
// atomically before it resolves, so what a SIGKILL leaves is what was stored.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";

/** The SDK's `KeyValueStorage` (AsyncStorage's shape). */
export interface KeyValueStorage {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
  removeItem(key: string): Promise<void>;
}

export function fileStorage(path: string): KeyValueStorage {
  const load = (): Record<string, string> => (existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : {});
  const store = (values: Record<string, string>) => {
    writeFileSync(`${path}.tmp`, JSON.stringify(values));
    renameSync(`${path}.tmp`, path);
  };
  return {
    getItem: async (key) => load()[key] ?? null,
    setItem: async (key, value) => store({ ...load(), [key]: value }),
    removeItem: async (key) => {
      const { [key]: _gone, ...rest } = load();
      store(rest);
    },
  };
}

/** The writes in a stored outbox (for tests to look into the file). */
export function storedWrites(path: string): unknown[] {
  if (!existsSync(path)) return [];
  const values = JSON.parse(readFileSync(path, "utf8")) as Record<string, string>;
  const outbox = Object.entries(values).find(([key]) => key.endsWith(":outbox"));
  return outbox ? (JSON.parse(outbox[1]) as { writes: unknown[] }).writes : [];
}

/** The boards a storage file holds, by id. */
export function storedBoards(path: string): string[] {
  if (!existsSync(path)) return [];
  return Object.keys(JSON.parse(readFileSync(path, "utf8")) as object).flatMap((key) => /:board:(.+)$/.exec(key)?.slice(1) ?? []);
}

/** A KeyValueStorage in memory, for tests within one process. */
export function memoryStorage(): KeyValueStorage & { values: Map<string, string> } {
  const values = new Map<string, string>();
  return {
    values,
    getItem: async (key) => values.get(key) ?? null,
    setItem: async (key, value) => void values.set(key, value),
    removeItem: async (key) => void values.delete(key),
  };
}
