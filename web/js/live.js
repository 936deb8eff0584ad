// The run's rows as they arrive: model updates are immediate and cheap; drawing (table, plot,
// summaries) happens once per animation frame, whatever the rate rows come in at.

import { $, h, setText } from "./dom.js";
import { app, newLive } from "./state.js";
import { LivePlot } from "./plot.js";
import { defaultPlotColumn, noteRow, plotColumns } from "./columns.js";
import { isNumber } from "./format.js";
import { perf, timed } from "./perf.js";
import { initTable, invalidateTable, renderTable } from "./table.js";
import { addRow as foldSummary, initSummary, renderSummary } from "./summary.js";

export const plot = new LivePlot($("plot"));
plot.onSummary = (text) => setText($("plot-summary"), text.replace(/^Live plot of /, ""));
plot.onSummary(plot.summary);

// While rows stream in, the table, plot and summaries are redrawn at most this often: readable,
// and the main thread stays free for input and replies. Scrolling and pickers redraw at once.
const STREAM_RENDER_MS = 100;
const frame = { scheduled: false, columnsChanged: true, hooks: [], last: 0, timer: null };

/** Draw everything that changed, on the next animation frame (or soon, in a hidden tab). */
export function scheduleRender({ streaming = false } = {}) {
  if (frame.scheduled) return;
  frame.scheduled = true;
  const run = () => { frame.scheduled = false; frame.timer = null; timed("render", renderLive); };
  const wait = streaming ? STREAM_RENDER_MS - (performance.now() - frame.last) : 0;
  if (document.hidden) setTimeout(run, 300);
  // a timer, not an animation frame: a starved compositor delays frames by hundreds of ms
  else if (streaming) frame.timer = setTimeout(run, Math.max(0, wait));
  else requestAnimationFrame(run);
}

/** Also call `fn` once per rendered frame (the status panel uses it). */
export function onFrame(fn) {
  frame.hooks.push(fn);
}

function renderLive() {
  frame.last = performance.now();
  perf.renders += 1;
  if (frame.columnsChanged) {
    frame.columnsChanged = false;
    refreshColumnChoice();
  }
  renderTable();
  if (plot.dirty) plot.draw();
  renderSummary(plot.column);
  for (const fn of frame.hooks) fn();
}

export function resetLive(runId, key) {
  app.live = newLive(runId, key);
  app.trial = null;
  plot.clear();
  invalidateTable();
  frame.columnsChanged = true;
  setText($("data-run-label"), runId ? `run ${runId} · ${key || ""}` : "");
  scheduleRender();
}

/** Rows [firstRow, firstRow + rows.length) of a run; repeats (replays) are counted once. */
export function addRows(runId, key, firstRow, rows) {
  if (!rows.length) return;
  if (app.live.runId !== runId) resetLive(runId, key);
  const live = app.live;
  const col = plot.column;
  const newPoints = [];
  for (let i = 0; i < rows.length; i += 1) {
    const index = firstRow + i;
    const row = rows[i];
    if (live.rows[index] === undefined) live.count += 1;
    live.rows[index] = row;
    if (noteRow(live, row)) frame.columnsChanged = true;
    foldSummary(index, row);
    if (col && isNumber(row[col])) newPoints.push([index, row[col]]);
  }
  if (newPoints.length) plot.add(newPoints, { draw: false });
  frame.columnsChanged = true; // a column may have become (non-)numeric
  invalidateTable();
  scheduleRender({ streaming: true });
}

let lastColumnsKey = "";
function refreshColumnChoice() {
  const select = $("plot-column");
  const { measured, rest } = plotColumns();
  const columns = [...measured, ...rest];
  const key = `${measured.join("\u0000")}|${rest.join("\u0000")}`;
  const chosen = app.plotChoice;
  const wanted = chosen && columns.includes(chosen) ? chosen : defaultPlotColumn();
  if (key !== lastColumnsKey) {
    lastColumnsKey = key;
    if (!columns.length) select.replaceChildren(h("option", { value: "" }, "(no numeric columns yet)"));
    else {
      select.replaceChildren(...[
        measured.length ? h("optgroup", { label: "Measured" }, measured.map((c) => h("option", { value: c }, c))) : null,
        rest.length ? h("optgroup", { label: "Timing and bookkeeping" }, rest.map((c) => h("option", { value: c }, c))) : null,
      ].filter(Boolean));
    }
    select.disabled = !columns.length;
  }
  if ((wanted || null) !== plot.column) setPlotColumn(wanted);
  if (select.value !== (plot.column || "")) select.value = plot.column || "";
}

function setPlotColumn(column) {
  plot.setColumn(column || null);
  if (!column) return;
  const points = [];
  app.live.rows.forEach((row, index) => {
    if (row && isNumber(row[column])) points.push([index, row[column]]);
  });
  plot.add(points);
}

export function initLive() {
  $("plot-column").addEventListener("change", (ev) => {
    app.plotChoice = ev.target.value || null;
    setPlotColumn(ev.target.value);
    scheduleRender();
  });
  for (const radio of document.querySelectorAll('input[name="plot-mode"]')) {
    radio.addEventListener("change", () => { if (radio.checked) plot.setMode(radio.value); });
  }
  initTable(scheduleRender);
  initSummary(scheduleRender);
}
