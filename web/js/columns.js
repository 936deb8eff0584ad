// What the columns of a run's rows are: measured, bookkeeping, conditions.

import { app } from "./state.js";

// Columns that count rows, or time-stamp them, rather than measure anything.
export const BOOKKEEPING = /(^|\.)(this(N|TrialN|RepN|Index)|thisRow\.t|frameRate|expStart|started|stopped)$|^(thisRow\.t|trial_index)$/;
// Values that mean "no value" in a numeric column (PsychoPy writes None/nan for missing responses).
export const MISSING = new Set(["", "None", "nan", "NaN", "null"]);
const ACCURACY = /(^|\.)(corr|correct|accuracy|acc)$/i;
const MAX_CONDITION_LEVELS = 24;

const isExpInfo = (c) => Object.prototype.hasOwnProperty.call(app.runExpInfo || {}, c);

/** Numeric columns: at least one number and nothing else but missing values. */
export function numericColumns() {
  const live = app.live;
  return live.columns.filter((c) => {
    const s = live.stats.get(c);
    return s && s.num > 0 && s.other === 0;
  });
}

/** Numeric columns split: what the experiment measured first, then timing and bookkeeping. */
export function plotColumns() {
  const numeric = numericColumns();
  const measured = numeric.filter((c) => !BOOKKEEPING.test(c) && !isExpInfo(c));
  const rest = numeric.filter((c) => !measured.includes(c));
  return { measured, rest };
}

export function defaultPlotColumn() {
  const { measured, rest } = plotColumns();
  const all = [...measured, ...rest];
  const exact = all.find((c) => c === "rt") || all.find((c) => c.endsWith(".rt"));
  if (exact) return exact;
  const notAccuracy = measured.filter((c) => !ACCURACY.test(c));
  return notAccuracy[notAccuracy.length - 1] || measured[measured.length - 1] || all[0] || null;
}

/** The accuracy column (corr, correct, key_resp.corr, ...) if the run has a 0/1 one. */
export function accuracyColumn() {
  return numericColumns().find((c) => ACCURACY.test(c)) || null;
}

/** Columns it makes sense to group by: few distinct values, not a measure or a counter. */
export function groupColumns() {
  const live = app.live;
  return live.columns.filter((c) => {
    const s = live.stats.get(c);
    return s && s.levels.size > 0 && s.levels.size <= MAX_CONDITION_LEVELS && !BOOKKEEPING.test(c) && !ACCURACY.test(c);
  });
}

/** The loop's condition columns: plain (undotted) names that are not expInfo and not measured. */
export function defaultGroupColumn(measure) {
  const levels = (c) => app.live.stats.get(c).levels.size;
  const candidates = groupColumns().filter((c) => c !== measure && !isExpInfo(c) && !/\.(rt|keys|corr)$/.test(c));
  const varying = candidates.filter((c) => levels(c) >= 2); // a column with one value groups nothing
  return varying.find((c) => !c.includes(".")) || varying[0] || candidates[0] || null;
}

/** What the experiment measured first, the loops' bookkeeping (thisN, thisRepN...) last. */
export function displayColumns(columns) {
  return [...columns.filter((c) => !BOOKKEEPING.test(c)), ...columns.filter((c) => BOOKKEEPING.test(c))];
}

/** Fold one row into the per-column statistics (types seen, distinct levels up to a bound). */
export function noteRow(live, row) {
  let changed = false;
  for (const name in row) {
    const value = row[name];
    let stat = live.stats.get(name);
    if (!stat) {
      live.colSet.add(name);
      live.columns.push(name);
      stat = { num: 0, other: 0, levels: new Map() };
      live.stats.set(name, stat);
      changed = true;
    }
    if (typeof value === "number" && Number.isFinite(value)) stat.num += 1;
    else if (value !== null && value !== undefined && !MISSING.has(value)) stat.other += 1;
    if (stat.levels.size <= MAX_CONDITION_LEVELS && value !== null && value !== undefined && typeof value !== "object") {
      const level = String(value);
      stat.levels.set(level, (stat.levels.get(level) || 0) + 1);
    }
  }
  return changed;
}
