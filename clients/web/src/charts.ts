// The Insights charts, drawn from one flow report (docs/ANALYTICS.md says
// what each number is): the cumulative flow, cycle times with their p50 and
// p85, throughput per ISO week, and the age of the work in progress. Each
// mark carries its numbers as data attributes (`data-column`, `data-day`,
// `data-count`, `data-task-id`, ...) and a title, so tests and people can
// read them back.
import type { FlowReport } from "@streamboard/client";

import { label } from "./dom.js";
import { bottomLabels, chart, frame, leftAxis, scale, svg, ticks, type Frame } from "./svg.js";

export const DAY = 86_400;

/** One colour per column, the last (done) green, in the board's order. */
const PALETTE = ["#6b778c", "#0c66e4", "#e56910", "#6e5dc6", "#c9372c", "#1d7f8c", "#946f00"];
const DONE = "#22a06b";
const ACCENT = "#0c66e4";

export function columnColours(columns: string[]): Map<string, string> {
  return new Map(columns.map((c, i) => [c, i === columns.length - 1 && i > 0 ? DONE : PALETTE[i % PALETTE.length]!]));
}

/** A duration as people read it: hours under a day, else days. */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < DAY ? `${(seconds / 3600).toFixed(1)} h` : `${(seconds / DAY).toFixed(1)} d`;
}

/** `2026-03-02` -> `2 Mar` (the report's days are UTC days). */
export function shortDate(date: string): string {
  return new Date(`${date.slice(0, 10)}T00:00:00Z`).toLocaleDateString(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
}

const fixed = (v: number) => v.toFixed(1);
const path = (points: [number, number][]) => points.map(([x, y], i) => `${i ? "L" : "M"}${fixed(x)},${fixed(y)}`).join("") + "Z";

/** Tasks per column at the end of each day, stacked (the last column at
 * the bottom); each (day, column) is a mark with its count. */
export function cumulativeFlow(report: FlowReport, width: number, colours: Map<string, string>): SVGSVGElement {
  const { columns, days } = report.cumulative_flow;
  const f = frame(width, 240, 36);
  const totals = days.map((d) => columns.reduce((sum, c) => sum + (d.tasks[c] ?? 0), 0));
  const yTicks = ticks(Math.max(1, ...totals), 4, true);
  const y = scale(0, yTicks.at(-1)!, f.bottom, f.top);
  // One day: a band across the plot; more: a point per day.
  const xs = days.length > 1 ? days.map((_, i) => scale(0, days.length - 1, f.left, f.right)(i)) : [f.left, f.right];
  const step = days.length > 1 ? (f.right - f.left) / (days.length - 1) : f.right - f.left;
  const lower = days.map(() => 0);
  const layers = [...columns].reverse().map((column) => {
    const bottom = [...lower];
    days.forEach((d, i) => (lower[i]! += d.tasks[column] ?? 0));
    const top = [...lower];
    const at = (values: number[], i: number) => values[Math.min(i, values.length - 1)]!;
    const edge = xs.map((x, i): [number, number] => [x, y(at(top, i))]);
    const base = xs.map((x, i): [number, number] => [x, y(at(bottom, i))]).reverse();
    const marks = days.map((d, i) => {
      const left = Math.max(f.left, xs[i]! - step / 2);
      const right = days.length > 1 ? Math.min(f.right, xs[i]! + step / 2) : f.right;
      const count = d.tasks[column] ?? 0;
      return svg("rect", { class: "mark", x: left, width: right - left, y: y(top[i]!), height: y(bottom[i]!) - y(top[i]!), "data-day": d.date, "data-column": column, "data-count": count },
        svg("title", {}, `${label(column)}: ${count} on ${shortDate(d.date)}`));
    });
    return svg("g", { "data-column": column }, svg("path", { class: "area", d: path([...edge, ...base]), fill: colours.get(column), "data-column": column }), ...marks);
  });
  const last = days.at(-1);
  const summary = last ? `${columns.map((c) => `${label(c)} ${last.tasks[c] ?? 0}`).join(", ")} on ${shortDate(last.date)}` : "no days";
  return chart(f, "cumulative-flow", `Cumulative flow over ${days.length} days: ${summary}`,
    leftAxis(f, yTicks, y),
    ...layers,
    bottomLabels(f, days.map((d, i) => [xs[i]!, shortDate(d.date)])),
  );
}

/** Each finished task's cycle time by the time it finished, with the
 * range's p50 and p85 as lines. */
export function cycleTimes(report: FlowReport, width: number): SVGSVGElement {
  const tasks = report.finished.tasks;
  const { p50_seconds: p50, p85_seconds: p85, p95_seconds: p95 } = report.cycle_time;
  const f = frame(width, 240);
  const yTicks = ticks(Math.max(1, ...tasks.map((t) => t.cycle_time_seconds / DAY), (p95 ?? 0) / DAY));
  const y = scale(0, yTicks.at(-1)!, f.bottom, f.top);
  const x = scale(Date.parse(report.from), Date.parse(report.to), f.left + 6, f.right - 6);
  const dots = tasks.map((t) =>
    svg("circle", { class: "dot", fill: ACCENT, cx: x(Date.parse(t.finished_at)), cy: y(t.cycle_time_seconds / DAY), r: 5, "data-task-id": t.task_id, "data-cycle-seconds": t.cycle_time_seconds, "data-cycle-days": t.cycle_time_seconds / DAY, "data-finished-at": t.finished_at },
      svg("title", {}, `${t.title}: ${duration(t.cycle_time_seconds)}, finished ${shortDate(t.finished_at)}`)),
  );
  const lines = ([[50, p50], [85, p85]] as const).flatMap(([p, seconds]) =>
    seconds === null ? [] : [svg("g", { class: `percentile p${p}`, "data-percentile": p, "data-seconds": seconds },
      svg("line", { x1: f.left, x2: f.right, y1: y(seconds / DAY), y2: y(seconds / DAY) }),
      // p50 under its line, p85 over it: close lines keep their labels apart.
      svg("text", { x: f.right - 2, y: y(seconds / DAY) + (p === 50 ? 13 : -4), "text-anchor": "end" }, `p${p} ${duration(seconds)}`))],
  );
  const days = report.cumulative_flow.days.map((d): [number, string] => [x(Math.max(Date.parse(report.from), Date.parse(`${d.date}T00:00:00Z`))), shortDate(d.date)]);
  const summary = tasks.length ? `${report.cycle_time.count} tasks finished; p50 ${duration(p50)}, p85 ${duration(p85)}` : "no task finished in this range";
  return chart(f, "cycle-time", `Cycle time: ${summary}`, leftAxis(f, yTicks, y, "d"), ...lines, ...dots, bottomLabels(f, days), ...(tasks.length ? [] : [empty(f, "Nothing finished in this range")]));
}

/** Tasks finished per ISO week; a week cut by the range's ends is paler. */
export function weeklyThroughput(report: FlowReport, width: number): SVGSVGElement {
  const weeks = report.throughput.weeks;
  const f = frame(width, 200, 32);
  const yTicks = ticks(Math.max(1, ...weeks.map((w) => w.finished)), 4, true);
  const y = scale(0, yTicks.at(-1)!, f.bottom, f.top);
  const band = (f.right - f.left) / Math.max(1, weeks.length);
  const bar = Math.min(48, band * 0.7);
  const bars = weeks.map((w, i) => {
    const x = f.left + i * band + (band - bar) / 2;
    return svg("g", {},
      svg("rect", { class: w.days_in_range < 7 ? "bar partial" : "bar", x, width: bar, y: y(w.finished), height: f.bottom - y(w.finished), "data-week": w.week, "data-start": w.start, "data-count": w.finished, "data-days-in-range": w.days_in_range },
        svg("title", {}, `${w.week} (from ${shortDate(w.start)}, ${w.days_in_range} of 7 days in range): ${w.finished} finished`)),
      band >= 18 && svg("text", { class: "value", x: x + bar / 2, y: y(w.finished) - 4, "text-anchor": "middle" }, String(w.finished)));
  });
  const summary = weeks.map((w) => `${w.week} ${w.finished}`).join(", ");
  return chart(f, "throughput", `Throughput per week: ${summary}`, leftAxis(f, yTicks, y), ...bars,
    bottomLabels(f, weeks.map((w, i) => [f.left + (i + 0.5) * band, w.week.slice(5)]), 30));
}

/** Each started, unfinished task's age in its column, against the range's
 * p85 cycle time (older: drawn in red). */
export function agingWork(report: FlowReport, width: number, colours: Map<string, string>): SVGSVGElement {
  const { tasks, p85_cycle_time_seconds: p85 } = report.aging;
  const columns = report.columns.slice(1, -1);
  for (const t of tasks) if (!columns.includes(t.column)) columns.push(t.column);
  const f = frame(width, 240);
  const yTicks = ticks(Math.max(1, ...tasks.map((t) => t.age_seconds / DAY), (p85 ?? 0) / DAY));
  const y = scale(0, yTicks.at(-1)!, f.bottom, f.top);
  const band = (f.right - f.left) / Math.max(1, columns.length);
  const seen = new Map<string, number>();
  const dots = tasks.map((t) => {
    // Side by side within the column's band, five abreast.
    const n = seen.get(t.column) ?? 0;
    seen.set(t.column, n + 1);
    const cx = f.left + (columns.indexOf(t.column) + 0.5) * band + ((n % 5) - 2) * Math.min(10, band / 6);
    return svg("circle", { class: t.over_p85 ? "dot over" : "dot", cx, cy: y(t.age_seconds / DAY), r: 5, fill: t.over_p85 ? undefined : colours.get(t.column), "data-task-id": t.task_id, "data-column": t.column, "data-age-seconds": t.age_seconds, "data-age-days": t.age_seconds / DAY, "data-over-p85": t.over_p85 },
      svg("title", {}, `${t.title}: ${duration(t.age_seconds)} in progress, now in ${label(t.column)}${t.over_p85 ? ", older than the p85 cycle time" : ""}`));
  });
  const line = p85 === null ? [] : [svg("g", { class: "percentile p85", "data-percentile": 85, "data-seconds": p85 },
    svg("line", { x1: f.left, x2: f.right, y1: y(p85 / DAY), y2: y(p85 / DAY) }),
    svg("text", { x: f.right - 2, y: y(p85 / DAY) - 4, "text-anchor": "end" }, `p85 cycle ${duration(p85)}`))];
  const over = tasks.filter((t) => t.over_p85).length;
  const summary = tasks.length ? `${report.aging.count} tasks in progress, ${over} older than the p85 cycle time` : "no work in progress";
  return chart(f, "aging", `Aging work in progress: ${summary}`, leftAxis(f, yTicks, y, "d"), ...line, ...dots,
    bottomLabels(f, columns.map((c, i) => [f.left + (i + 0.5) * band, label(c)]), 40), ...(tasks.length ? [] : [empty(f, "No work in progress")]));
}

function empty(f: Frame, text: string): SVGTextElement {
  return svg("text", { class: "empty", x: (f.left + f.right) / 2, y: (f.top + f.bottom) / 2, "text-anchor": "middle" }, text);
}
