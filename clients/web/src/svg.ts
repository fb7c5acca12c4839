// Hand-drawn SVG for the Insights charts: an element builder, linear
// scales, round axis ticks, and the frame (axes with labels) each chart
// draws in. Charts are drawn at the pixel width they get, so their text
// stays readable on a phone instead of shrinking with a viewBox.
const NS = "http://www.w3.org/2000/svg";

type Value = string | number | boolean | undefined;

/** `svg("rect", {x: 1, "data-day": "2026-03-02"}, child)`: coordinates
 * rounded to 0.1 px (`data-*` values kept exact), `false`/`undefined`
 * attributes left out. */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, Value> = {}, ...children: (Node | string | null | false)[]): SVGElementTagNameMap[K] {
  const element = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    const rounded = typeof value === "number" && !name.startsWith("data-") ? Math.round(value * 10) / 10 : value;
    element.setAttribute(name, String(rounded));
  }
  element.append(...children.filter((c): c is Node | string => c !== null && c !== false));
  return element;
}

/** A linear map of `[d0, d1]` onto `[r0, r1]` (a flat domain maps to `r0`). */
export function scale(d0: number, d1: number, r0: number, r1: number): (v: number) => number {
  const span = d1 - d0;
  return (v) => (span === 0 ? r0 : r0 + ((v - d0) / span) * (r1 - r0));
}

/** Round ticks from 0 to at least `max`, about `count` of them: steps of
 * 1, 2 or 5 times a power of ten (whole numbers when `whole`). */
export function ticks(max: number, count = 4, whole = false): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw;
  if (whole) step = Math.max(1, Math.round(step));
  const top = Math.ceil(max / step) * step;
  return Array.from({ length: Math.round(top / step) + 1 }, (_, i) => Math.round(i * step * 1e6) / 1e6);
}

/** The plot area of a chart of `width` x `height` px, inside its margins. */
export interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export function frame(width: number, height: number, left = 40): Frame {
  return { width, height, left, right: width - 10, top: 12, bottom: height - 26 };
}

/** The chart's root: an image named by `label` (its data is in a table or
 * the marks' titles too), `width` px wide. */
export function chart(f: Frame, name: string, label: string, ...children: Node[]): SVGSVGElement {
  return svg("svg", { class: "chart", "data-chart": name, width: f.width, height: f.height, viewBox: `0 0 ${f.width} ${f.height}`, role: "img", "aria-label": label }, ...children);
}

/** Horizontal grid lines and labels at `values` on the left axis (`y` maps
 * a value to its height), with the axis' `unit` after the top label. */
export function leftAxis(f: Frame, values: number[], y: (v: number) => number, unit = ""): SVGGElement {
  const top = values.at(-1);
  return svg("g", { class: "axis", "aria-hidden": "true" },
    ...values.flatMap((v) => [
      svg("line", { class: "grid", x1: f.left, x2: f.right, y1: y(v), y2: y(v) }),
      svg("text", { x: f.left - 5, y: y(v) + 4, "text-anchor": "end" }, `${v}${v === top && unit ? ` ${unit}` : ""}`),
    ]),
  );
}

/** Labels under the plot at `at` positions (x, text); fewer on a narrow chart. */
export function bottomLabels(f: Frame, at: [number, string][], minGap = 56): SVGGElement {
  const shown: [number, string][] = [];
  for (const label of at) {
    const last = shown.at(-1);
    if (!last || label[0] - last[0] >= minGap) shown.push(label);
  }
  return svg("g", { class: "axis", "aria-hidden": "true" },
    ...shown.map(([x, text]) => svg("text", { x: Math.min(Math.max(x, f.left + 14), f.right - 14), y: f.bottom + 17, "text-anchor": "middle" }, text)),
  );
}
