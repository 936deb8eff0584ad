// The status panel: connection and contact, the run's status, elapsed time, trials and rows,
// and the end-of-run banner. Live values are greyed (and said to be stale) when the server
// has gone quiet, so nothing old is ever shown as current.

import { $, h, setText } from "./dom.js";
import { app, recordFor, serverNow, clockOffset } from "./state.js";
import { ACTIVE, SHUTTING_DOWN } from "./constants.js";
import { clock } from "./connection.js";
import { basename, formatDuration } from "./format.js";
import { download, outcomeOf } from "./history.js";
import { updateControls } from "./controls.js";

/** The run the panel is about: the current one, else the newest seen. */
export function shownRunId() {
  return ACTIVE.has(app.status) ? app.runId || app.live.runId : app.live.runId;
}

export function updateConnection(state, info = {}) {
  const el = $("conn");
  let text;
  const fresh = app.contact.fresh;
  if (app.shuttingDown && state !== "connected") text = "Server shutting down";
  else if (state === "connected") text = fresh ? "Connected" : `No contact since ${clock(app.contact.last)}`;
  else if (state === "connecting") text = "Connecting…";
  else if (state === "reconnecting") {
    const since = app.contact.last ? `no contact since ${clock(app.contact.last)}; ` : "";
    text = info.delay !== undefined ? `Reconnecting (${since}attempt ${info.attempt})` : `Reconnecting… (${since.replace(/; $/, "")})`;
    if (info.reason) el.title = info.reason;
  } else text = "Disconnected";
  el.dataset.state = state === "connected" && !fresh ? "stale" : state;
  setText($("conn-text"), text);
  document.body.dataset.stale = String(!(state === "connected" && fresh));
  $("reconnect-btn").hidden = !(state === "reconnecting" && app.conn && !app.conn.stopped && app.conn.reconnectAt);
}

export function updateStatus() {
  const status = app.shuttingDown ? SHUTTING_DOWN : app.status || "idle";
  const pill = $("status-text");
  setText(pill, status === SHUTTING_DOWN ? "server shutting down" : status);
  pill.dataset.status = status;
  const active = ACTIVE.has(app.status);
  const runId = shownRunId();
  const rec = recordFor(runId);
  const key = active ? app.key || app.live.key : (rec && rec.key) || app.live.key;
  setText($("status-key"), key || "—");
  let runText = runId ? String(runId) : "—";
  if (!active && rec && rec.outcome) runText += ` (${outcomeOf(rec)})`;
  if (rec && rec.exp_info && rec.exp_info.simulated === true) runText += " · DRY RUN (simulated participant)";
  setText($("status-run"), runText);
  // once the run has ended its record (the manifest's count) is the truth; until then what arrived
  const ended = rec && rec.status === "ended";
  const live = runId && app.live.runId === runId ? app.live.count : 0;
  const rows = ended ? rec.rows ?? live : Math.max(live, rec ? rec.rows || 0 : 0);
  setText($("status-rows"), String(rows));
  const trial = app.trial && app.trial.runId === runId ? app.trial : null;
  let trialText = rows ? `${rows} done` : "—";
  if (trial) {
    // the answer is up to a second old: count the rows (trials) ended since, within the loop's length
    let n = trial.n + Math.max(0, app.live.count - trial.rowsAt);
    if (trial.total) n = Math.min(n, trial.total);
    if (ended) n = rows; // the run's own count, not the last (up to a second old) answer
    trialText = trial.total ? `${n} of ${trial.total}` : String(n);
  }
  setText($("status-trial"), trialText);
  updateElapsed();
  renderBanner(rec, rows, trial);
  updateControls();
  document.body.dataset.active = String(active);
  const label = key ? `${status} · ${key}` : status;
  document.title = `${label} — Liaison`;
}

/** Elapsed: the run's own duration once it ended (the manifest's), else server time since its start. */
export function updateElapsed() {
  const runId = shownRunId();
  const rec = recordFor(runId);
  let text = "—";
  if (rec) {
    if (rec.status === "ended" && typeof rec.duration === "number" && rec.duration > 0) text = formatDuration(rec.duration);
    else if (rec.started && rec.ended) text = formatDuration(rec.ended - rec.started);
    else if (rec.started && ACTIVE.has(app.status) && app.runId === runId) text = formatDuration(serverNow() - rec.started);
  }
  setText($("status-elapsed"), text);
}

const BANNER_TEXT = {
  completed: "Run completed",
  stopped: "Run stopped early",
  aborted: "Run aborted",
  failed: "Run failed",
};

/** The lasting end-of-run banner: outcome, trials done of N, duration, the data file. */
function renderBanner(rec, rows, trial) {
  const banner = $("end-banner");
  if (!rec || rec.status !== "ended" || ACTIVE.has(app.status)) {
    banner.hidden = true;
    banner.dataset.run = "";
    return;
  }
  const outcome = outcomeOf(rec);
  const signature = `${rec.run_id}|${outcome}|${rows}|${(rec.data_files || []).join(",")}|${rec.duration}|${trial ? trial.total : ""}`;
  if (banner.dataset.signature === signature && !banner.hidden) return;
  banner.dataset.signature = signature;
  banner.dataset.run = rec.run_id;
  banner.dataset.outcome = outcome;
  banner.hidden = false;
  const total = trial && trial.total ? trial.total : null;
  const duration = typeof rec.duration === "number" && rec.duration > 0 ? rec.duration : rec.ended && rec.started ? rec.ended - rec.started : null;
  const csv = (rec.data_files || []).find((f) => f.endsWith(".csv"));
  const facts = [
    `${rows} trial${rows === 1 ? "" : "s"} done${total ? ` of ${total}` : ""}`,
    duration !== null ? `duration ${formatDuration(duration)}` : null,
    rec.ended ? `ended ${new Date((rec.ended - clockOffset()) * 1000).toLocaleTimeString([], { hour12: false })}` : null,
  ].filter(Boolean).join(" · ");
  const button = csv ? h("button", { type: "button", class: "link-button", "aria-label": `Download ${basename(csv)} (run ${rec.run_id})` }, `Download ${basename(csv)}`) : null;
  if (button) button.addEventListener("click", () => download(rec.run_id, csv, button));
  banner.replaceChildren(...[
    h("p", { class: "banner-title" }, h("strong", { id: "end-outcome" }, BANNER_TEXT[outcome] || `Run ${outcome}`), ` — ${rec.key || ""} (${rec.run_id})`),
    h("p", { id: "end-facts" }, facts),
    rec.error ? h("p", { class: "banner-error" }, rec.error) : null,
    button ? h("p", {}, button) : h("p", { class: "help" }, rows ? "The data files are listed in the run history." : "No data file was saved."),
  ].filter(Boolean)); // replaceChildren would write "null" for a missing part
}

setInterval(updateElapsed, 250);
