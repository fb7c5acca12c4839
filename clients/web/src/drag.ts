// Drag and drop of a card, with pointer events: mouse and pen start on a
// small movement, touch on a long press (so a swipe still scrolls the page).
// While a card is held near an edge of the screen or of the row of columns,
// that scrolls, so a column off screen can be reached.

/** Where a card was dropped: a column, before another card or at its end. */
export interface DropTarget {
  status: string;
  before?: string;
}

/** How near an edge (px) scrolling starts, and its top speed (px a frame). */
const EDGE = 56;
const SPEED = 18;
/** A touch held this long (ms) without moving picks the card up. */
const LONG_PRESS_MS = 250;

export function startDrag(start: PointerEvent, card: HTMLElement, taskId: string, hooks: { lifted(): void; dropped(target: DropTarget | null): void }): void {
  if (start.button !== 0 || (start.target as HTMLElement).closest("button, input, textarea, select, a")) return;
  const touch = start.pointerType === "touch";
  let lifted = false;
  let pointer = { x: start.clientX, y: start.clientY };
  let target: HTMLElement | null = null;
  let placeholder: HTMLElement | null = null;
  let frame = 0;
  let offset = { x: 0, y: 0 };
  const press = touch ? setTimeout(() => lift(), LONG_PRESS_MS) : undefined;

  function lift(): void {
    lifted = true;
    const box = card.getBoundingClientRect();
    offset = { x: pointer.x - box.left, y: pointer.y - box.top };
    placeholder = document.createElement("div");
    placeholder.className = "placeholder";
    placeholder.style.height = `${box.height}px`;
    card.after(placeholder);
    card.classList.add("dragging");
    card.style.width = `${box.width}px`;
    follow();
    hooks.lifted();
    frame = requestAnimationFrame(scroll);
  }

  function follow(): void {
    card.style.left = `${pointer.x - offset.x}px`;
    card.style.top = `${pointer.y - offset.y}px`;
    const column = columnAt(pointer.x, pointer.y);
    if (column !== target) {
      target?.classList.remove("target");
      column?.classList.add("target");
      target = column;
    }
  }

  /** Scrolls while the card is held near an edge; the column under it follows. */
  function scroll(): void {
    const row = card.closest(".board")?.querySelector<HTMLElement>(".columns");
    const speed = (distance: number) => (distance < EDGE ? Math.ceil(((EDGE - Math.max(distance, 0)) / EDGE) * SPEED) : 0);
    const down = speed(innerHeight - pointer.y) - speed(pointer.y);
    if (down) scrollBy(0, down);
    if (row) {
      const box = row.getBoundingClientRect();
      const right = speed(Math.min(box.right, innerWidth) - pointer.x) - speed(pointer.x - Math.max(box.left, 0));
      if (right) row.scrollLeft += right;
    }
    follow();
    frame = requestAnimationFrame(scroll);
  }

  const move = (event: PointerEvent) => {
    pointer = { x: event.clientX, y: event.clientY };
    if (!lifted) {
      const far = Math.hypot(event.clientX - start.clientX, event.clientY - start.clientY) > (touch ? 8 : 5);
      if (far && touch) return end(null); // a swipe: the page scrolls
      if (far) lift();
      return;
    }
    follow();
  };
  // While a touch drag is on, the finger must not scroll the page itself.
  const hold = (event: TouchEvent) => lifted && event.preventDefault();
  const up = (event: PointerEvent) => end(event.type === "pointerup" ? event : null);

  function end(event: PointerEvent | null): void {
    clearTimeout(press);
    cancelAnimationFrame(frame);
    removeEventListener("pointermove", move);
    removeEventListener("pointerup", up);
    removeEventListener("pointercancel", up);
    removeEventListener("touchmove", hold);
    if (!lifted) return;
    target?.classList.remove("target");
    placeholder?.remove();
    card.classList.remove("dragging");
    card.style.cssText = "";
    // The click that follows a mouse drag's pointerup must not open the card.
    const swallow = (click: Event) => click.stopPropagation();
    addEventListener("click", swallow, { capture: true });
    setTimeout(() => removeEventListener("click", swallow, { capture: true }), 0);
    hooks.dropped(event ? dropAt(event.clientX, event.clientY, taskId) : null);
  }

  addEventListener("pointermove", move);
  addEventListener("pointerup", up);
  addEventListener("pointercancel", up);
  addEventListener("touchmove", hold, { passive: false });
}

function columnAt(x: number, y: number): HTMLElement | null {
  const found = document.elementFromPoint(x, y);
  return found instanceof HTMLElement ? found.closest<HTMLElement>("[data-column]") : null;
}

/** The column under (x, y), and the card the dropped one goes before. */
function dropAt(x: number, y: number, taskId: string): DropTarget | null {
  const column = columnAt(x, y);
  if (!column) return null;
  const before = [...column.querySelectorAll<HTMLElement>("[data-task-id]")]
    .filter((other) => other.dataset.taskId !== taskId)
    .find((other) => {
      const box = other.getBoundingClientRect();
      return y < box.top + box.height / 2;
    });
  return before ? { status: column.dataset.column!, before: before.dataset.taskId! } : { status: column.dataset.column! };
}
