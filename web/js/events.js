// Server events: one handler per event type, and the queue that feeds them.
//
// Events are queued as they arrive and handled in order in short tasks, each within a time
// budget, so a burst of thousands of rows never blocks the page: input, replies (which the
// connection handles at once) and status stay responsive, and the rest waits a frame.

import { app, recordFor } from "./state.js";
import { ACTIVE, SHUTTING_DOWN, WORKER_GONE } from "./constants.js";
import { toast } from "./toast.js";
import { formatCell } from "./format.js";
import { logEvent } from "./eventlog.js";
import { renderExperiments } from "./form.js";
import { renderHistory, scheduleHistory } from "./history.js";
import { addRows, resetLive } from "./live.js";
import { queueTrialQuery } from "./controls.js";
import { updateStatus } from "./status.js";
import { timed } from "./perf.js";
import { refreshPlan } from "./plans.js";

const FRAME_BUDGET_MS = 8;
const ROWS_PER_STEP = 500; // a big data_rows event (a replay, a burst) is handled in slices
const queue = [];
let head = 0;
let scheduled = false;

/** Called by the connection for every event, in seq order. */
let timingPanel = null; // js/timing.js: the run's frame timing (run_started, run_timing, run_finished)

/** Give run events to the timing panel too. */
export function attachTimingPanel(panel) {
  timingPanel = panel;
}

export function enqueueEvent(msg) {
  queue.push(msg);
  if (msg.event === "status") handleNow(msg); // status first: never behind a backlog of rows
  if (!scheduled) {
    scheduled = true;
    setTimeout(drain, document.hidden ? 100 : 0);
  }
}

/** Events not handled yet (for the benchmark and tests). */
export const backlog = () => queue.length - head;

function handleNow(msg) {
  msg.early = true;
  HANDLERS.status(msg.data || {}, msg.time, msg);
}

function drain() {
  timed("drain", drainQueue);
}

function drainQueue() {
  scheduled = false;
  const start = performance.now();
  let any = false;
  while (head < queue.length) {
    const msg = queue[head];
    any = true;
    const rows = msg.event === "data_rows" && msg.data ? msg.data.rows : null;
    if (rows && rows.length > ROWS_PER_STEP) {
      // the first slice now, the rest stays at the head of the queue (so order is kept)
      const d = msg.data;
      HANDLERS.data_rows({ ...d, rows: rows.slice(0, ROWS_PER_STEP) }, msg.time, msg);
      msg.data = { ...d, first_row: (d.first_row || 0) + ROWS_PER_STEP, rows: rows.slice(ROWS_PER_STEP) };
      if (performance.now() - start > FRAME_BUDGET_MS) break;
      continue;
    }
    queue[head] = undefined;
    head += 1;
    const handler = HANDLERS[msg.event];
    if (timingPanel && !msg.early) timingPanel.onEvent(msg);
    if (handler && !msg.early) handler(msg.data || {}, msg.time, msg);
    if (performance.now() - start > FRAME_BUDGET_MS) break;
  }
  if (head === queue.length) { queue.length = 0; head = 0; }
  else if (head > 4096) { queue.splice(0, head); head = 0; }
  if (any) updateStatus();
  if (head < queue.length) {
    scheduled = true;
    setTimeout(drain, 0); // a new task: input and replies get their turn in between
  }
}

function endRun(d, t, outcome) {
  let rec = recordFor(d.run_id);
  if (!rec) {
    rec = { run_id: d.run_id, key: d.key, started: null, exp_info: {}, rows: 0 };
    app.runs.set(d.run_id, rec);
  }
  rec.status = "ended";
  rec.outcome = outcome;
  rec.ended = t;
  if (typeof d.duration === "number" && d.duration > 0) {
    rec.duration = d.duration; // the run's own clock (its manifest), not the page's
    if (rec.started == null) rec.started = t - d.duration;
  }
  if (typeof d.rows === "number") rec.rows = d.rows;
  rec.data_files = d.data_files || [];
  rec.error = d.error || null;
  if (d.traceback) rec.traceback = d.traceback;
  renderHistory();
  return rec;
}

export const HANDLERS = {
  experiment_added(d, t) {
    app.experiments.set(d.key, { key: d.key, path: d.path, kind: d.kind, exp_info: d.exp_info || {} });
    renderExperiments();
    logEvent(t, `Experiment added: ${d.key}`);
  },

  status(d, t) {
    const previous = app.status;
    if (d.status === SHUTTING_DOWN) {
      app.shuttingDown = true;
      logEvent(t, "The server is shutting down (any run is stopped and its data saved)", "warn");
      toast("warning", "The server is shutting down.", { timeout: 10000 });
      updateStatus();
      return;
    }
    if (app.shuttingDown && WORKER_GONE.has(d.status)) return; // its worker going is expected
    app.status = d.status;
    if (d.run_id !== undefined) app.runId = d.run_id;
    if (d.key !== undefined) app.key = d.key;
    if (d.status !== previous) logEvent(t, `Status: ${d.status}${d.key ? ` (${d.key})` : ""}`, WORKER_GONE.has(d.status) ? "error" : "info");
    if (WORKER_GONE.has(d.status)) {
      toast("error", d.status === "unavailable" ? "The session worker is unavailable." : "The session worker exited; the server is restarting it.");
    }
    if (d.run_id && ACTIVE.has(d.status) && app.live.runId !== d.run_id) resetLive(d.run_id, d.key);
    if (d.status === "running") queueTrialQuery();
    updateStatus();
  },

  run_started(d, t) {
    app.runs.set(d.run_id, {
      run_id: d.run_id, key: d.key, status: "running", outcome: null, exp_info: d.exp_info,
      data_dir: d.data_dir, rows: 0, started: t, ended: null, error: null, data_files: [],
    });
    app.runExpInfo = d.exp_info || {};
    app.runId = d.run_id;
    app.key = d.key;
    if (app.live.runId !== d.run_id) resetLive(d.run_id, d.key);
    renderHistory();
    logEvent(t, `Run ${d.run_id} of ${d.key} started`);
    queueTrialQuery();
  },

  run_paused(d, t) { pausedOrResumed(d, t, true); },
  run_resumed(d, t) { pausedOrResumed(d, t, false); },

  run_stopping(d, t) {
    const rec = recordFor(d.run_id);
    if (rec) rec.status = "stopping";
    renderHistory();
    logEvent(t, "Stopping…");
  },

  run_finished(d, t) {
    const rec = endRun(d, t, d.outcome);
    const shown = rec.abortRequested && d.outcome === "stopped" ? "aborted (it stopped within the grace period)" : d.outcome;
    const text = `Run ${d.run_id} of ${d.key} ${shown} (${d.rows} row${d.rows === 1 ? "" : "s"})`;
    toast(d.outcome === "completed" ? "success" : "info", text);
    logEvent(t, text);
  },

  run_failed(d, t) {
    endRun(d, t, "failed");
    const text = `Run ${d.run_id} of ${d.key} failed: ${d.error || "unknown error"}`;
    toast("error", text);
    logEvent(t, text, "error");
  },

  run_recovered(d, t) {
    const rec = recordFor(d.run_id);
    if (rec) {
      rec.data_files = d.data_files || rec.data_files || [];
      rec.rows = Math.max(rec.rows || 0, d.rows || 0); // the journal may hold a row the worker had not counted
      renderHistory();
    }
    const text = `Run ${d.run_id} of ${d.key} was interrupted (${d.reason}); ` +
      `${d.rows} row${d.rows === 1 ? "" : "s"} rebuilt from the journal`;
    toast("info", text);
    logEvent(t, text);
  },

  exp_info_changed(d, t) {
    if (!d.run_id || d.run_id === app.runId) app.runExpInfo = d.exp_info || {};
    const rec = recordFor(d.run_id);
    if (rec) rec.exp_info = d.exp_info;
    logEvent(t, "expInfo changed");
  },

  data_rows(d) {
    addRows(d.run_id, d.key, d.first_row || 0, d.rows || []);
    const rec = recordFor(d.run_id);
    if (rec && rec.status !== "ended") {
      rec.rows = Math.max(rec.rows || 0, (d.first_row || 0) + (d.rows || []).length);
      scheduleHistory();
    }
    queueTrialQuery();
  },

  data_added(d, t) {
    logEvent(t, `Data added: ${d.name} = ${formatCell(d.value)}`);
  },

  annotation(d, t) {
    logEvent(t, `Note: ${d.text}`);
  },

  plugin_error(d, t) {  // a plugin failed (e.g. LSL markers): the run goes on, the experimenter must know
    logEvent(t, `Plugin ${d.plugin} failed in ${d.hook} (${d.where}): ${d.error}`, "error");
  },

  plan_changed(d, t) {
    if (d.message) logEvent(t, `Plan ${d.name}: ${d.message}`);
    refreshPlan();
  },

  trials_changed(d, t) {
    logEvent(t, `Trials ${d.action === "rewind" ? "rewound" : d.action === "skip" ? "skipped" : d.action} by ${d.n}`);
    if (app.trial) app.trial.stale = true;
    queueTrialQuery();
  },
};

function pausedOrResumed(d, t, paused) {
  const rec = recordFor(d.run_id);
  if (rec) rec.status = paused ? "paused" : "running";
  renderHistory();
  const latency = typeof d.latency === "number" ? ` after ${Math.round(d.latency * 1000)} ms` : "";
  logEvent(t, `${paused ? "Paused" : "Resumed"}${latency}`);
}
