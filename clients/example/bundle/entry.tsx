// The test bundle's entry: the example App rendered by React's test renderer
// (bundled with it, so there is one React), driven through
// globalThis.exampleApp by the test that evaluates the bundle in Node.
import { create, type ReactTestRendererJSON } from "react-test-renderer";

import { App } from "../src/App";

(globalThis as { IS_REACT_NATIVE_TEST_ENVIRONMENT?: boolean }).IS_REACT_NATIVE_TEST_ENVIRONMENT = true;

type Node = ReactTestRendererJSON | string;

/** Every text the screen shows, in order. */
function texts(node: Node | Node[] | null): string[] {
  if (node === null) return [];
  if (typeof node === "string") return [node];
  if (Array.isArray(node)) return node.flatMap(texts);
  if (node.type === "Text") return [(node.children ?? []).filter((c): c is string => typeof c === "string").join("")];
  return (node.children ?? []).flatMap(texts);
}

(globalThis as Record<string, unknown>).exampleApp = {
  start(baseUrl: string, boardId: string) {
    const renderer = create(<App baseUrl={baseUrl} boardId={boardId} />);
    return {
      texts: () => texts(renderer.toJSON()),
      /** Taps the card titled `title`. */
      press(title: string) {
        const card = renderer.root
          .findAll((n) => (n.type as unknown) === "Pressable")
          .find((n) => n.findAll((t) => (t.type as unknown) === "Text").some((t) => t.props.children === title));
        if (!card) throw new Error(`no card "${title}"`);
        card.props.onPress();
      },
      unmount: () => renderer.unmount(),
    };
  },
};
