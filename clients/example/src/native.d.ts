// The parts of React Native and AsyncStorage the example uses, for the
// typecheck here (this repository installs neither; a React Native app has
// their own types). The bundle test gives Metro stand-ins of the same shape.
declare module "react-native" {
  import type { ComponentType, ReactNode } from "react";
  export const View: ComponentType<{ children?: ReactNode }>;
  export const Text: ComponentType<{ children?: ReactNode; style?: object }>;
  export const Pressable: ComponentType<{ children?: ReactNode; onPress?: () => void }>;
  export const AppState: {
    addEventListener(type: "change", listener: (state: "active" | "background" | "inactive") => void): { remove(): void };
  };
}

declare module "@react-native-async-storage/async-storage" {
  const AsyncStorage: {
    getItem(key: string): Promise<string | null>;
    setItem(key: string, value: string): Promise<void>;
    removeItem(key: string): Promise<void>;
  };
  export default AsyncStorage;
}
