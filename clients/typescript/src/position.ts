// Where a dropped card goes: a position between its new neighbours, so no
// other card is renumbered (the server rebalances a column whose gaps run
// out; see core/src/domain/position.rs).
import { columnTasks, type BoardState } from "./fold.js";

/** Distance between neighbours at a column's ends (the server's `STEP`). */
export const STEP = 1024;

/** Where to drop `taskId` in column `status`: before the task `before`,
 * after the task `after`, or (neither) at the end of the column. */
export interface Drop {
  status: string;
  before?: string;
  after?: string;
}

/** The position for a drop, computed from the board as this client sees it. */
export function positionFor(board: BoardState, taskId: string, drop: Drop): number {
  const others = columnTasks(board, drop.status).filter((t) => t.id !== taskId);
  const at = (id: string) => {
    const index = others.findIndex((t) => t.id === id);
    if (index === -1) throw new Error(`task ${id} is not in column ${drop.status}`);
    return index;
  };
  if (drop.before !== undefined) {
    const index = at(drop.before);
    const next = others[index]!.position;
    const previous = others[index - 1];
    return previous ? (previous.position + next) / 2 : next - STEP;
  }
  if (drop.after !== undefined) {
    const index = at(drop.after);
    const previous = others[index]!.position;
    const next = others[index + 1];
    return next ? (previous + next.position) / 2 : Math.floor(previous + STEP);
  }
  const last = others[others.length - 1];
  return last ? Math.floor(last.position + STEP) : STEP;
}
