// Live summaries of the run: running mean and accuracy, and a by-condition table.
//
// Computed incrementally: each new row updates running sums (no pass over all rows),
// except when the user picks another column, which recomputes once.

import { $, h, setText } from "./dom.js";
import { app } from "./state.js";
import { accuracyColumn, defaultGroupColumn, groupColumns } from "./columns.js";
import { formatNumber, isNumber } from "./format.js";

const sums = { runId: undefined, measure: null, accuracy: null, group: null, total: null, groups: new Map(), rowsSeen: 0 };
let groupChoice = null; // the user's pick
let lastGroupOptions = "";

function emptyAgg() {
  return { n: 0, sum: 0, accN: 0, accSum: 0 };
}

function fold(agg, row, measure, accuracy) {
  agg.n += 1;
  if (measure && isNumber(row[measure])) { agg.mN = (agg.mN || 0) + 1; agg.sum += row[measure]; }
  if (accuracy && isNumber(row[accuracy])) { agg.accN += 1; agg.accSum += row[accuracy]; }
}

/** Start over from every row (new run, or another column picked). */
function recompute(measure, accuracy, group) {
  Object.assign(sums, { runId: app.live.runId, measure, accuracy, group, total: emptyAgg(), groups: new Map(), rowsSeen: 0 });
  sums.seen = new Set();
  for (let i = 0; i < app.live.rows.length; i += 1) if (app.live.rows[i]) addRow(i, app.live.rows[i]);
}

/** Fold a new row into the running summaries (each row index once). */
export function addRow(index, row) {
  if (sums.runId !== app.live.runId || !sums.total) return; // the next render recomputes
  if (sums.seen.has(index)) return;
  sums.seen.add(index);
  fold(sums.total, row, sums.measure, sums.accuracy);
  if (sums.group) {
    const level = row[sums.group] === undefined || row[sums.group] === null ? "(none)" : String(row[sums.group]);
    if (!sums.groups.has(level)) sums.groups.set(level, emptyAgg());
    fold(sums.groups.get(level), row, sums.measure, sums.accuracy);
  }
}

const mean = (agg) => (agg.mN ? agg.sum / agg.mN : null);
const acc = (agg) => (agg.accN ? agg.accSum / agg.accN : null);
const pct = (v) => (v === null ? "—" : `${(v * 100).toFixed(1)} %`);
const num = (v) => (v === null ? "—" : formatNumber(Number(v.toPrecision(4))));

/** Render the summaries for the plotted column; once per frame, cheap when nothing changed. */
export function renderSummary(measure) {
  const select = $("group-column");
  const options = groupColumns();
  const key = options.join("\u0000");
  if (key !== lastGroupOptions) {
    lastGroupOptions = key;
    select.replaceChildren(h("option", { value: "" }, "(no grouping)"), ...options.map((c) => h("option", { value: c }, c)));
  }
  const group = groupChoice !== null && (groupChoice === "" || options.includes(groupChoice)) ? groupChoice || null : defaultGroupColumn(measure);
  if (select.value !== (group || "")) select.value = group || "";
  select.disabled = !options.length;
  const accuracy = accuracyColumn();
  if (sums.runId !== app.live.runId || sums.measure !== measure || sums.accuracy !== accuracy || sums.group !== group) {
    recompute(measure, accuracy, group);
  }
  const t = sums.total;
  setText($("sum-n"), String(t.n));
  setText($("sum-mean-label"), measure ? `Mean ${measure}` : "Mean");
  setText($("sum-mean"), num(mean(t)));
  setText($("sum-acc-label"), accuracy ? `Accuracy (${accuracy})` : "Accuracy");
  setText($("sum-acc"), pct(acc(t)));

  const table = $("by-condition");
  const signature = `${group}|${measure}|${accuracy}|${t.n}`;
  if (table.dataset.signature === signature) return;
  table.dataset.signature = signature;
  table.dataset.group = group || "";
  table.tHead.replaceChildren(h("tr", {},
    h("th", { scope: "col" }, group || "All rows"),
    h("th", { scope: "col", class: "num" }, measure ? `Mean ${measure}` : "Mean"),
    h("th", { scope: "col", class: "num" }, "Accuracy"),
    h("th", { scope: "col", class: "num" }, "n")));
  const levels = group ? [...sums.groups.entries()].sort((a, b) => a[0].localeCompare(b[0], undefined, { numeric: true })) : [["all", t]];
  table.tBodies[0].replaceChildren(...levels.map(([level, agg]) => h("tr", { "data-level": level },
    h("th", { scope: "row" }, level),
    h("td", { class: "num", "data-mean": mean(agg) === null ? "" : String(mean(agg)) }, num(mean(agg))),
    h("td", { class: "num", "data-accuracy": acc(agg) === null ? "" : String(acc(agg)) }, pct(acc(agg))),
    h("td", { class: "num" }, String(agg.n)))));
  $("by-condition-empty").hidden = t.n > 0;
}

export function initSummary(schedule) {
  $("group-column").addEventListener("change", (ev) => {
    groupChoice = ev.target.value;
    schedule();
  });
}
