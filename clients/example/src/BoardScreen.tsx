import { Pressable, Text, View } from "react-native";
import { useBoard, useStreamboard } from "@streamboard/react";

// One board, live: a tap moves a card to the last column. The move shows at
// once; a refused one comes back with the server's reason.
export function BoardScreen({ boardId }: { boardId: string }) {
  const sb = useStreamboard();
  const { board, connection, error, rollback } = useBoard(boardId);
  if (error) return <Text>This board cannot be opened: {(error as Error).message}</Text>;
  if (!board) return <Text>{connection}…</Text>;
  const last = board.columns[board.columns.length - 1]!;
  return (
    <View>
      <Text>
        {board.name} · {connection}
      </Text>
      {rollback && <Text>Move undone: {(rollback.error as Error).message}</Text>}
      {board.columns.map((status) => (
        <View key={status}>
          <Text style={{ fontWeight: "bold" }}>{status}</Text>
          {board.tasks
            .filter((task) => task.status === status)
            .map((task) => (
              <Pressable key={task.id} onPress={() => sb.moveTask(board.id, task.id, { status: last }).catch(() => {})}>
                <Text>{task.title}</Text>
              </Pressable>
            ))}
        </View>
      ))}
    </View>
  );
}
