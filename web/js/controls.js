// Run controls (pause, resume, stop, abort), the abort dialog, and the trial position.
//
// Commands carry a short deadline: if the server has not confirmed one within it, it is shown
// as not done, and the server refuses it if the network hands it over later (`not_after`).
// With no recent contact a command is not sent at all.

import { $ } from "./dom.js";
import { app, recordFor } from "./state.js";
import { ACTIVE } from "./constants.js";
import { clearFieldError, setFieldError } from "./dom.js";
import { showError, toast } from "./toast.js";
import { updateStatus } from "./status.js";

export const COMMAND_DEADLINE_MS = 3000;

export function updateControls() {
  const connected = !!(app.conn && app.conn.connected && app.contact.fresh);
  const controller = app.role === "controller";
  const s = app.status;
  const can = {
    "btn-pause": s === "running",
    "btn-resume": s === "paused",
    "btn-stop": s === "starting" || s === "running" || s === "paused",
    "btn-abort": ACTIVE.has(s),
  };
  for (const [id, allowed] of Object.entries(can)) {
    $(id).disabled = !(connected && controller && allowed && !app.busy.has(id) && !app.shuttingDown);
  }
  const canRun = connected && controller && s === "idle" && !!app.selectedKey && !app.busy.has("btn-run") && !app.shuttingDown;
  $("btn-run").disabled = !canRun;
  const hint = !connected ? "No contact with the server." : ACTIVE.has(s) ? "A run is in progress." :
    s !== "idle" ? `The session is ${s}.` : "";
  $("btn-run").title = hint;
  for (const id of ["btn-annotate", "btn-add-data"]) $(id).disabled = !(connected && controller);
}

/** Send a command for a button: busy while pending, errors shown as toasts, then re-thrown. */
export async function command(buttonId, cmd, args, label, options = { deadline: COMMAND_DEADLINE_MS }) {
  app.busy.add(buttonId);
  updateControls();
  try {
    return await app.conn.request(cmd, args, options);
  } catch (err) {
    showError(label, err);
    throw err;
  } finally {
    app.busy.delete(buttonId);
    updateControls();
  }
}

function openAbortDialog() {
  const dialog = $("abort-dialog");
  dialog.returnValue = "";
  clearFieldError($("abort-grace"));
  dialog.showModal();
  $("abort-grace").select();
}

function validGrace(ev) {
  const input = $("abort-grace");
  const grace = Number(input.value.trim());
  if (input.value.trim() === "" || !Number.isFinite(grace) || grace < 0 || grace > 60) {
    if (ev) ev.preventDefault(); // keep the dialog open
    setFieldError(input, "Enter a number of seconds from 0 to 60.");
    input.focus();
    return false;
  }
  return true;
}

function onAbortDialogClosed() {
  const dialog = $("abort-dialog");
  if (dialog.returnValue !== "abort") {
    $("btn-abort").focus();
    return;
  }
  const grace = Number($("abort-grace").value.trim());
  const runId = app.runId;
  const rec = recordFor(runId);
  if (rec) rec.abortRequested = true; // shown as aborted even if it stops within the grace period
  command("btn-abort", "abort", { grace }, "Abort failed", { deadline: COMMAND_DEADLINE_MS, timeout: (grace + 120) * 1000 })
    .then((result) => toast("info", `Run aborted${result && result.killed ? " (the worker was restarted)" : ""}.`))
    .catch(() => { if (rec) rec.abortRequested = false; })
    .finally(() => { updateStatus(); $("btn-abort").focus(); });
}

export function initControls() {
  $("btn-pause").addEventListener("click", () => command("btn-pause", "pause", {}, "Pause not done").catch(() => {}));
  $("btn-resume").addEventListener("click", () => command("btn-resume", "resume", {}, "Resume not done").catch(() => {}));
  $("btn-stop").addEventListener("click", () => command("btn-stop", "stop", {}, "Stop not done").catch(() => {}));
  $("btn-abort").addEventListener("click", openAbortDialog);
  $("abort-confirm").addEventListener("click", validGrace);
  // Enter in the grace field confirms the abort (the form's first button would cancel it).
  $("abort-grace").addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    ev.preventDefault();
    if (validGrace(null)) $("abort-dialog").close("abort");
  });
  $("abort-dialog").addEventListener("close", onAbortDialogClosed);
}

// --- trial position (best effort: only while running, answered within a frame) ------------

const trialQuery = { timer: null, busy: false, last: 0 };
export function queueTrialQuery() {
  if (app.status !== "running" || !app.conn || !app.conn.connected || trialQuery.timer) return;
  const wait = Math.max(250, 1000 - (Date.now() - trialQuery.last));
  trialQuery.timer = setTimeout(queryTrials, wait);
}

async function queryTrials() {
  trialQuery.timer = null;
  if (trialQuery.busy || app.status !== "running" || !app.conn || !app.conn.connected) return;
  trialQuery.busy = true;
  trialQuery.last = Date.now();
  const runId = app.runId;
  const previous = app.trial && app.trial.runId === runId ? app.trial : null;
  // The loop's length needs the whole list of upcoming trials: ask for it once per run (and
  // again when the loop changes or trials are skipped); afterwards only the current trial.
  const LOOKAHEAD = 10000;
  const wantTotal = !previous || previous.stale;
  try {
    const result = await app.conn.request("trials", { n: wantTotal ? LOOKAHEAD : 1, start: 0 }, { timeout: 5000 });
    const current = result && result.current;
    if (runId === app.runId && current && typeof current.thisN === "number") {
      const n = current.thisN + 1;
      const future = Array.isArray(result.future) ? result.future.length : 0;
      let total = previous ? previous.total : null;
      if (wantTotal) total = future < LOOKAHEAD ? n + future : null;
      const loopChanged = previous && !wantTotal && n < previous.n;
      app.trial = { runId, n, total, rowsAt: app.live.count, stale: loopChanged };
      updateStatus();
      if (loopChanged) queueTrialQuery();
    }
  } catch (_) {
    // informational only: the loop may not exist yet, or the run may be ending; ask less often
    trialQuery.last = Date.now() + 4000;
  } finally {
    trialQuery.busy = false;
  }
}
