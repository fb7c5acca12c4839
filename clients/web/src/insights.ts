// A board's Insights (`/?board=<id>&view=insights`): its flow metrics from
// `sb.analytics` (summary, cumulative flow, cycle times, weekly throughput,
// aging work, the forecast) and the history slider, both live: the view
// follows the board, and each change reads the metrics again (a moment
// later, once per burst of changes) and moves the slider's end.
import type { Board, FlowReport } from "@streamboard/client";

import { agingWork, columnColours, cumulativeFlow, cycleTimes, DAY, duration, shortDate, weeklyThroughput } from "./charts.js";
import { byId, describe, el, label } from "./dom.js";
import { HistorySlider } from "./history.js";
import { boardUrl, sb } from "./session.js";
import { showConnection, showUnavailable } from "./status.js";

/** How long after a change the metrics are read again. */
const REFRESH_MS = 400;
/** The ranges offered, in days; the server's default is 30. */
const RANGES = [7, 14, 30, 90];

export function showInsights(boardId: string): void {
  new InsightsView(boardId).start();
}

class InsightsView {
  private readonly root = el("div", { class: "insights", "data-insights": "" });
  private readonly name = el("span", { "data-board-name": "" });
  private readonly range = el("select", { id: "insights-range", onchange: () => this.refresh() }, ...RANGES.map((d) => el("option", { value: String(d), selected: d === 30 }, `Last ${d} days`)));
  private readonly period = el("span", { class: "hint", id: "insights-period" });
  private readonly summary = el("dl", { class: "summary", "aria-label": "Summary" });
  private readonly figures = {
    flow: figure("cumulative-flow", "Cumulative flow", "Tasks in each column at the end of each day"),
    cycle: figure("cycle-time", "Cycle time", "Each finished task, by when it finished, with the p50 and p85"),
    throughput: figure("throughput", "Throughput", "Tasks finished per ISO week"),
    aging: figure("aging", "Aging work in progress", "Age of each started task, against the p85 cycle time"),
  };
  private readonly forecast = el("section", { class: "figure", "data-figure": "forecast", "aria-labelledby": "forecast-heading" });
  private readonly error = el("p", { class: "error", role: "alert" });
  private readonly slider: HistorySlider;
  private report: FlowReport | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private reading = false;
  private again = false;

  constructor(private readonly boardId: string) {
    this.slider = new HistorySlider(boardId);
  }

  start(): void {
    this.root.append(
      el("div", { class: "board-head" },
        el("h1", {}, this.name, el("span", { class: "muted" }, " · Insights")),
        el("a", { class: "button", href: boardUrl(this.boardId), "data-back": "" }, "Board")),
      el("div", { class: "range" }, el("label", { for: "insights-range" }, "Range"), this.range, this.period),
      this.error,
      this.summary,
      el("div", { class: "figures" }, ...Object.values(this.figures).map((f) => f.element), this.forecast),
      this.slider.element,
    );
    byId("app").replaceChildren(this.root);
    sb.follow(this.boardId, (board) => this.changed(board), { onState: showConnection, onError: showUnavailable });
    let resized: ReturnType<typeof setTimeout> | undefined;
    addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(() => this.draw(), 150);
    });
  }

  private changed(board: Board | null): void {
    if (!board) return;
    this.name.textContent = board.name;
    document.title = `${board.name} · Insights · Streamboard`;
    this.slider.update(board);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), this.report ? REFRESH_MS : 0);
  }

  /** Reads the metrics; a change during a read reads them once more after it. */
  private async refresh(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    try {
      const days = Number(this.range.value);
      // The server's clock is what "now" means: ranges other than its
      // default end at the `to` of the last answer.
      const to = this.report ? Date.parse(this.report.to) : NaN;
      const range = days === 30 || Number.isNaN(to) ? {} : { from: new Date(to - days * DAY * 1000) };
      this.report = await sb.analytics(this.boardId, range);
      this.error.textContent = "";
      this.draw();
    } catch (error) {
      this.error.textContent = `The metrics cannot be read: ${describe(error)}`;
    } finally {
      this.reading = false;
      if (this.again) {
        this.again = false;
        void this.refresh();
      }
    }
  }

  private draw(): void {
    const report = this.report;
    if (!report) return;
    Object.assign(this.root.dataset, { reportVersion: String(report.version), from: report.from, to: report.to });
    this.period.textContent = `${shortDate(report.from)} – ${shortDate(report.to)}, as of version ${report.version}`;
    this.summary.replaceChildren(
      stat("In progress", String(report.aging.count), "in-progress"),
      stat("Finished", String(report.throughput.total), "finished"),
      stat("Cycle time p50 / p85", `${duration(report.cycle_time.p50_seconds)} / ${duration(report.cycle_time.p85_seconds)}`, "cycle-time"),
      stat("Lead time p85", duration(report.lead_time.p85_seconds), "lead-time"),
    );
    const colours = columnColours(report.cumulative_flow.columns);
    const { flow, cycle, throughput, aging } = this.figures;
    flow.draw(cumulativeFlow(report, flow.width(), colours), legend(report, colours));
    cycle.draw(cycleTimes(report, cycle.width()));
    throughput.draw(weeklyThroughput(report, throughput.width()));
    aging.draw(agingWork(report, aging.width(), colours));
    this.forecast.replaceChildren(...forecastTable(report));
  }
}

/** A chart's figure: its heading, what it shows, and the chart at the
 * width the figure has. */
function figure(name: string, title: string, caption: string) {
  const heading = `${name}-heading`;
  const body = el("div", { class: "chart-body" });
  const element = el("figure", { class: "figure", "data-figure": name, "aria-labelledby": heading },
    el("figcaption", {}, el("h2", { id: heading }, title), el("span", { class: "hint" }, caption)), body);
  return {
    element,
    width: () => Math.max(240, Math.floor(body.clientWidth || element.clientWidth - 24)),
    draw: (...parts: Element[]) => body.replaceChildren(...parts),
  };
}

function stat(term: string, value: string, name: string): HTMLElement {
  return el("div", { class: "stat" }, el("dt", {}, term), el("dd", { "data-stat": name }, value));
}

/** The columns' colours, with each column's tasks now. */
function legend(report: FlowReport, colours: Map<string, string>): HTMLElement {
  return el("ul", { class: "legend", "aria-label": "Work in progress now" },
    ...report.cumulative_flow.columns.map((column) => {
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = colours.get(column) ?? "";
      const count = report.wip.columns[column] ?? 0;
      return el("li", { "data-column": column, "data-count": String(count) }, swatch, `${label(column)} ${count}`);
    }));
}

/** How many tasks the next 7, 14 and 30 days finish, and when the
 * unfinished ones are done, at 50% and 85% confidence. */
function forecastTable(report: FlowReport): HTMLElement[] {
  const { finished_within, remaining, trials, sample_days } = report.forecast;
  const done = (days: number | null, date: string | null) => (days === null || date === null ? `not within ${remaining.max_days} days` : `by ${shortDate(date)} (${days} d)`);
  return [
    el("h2", { id: "forecast-heading" }, "Forecast"),
    el("table", { class: "forecast" },
      el("caption", { class: "hint" }, `Monte Carlo: ${trials.toLocaleString()} trials over ${sample_days} days of throughput`),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Next"), el("th", { scope: "col" }, "50% sure"), el("th", { scope: "col" }, "85% sure"))),
      el("tbody", {}, ...finished_within.map((h) =>
        el("tr", { "data-horizon": String(h.days), "data-at-least-50": String(h.at_least_50), "data-at-least-85": String(h.at_least_85) },
          el("th", { scope: "row" }, `${h.days} days`), el("td", {}, `≥ ${h.at_least_50} done`), el("td", {}, `≥ ${h.at_least_85} done`))))),
    el("p", { "data-remaining": String(remaining.tasks), "data-date-50": remaining.date_50 ?? "", "data-date-85": remaining.date_85 ?? "" },
      remaining.tasks === 0
        ? "No unfinished work."
        : `The ${remaining.tasks} unfinished ${remaining.tasks === 1 ? "task" : "tasks"}: done ${done(remaining.days_50, remaining.date_50)} at 50%, ${done(remaining.days_85, remaining.date_85)} at 85%.`),
  ];
}
