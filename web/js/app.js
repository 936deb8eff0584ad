// Liaison dashboard: sign in, watch and control runs, see their data live.
//
// Everything shown comes from the server: the welcome's state snapshot, then
// events. Nothing from the server is ever inserted as HTML.

import { Connection, RequestError } from "./connection.js";
import { LivePlot, formatNumber } from "./plot.js";

const TOKEN_KEY = "liaison.token";
const ROLE_KEY = "liaison.role";
const MAX_TABLE_ROWS = 500;
const MAX_LOG = 200;
const MAX_HISTORY = 100;
const MAX_TOASTS = 4;
const ACTIVE = new Set(["starting", "running", "paused", "stopping"]);
// Builder's "|hid" fields (the flag is stripped before they reach us); filled in by the session.
const HIDDEN_FIELDS = new Set(["date", "expName", "expVersion", "psychopyVersion"]);
const REQUIRED_FIELDS = new Set(["participant"]);
// Columns that count rows rather than measure anything; never the default plot column.
const BOOKKEEPING = /(^|\.)(this(N|TrialN|RepN|Index)|thisRow\.t|frameRate|expStart|started|stopped)$|^(thisRow\.t|trial_index)$/;

// Values that mean "no value" in a numeric column (PsychoPy writes None/nan for missing responses).
const MISSING = new Set(["", "None", "nan", "NaN", "null"]);

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// --- model -----------------------------------------------------------------------

function newLive(runId = null, key = null) {
  return { runId, key, rows: [], count: 0, columns: [], colSet: new Set(), stats: new Map() };
}

const app = {
  conn: null,
  role: null,
  status: "idle",
  runId: null,
  key: null,
  runExpInfo: {},
  experiments: new Map(),
  selectedKey: null,
  formKey: null,
  runs: new Map(), // run_id -> record, oldest first
  live: newLive(),
  clockOffset: 0, // server clock minus local clock, seconds
  trial: null,
  plotChoice: null, // plot column picked by the user
  busy: new Set(),
  server: null,
  shown: false,
};

const serverNow = () => Date.now() / 1000 + app.clockOffset;

// --- messages -------------------------------------------------------------------

function toast(kind, message, { timeout } = {}) {
  const region = kind === "error" ? $("alerts") : $("notices");
  const el = h("div", { class: `toast toast-${kind}` },
    h("p", { class: "toast-text" }, message),
    h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss message", title: "Dismiss" }, "×"));
  el.querySelector("button").addEventListener("click", () => el.remove());
  region.append(el);
  while (region.children.length > MAX_TOASTS) region.firstElementChild.remove();
  const ms = timeout ?? (kind === "error" ? 15000 : 5000);
  if (ms > 0) setTimeout(() => el.remove(), ms);
  return el;
}

const FRIENDLY = {
  forbidden: "observers cannot change anything",
  conflict: "not possible right now",
  busy: "the session is busy",
  not_found: "not found",
  invalid_args: "invalid input",
  unauthorized: "not authorised",
  connection_lost: "not connected",
  timeout: "no answer in time",
};

function describeError(err) {
  if (err instanceof RequestError) {
    const hint = FRIENDLY[err.code];
    let text = err.message || hint || "request failed";
    if (hint && !text.toLowerCase().includes(hint)) text += ` (${hint})`;
    if (err.details && typeof err.details === "object" && !Array.isArray(err.details)) {
      const parts = Object.entries(err.details).slice(0, 3).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
      if (parts.length) text += ` — ${parts.join("; ")}`;
    }
    return text;
  }
  return err && err.message ? err.message : String(err);
}

function showError(context, err) {
  toast("error", `${context}: ${describeError(err)}`);
}

function logEvent(time, text, kind = "info") {
  const list = $("event-log");
  const when = new Date((time || serverNow()) * 1000 - app.clockOffset * 1000);
  list.prepend(h("li", { class: `log-${kind}` },
    h("time", { datetime: when.toISOString(), class: "mono" }, when.toLocaleTimeString([], { hour12: false })),
    " ", h("span", {}, text)));
  while (list.children.length > MAX_LOG) list.lastElementChild.remove();
}

// --- formatting -------------------------------------------------------------------

function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.floor(seconds);
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${pad(mm)}:${pad(ss)}` : `${mm}:${pad(ss)}`;
}

function formatTime(unixSeconds) {
  if (!unixSeconds) return "—";
  const d = new Date((unixSeconds - app.clockOffset) * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

function formatCell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return formatNumber(value);
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "True" : "False";
  return JSON.stringify(value);
}

function shortId(id) {
  return id ? String(id) : "—";
}

function basename(path) {
  const parts = String(path).split("/");
  return parts[parts.length - 1] || String(path);
}

function parseValue(text) {
  const trimmed = text.trim();
  if (trimmed === "") return "";
  try {
    return JSON.parse(trimmed);
  } catch (_) {
    return text;
  }
}

const isScalar = (v) => v === null || ["string", "number", "boolean"].includes(typeof v);

/** expInfo values are scalars or lists of scalars; anything else stays as the typed text. */
function expInfoValue(text) {
  const value = parseValue(text);
  if (isScalar(value) || (Array.isArray(value) && value.every(isScalar))) return value;
  return text;
}

// --- sign in ------------------------------------------------------------------------

function readFragment() {
  const hash = location.hash.replace(/^#/, "");
  if (!hash) return false;
  const params = new URLSearchParams(hash);
  if (!params.has("token") && !params.has("role")) return false;
  if (params.has("token")) sessionStorage.setItem(TOKEN_KEY, params.get("token"));
  const role = params.get("role");
  sessionStorage.setItem(ROLE_KEY, role === "observer" ? "observer" : "controller");
  // keep the token out of the visible URL, the history and any bookmark
  history.replaceState(null, "", location.pathname + location.search);
  return params.has("token");
}

function showLogin(message = "") {
  $("login").hidden = false;
  $("dashboard").hidden = true;
  app.shown = false;
  $("login-error").textContent = message;
  $("connect-btn").disabled = false;
  $("connect-btn").textContent = "Connect";
  const role = sessionStorage.getItem(ROLE_KEY) || "controller";
  for (const radio of document.querySelectorAll('input[name="role"]')) radio.checked = radio.value === role;
  $("logout-btn").hidden = true;
  $("role-badge").hidden = true;
  $("reconnect-btn").hidden = true;
  const token = $("token");
  if (message) token.setAttribute("aria-invalid", "true");
  else token.removeAttribute("aria-invalid");
  token.focus();
}

function showDashboard() {
  if (app.shown) return;
  app.shown = true;
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("logout-btn").hidden = false;
  const fromLogin = $("login").contains(document.activeElement) || document.activeElement === document.body;
  $("token").value = "";
  if (fromLogin) $("main").focus(); // keyboard and screen-reader users continue at the content
  plot.schedule();
}

function connect({ probe = false } = {}) {
  if (app.conn) app.conn.stop("reconnecting with new settings");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  app.conn = new Connection({
    url: `${scheme}://${location.host}/`,
    probe,
    token: () => sessionStorage.getItem(TOKEN_KEY) || "",
    role: () => sessionStorage.getItem(ROLE_KEY) || "controller",
    handlers: {
      onState: onConnState,
      onWelcome,
      onEvent,
      onGap: (gap) => {
        const text = `Missed events ${gap.from_seq}–${gap.to_seq} (${gap.reason || "no longer buffered"}); the data shown may be incomplete.`;
        toast("warning", text, { timeout: 10000 });
        logEvent(null, text, "warn");
      },
      onGoodbye: (bye) => {
        if (bye.code === 4001) return;
        toast("warning", `The server closed the connection: ${bye.reason || bye.code}. Reconnecting…`, { timeout: 8000 });
      },
      onAuthFailed: (err) => {
        const hadToken = !!sessionStorage.getItem(TOKEN_KEY);
        sessionStorage.removeItem(TOKEN_KEY);
        const message = hadToken
          ? `Sign-in failed: ${err.message}. Check the token and try again.`
          : "Sign-in failed: this server needs an access token.";
        toast("error", message);
        showLogin(message);
      },
      onNeedsToken: () => {
        // the probe found a server that wants a token (or none at all): the sign-in form stays
        $("connect-btn").disabled = false;
        $("connect-btn").textContent = "Connect";
      },
      onStrayError: (err) => showError("Server error", err),
      onPong: (result, _rtt, localMid) => {
        if (result && typeof result.time === "number") app.clockOffset = result.time - localMid / 1000;
      },
    },
  });
  app.conn.start();
}

function onConnState(state, info) {
  const el = $("conn");
  el.dataset.state = state;
  let text;
  if (state === "connected") text = "Connected";
  else if (state === "connecting") text = "Connecting…";
  else if (state === "reconnecting") {
    text = info && info.delay !== undefined
      ? `Reconnecting in ${Math.max(1, Math.round(info.delay / 1000))} s (attempt ${info.attempt})`
      : "Reconnecting…";
    if (info && info.reason) el.title = info.reason;
  } else text = "Disconnected";
  $("conn-text").textContent = text;
  $("reconnect-btn").hidden = !(state === "reconnecting" && app.conn && !app.conn.stopped && app.conn.reconnectAt);
  if (!app.shown && $("login").hidden === false && state === "reconnecting" && info) {
    $("login-error").textContent = `Cannot reach the server yet (${info.reason || "no answer"}); retrying…`;
    $("connect-btn").disabled = false;
  }
  updateControls();
}

// --- welcome and snapshot ------------------------------------------------------------------

function onWelcome(welcome, info) {
  app.role = welcome.role === "controller" ? "controller" : "observer";
  const badge = $("role-badge");
  badge.hidden = false;
  badge.dataset.role = app.role;
  badge.textContent = app.role === "controller" ? "Controller" : "Observer (view only)";
  for (const el of document.querySelectorAll(".controller-only")) el.hidden = app.role !== "controller";
  document.body.dataset.role = app.role;
  const state = welcome.state || {};
  if (info.restarted) {
    toast("warning", "The server restarted since you were last connected; history starts again from its restart.", { timeout: 10000 });
    logEvent(null, "Server restarted (new session)", "warn");
  } else if (info.reconnected) {
    logEvent(null, `Reconnected (${welcome.replay === "full" ? "missed events replayed" : welcome.replay})`);
  }
  applySnapshot(state, welcome, info);
  showDashboard();
}

function applySnapshot(state, welcome, info) {
  app.server = state.server || null;
  app.status = state.status || "idle";
  app.runId = state.run_id || null;
  app.key = state.key || null;
  app.runExpInfo = state.exp_info || {};

  app.experiments = new Map();
  for (const exp of state.experiments || []) app.experiments.set(exp.key, exp);
  renderExperiments();

  const runs = Array.isArray(state.runs) ? [...state.runs] : [];
  runs.sort((a, b) => (a.started || 0) - (b.started || 0));
  const before = app.runs;
  app.runs = new Map();
  for (const r of runs) app.runs.set(r.run_id, { ...(before.get(r.run_id) || {}), ...r });
  renderHistory();

  const fresh = welcome.replay !== "full" || info.restarted;
  let target = null;
  if (app.runId && ACTIVE.has(app.status)) target = { run_id: app.runId, key: app.key };
  else if (runs.length) target = runs[runs.length - 1];
  if (target && app.live.runId !== target.run_id) {
    resetLive(target.run_id, target.key);
  }
  if (fresh && target && app.live.runId === target.run_id) {
    const expected = (app.runs.get(target.run_id) || {}).rows || state.rows || 0;
    if (expected > app.live.count) loadEarlierRows(target.run_id, welcome.last_seq);
  }
  renderServerInfo();
  updateStatus();
}

/** Rows published before this tab connected, from the server's replay buffer. */
async function loadEarlierRows(runId, uptoSeq) {
  let since = 0;
  try {
    for (let page = 0; page < 100; page += 1) {
      const result = await app.conn.request("replay", { since }, { timeout: 30000 });
      const events = (result && result.events) || [];
      for (const ev of events) {
        if (app.live.runId !== runId) return;
        if (ev.event === "data_rows" && ev.data && ev.data.run_id === runId) {
          addRows(ev.data.run_id, ev.data.key, ev.data.first_row, ev.data.rows || []);
        }
      }
      if (!result.more || !events.length) break;
      since = events[events.length - 1].seq;
      if (since >= uptoSeq) break;
    }
  } catch (err) {
    if (err.code !== "connection_lost") {
      toast("warning", `Rows recorded before you connected could not be loaded: ${describeError(err)}`, { timeout: 8000 });
    }
  }
}

function renderServerInfo() {
  const s = app.server;
  const parts = [];
  if (s) {
    if (s.version) parts.push(`liaison ${s.version}`);
    if (s.session_id) parts.push(`session ${s.session_id}`);
    if (typeof s.clients === "number") parts.push(`${s.clients} client${s.clients === 1 ? "" : "s"} connected`);
    if (s.worker_restarts) parts.push(`worker restarted ${s.worker_restarts}×`);
  }
  $("server-info").textContent = parts.join(" · ");
}

// --- events -------------------------------------------------------------------------------

function recordFor(runId) {
  return runId ? app.runs.get(runId) : undefined;
}

function onEvent(msg) {
  const d = msg.data || {};
  const t = msg.time;
  switch (msg.event) {
    case "experiment_added": {
      app.experiments.set(d.key, { key: d.key, path: d.path, kind: d.kind, exp_info: d.exp_info || {} });
      renderExperiments();
      logEvent(t, `Experiment added: ${d.key}`);
      break;
    }
    case "status": {
      const previous = app.status;
      app.status = d.status;
      if (d.run_id !== undefined) app.runId = d.run_id;
      if (d.key !== undefined) app.key = d.key;
      if (d.status !== previous) logEvent(t, `Status: ${d.status}${d.key ? ` (${d.key})` : ""}`,
        d.status === "worker_exited" || d.status === "unavailable" ? "error" : "info");
      if (d.status === "worker_exited" || d.status === "unavailable") {
        toast("error", d.status === "unavailable" ? "The session worker is unavailable." : "The session worker exited; the server is restarting it.");
      }
      if (d.run_id && ACTIVE.has(d.status) && app.live.runId !== d.run_id) resetLive(d.run_id, d.key);
      if (d.status === "running") queueTrialQuery();
      break;
    }
    case "run_started": {
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
      break;
    }
    case "run_paused":
    case "run_resumed": {
      const rec = recordFor(d.run_id);
      if (rec) rec.status = msg.event === "run_paused" ? "paused" : "running";
      renderHistory();
      const latency = typeof d.latency === "number" ? ` after ${Math.round(d.latency * 1000)} ms` : "";
      logEvent(t, `${msg.event === "run_paused" ? "Paused" : "Resumed"}${latency}`);
      break;
    }
    case "run_stopping": {
      const rec = recordFor(d.run_id);
      if (rec) rec.status = "stopping";
      renderHistory();
      logEvent(t, "Stopping…");
      break;
    }
    case "run_finished":
    case "run_failed": {
      let rec = recordFor(d.run_id);
      if (!rec) {
        rec = { run_id: d.run_id, key: d.key, started: null, exp_info: {}, rows: 0 };
        app.runs.set(d.run_id, rec);
      }
      rec.status = "ended";
      rec.outcome = msg.event === "run_failed" ? "failed" : d.outcome;
      rec.ended = t;
      if (rec.started == null && typeof d.duration === "number") rec.started = t - d.duration;
      rec.rows = Math.max(rec.rows || 0, d.rows || 0);
      rec.data_files = d.data_files || [];
      rec.error = d.error || null;
      if (d.traceback) rec.traceback = d.traceback;
      if (typeof d.duration === "number") rec.duration = d.duration;
      renderHistory();
      if (msg.event === "run_failed") {
        const text = `Run ${d.run_id} of ${d.key} failed: ${d.error || "unknown error"}`;
        toast("error", text);
        logEvent(t, text, "error");
      } else {
        const text = `Run ${d.run_id} of ${d.key} ${d.outcome} (${d.rows} row${d.rows === 1 ? "" : "s"})`;
        toast(d.outcome === "completed" ? "success" : "info", text);
        logEvent(t, text);
      }
      break;
    }
    case "run_recovered": {
      const rec = recordFor(d.run_id);
      if (rec) {
        rec.data_files = d.data_files || rec.data_files || [];
        rec.rows = Math.max(rec.rows || 0, d.rows || 0);
        renderHistory();
      }
      const text = `Run ${d.run_id} of ${d.key} was interrupted (${d.reason}); ` +
        `${d.rows} row${d.rows === 1 ? "" : "s"} rebuilt from the journal`;
      toast("info", text);
      logEvent(t, text);
      break;
    }
    case "exp_info_changed": {
      if (!d.run_id || d.run_id === app.runId) app.runExpInfo = d.exp_info || {};
      const rec = recordFor(d.run_id);
      if (rec) rec.exp_info = d.exp_info;
      logEvent(t, `expInfo changed`);
      break;
    }
    case "data_rows": {
      addRows(d.run_id, d.key, d.first_row || 0, d.rows || []);
      const rec = recordFor(d.run_id);
      if (rec) {
        rec.rows = Math.max(rec.rows || 0, (d.first_row || 0) + (d.rows || []).length);
        scheduleHistory();
      }
      queueTrialQuery();
      break;
    }
    case "data_added":
      logEvent(t, `Data added: ${d.name} = ${formatCell(d.value)}`);
      break;
    case "annotation":
      logEvent(t, `Note: ${d.text}`);
      break;
    case "trials_changed":
      logEvent(t, `Trials ${d.action === "rewind" ? "rewound" : d.action === "skip" ? "skipped" : d.action} by ${d.n}`);
      if (app.trial) app.trial.stale = true;
      queueTrialQuery();
      break;
    default:
      break;
  }
  updateStatus();
}

// --- live data ----------------------------------------------------------------------------

const plot = new LivePlot($("plot"));
plot.onSummary = (text) => { $("plot-summary").textContent = text.replace(/^Live plot of /, ""); };
plot.onSummary(plot.summary);

const tableState = { columnsKey: null, maxIndex: -1, runId: undefined, full: true, scheduled: false };

function resetLive(runId, key) {
  app.live = newLive(runId, key);
  app.trial = null;
  plot.clear();
  tableState.full = true;
  $("data-run-label").textContent = runId ? `run ${runId} · ${key || ""}` : "";
  refreshColumnChoice();
  scheduleTable();
}

function isNumber(v) {
  return typeof v === "number" && Number.isFinite(v);
}

function addRows(runId, key, firstRow, rows) {
  if (!rows.length) return;
  if (app.live.runId !== runId) resetLive(runId, key);
  const live = app.live;
  let columnsChanged = false;
  const newPoints = [];
  const col = plot.column;
  rows.forEach((row, i) => {
    const index = firstRow + i;
    if (index <= tableState.maxIndex) tableState.full = true;
    if (live.rows[index] === undefined) live.count += 1;
    live.rows[index] = row;
    for (const [name, value] of Object.entries(row)) {
      if (!live.colSet.has(name)) {
        live.colSet.add(name);
        live.columns.push(name);
        live.stats.set(name, { num: 0, other: 0 });
        columnsChanged = true;
      }
      const stat = live.stats.get(name);
      if (isNumber(value)) stat.num += 1;
      else if (value !== null && value !== undefined && !MISSING.has(value)) stat.other += 1;
    }
    if (col && isNumber(row[col])) newPoints.push([index, row[col]]);
  });
  if (newPoints.length) plot.add(newPoints);
  refreshColumnChoice(columnsChanged);
  scheduleTable();
}

function numericColumns() {
  const live = app.live;
  return live.columns.filter((c) => {
    const s = live.stats.get(c);
    return s && s.num > 0 && s.other === 0;
  });
}

function defaultColumn(columns) {
  const skip = new Set(Object.keys(app.runExpInfo || {}));
  const exact = columns.find((c) => c === "rt");
  if (exact) return exact;
  const dotted = columns.find((c) => c.endsWith(".rt"));
  if (dotted) return dotted;
  // Builder rows list loop counters and conditions first, then what the experiment measured.
  const measured = columns.filter((c) => !BOOKKEEPING.test(c) && !skip.has(c));
  return measured[measured.length - 1] || columns[0] || null;
}

let lastColumnsKey = "";
function refreshColumnChoice() {
  const select = $("plot-column");
  const columns = numericColumns();
  const key = columns.join("\u0000");
  // the column the user picked, whenever this run has it; otherwise the best guess
  const chosen = app.plotChoice;
  const wanted = chosen && columns.includes(chosen) ? chosen : defaultColumn(columns);
  if (key !== lastColumnsKey) {
    lastColumnsKey = key;
    select.replaceChildren(...(columns.length
      ? columns.map((c) => h("option", { value: c }, c))
      : [h("option", { value: "" }, "(no numeric columns yet)")]));
    select.disabled = !columns.length;
  }
  if (wanted !== plot.column) setPlotColumn(wanted);
  select.value = plot.column || "";
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

$("plot-column").addEventListener("change", (ev) => {
  app.plotChoice = ev.target.value || null;
  setPlotColumn(ev.target.value);
});

function scheduleTable() {
  if (tableState.scheduled) return;
  tableState.scheduled = true;
  const run = () => { tableState.scheduled = false; renderTable(); };
  if (document.hidden) setTimeout(run, 300);
  else requestAnimationFrame(run);
}

function rowElement(index, row, columns) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = String(index + 1);
  tr.append(th);
  for (const c of columns) {
    const td = document.createElement("td");
    const value = row[c];
    const text = formatCell(value);
    if (isNumber(value)) td.className = "num";
    if (text.length > 80) {
      td.textContent = text.slice(0, 77) + "…";
      td.title = text;
    } else td.textContent = text;
    tr.append(td);
  }
  return tr;
}

/** What the experiment measured first, the loops' bookkeeping (thisN, thisRepN...) last. */
function displayColumns(columns) {
  return [...columns.filter((c) => !BOOKKEEPING.test(c)), ...columns.filter((c) => BOOKKEEPING.test(c))];
}

function renderTable() {
  const live = app.live;
  const table = $("data-table");
  const tbody = table.tBodies[0];
  const columns = displayColumns(live.columns);
  const key = columns.join("\u0000");
  if (tableState.full || key !== tableState.columnsKey || tableState.runId !== live.runId) {
    const headRow = h("tr", {}, h("th", { scope: "col" }, "#"), columns.map((c) => h("th", { scope: "col" }, c)));
    table.tHead.replaceChildren(headRow);
    const frag = document.createDocumentFragment();
    let shown = 0;
    for (let i = live.rows.length - 1; i >= 0 && shown < MAX_TABLE_ROWS; i -= 1) {
      if (live.rows[i] === undefined) continue;
      frag.append(rowElement(i, live.rows[i], columns));
      shown += 1;
    }
    tbody.replaceChildren(frag);
    tableState.full = false;
    tableState.columnsKey = key;
    tableState.runId = live.runId;
  } else {
    const frag = document.createDocumentFragment();
    for (let i = live.rows.length - 1; i > tableState.maxIndex; i -= 1) {
      if (live.rows[i] !== undefined) frag.append(rowElement(i, live.rows[i], columns));
    }
    tbody.insertBefore(frag, tbody.firstChild);
    while (tbody.rows.length > MAX_TABLE_ROWS) tbody.lastElementChild.remove();
  }
  tableState.maxIndex = live.rows.length - 1;
  table.dataset.rows = String(live.count);
  const note = $("data-note");
  note.textContent = live.count > MAX_TABLE_ROWS
    ? `Newest first: showing the newest ${MAX_TABLE_ROWS} of ${live.count} rows (the data file has them all).`
    : live.count ? `Newest first: ${live.count} row${live.count === 1 ? "" : "s"}.` : "No rows yet. Rows appear here as trials end.";
}

// --- status and controls ---------------------------------------------------------------------

function updateStatus() {
  const status = app.status || "idle";
  const pill = $("status-text");
  if (pill.textContent !== status) pill.textContent = status;
  pill.dataset.status = status;
  const active = ACTIVE.has(status);
  const runId = active ? app.runId || app.live.runId : app.live.runId;
  const rec = recordFor(runId);
  const key = active ? app.key || app.live.key : (rec && rec.key) || app.live.key;
  $("status-key").textContent = key || "—";
  let runText = shortId(runId);
  if (!active && rec && rec.outcome) runText += ` (${rec.outcome})`;
  if (rec && rec.exp_info && rec.exp_info.simulated === true) runText += " · DRY RUN (simulated participant)";
  $("status-run").textContent = runId ? runText : "—";
  const rows = runId && app.live.runId === runId ? Math.max(app.live.count, rec ? rec.rows || 0 : 0) : rec ? rec.rows || 0 : 0;
  $("status-rows").textContent = String(rows);
  const trial = app.trial && app.trial.runId === runId ? app.trial : null;
  let trialText = rows ? `${rows} done` : "—";
  if (trial) {
    // the answer is up to a second old: count the rows (trials) ended since, within the loop's length
    let n = trial.n + Math.max(0, app.live.count - trial.rowsAt);
    if (trial.total) n = Math.min(n, trial.total);
    trialText = trial.total ? `${n} of ${trial.total}` : String(n);
  }
  $("status-trial").textContent = trialText;
  updateElapsed();
  updateControls();
  document.body.dataset.active = String(active);
  const label = key ? `${status} · ${key}` : status;
  document.title = `${label} — Liaison`;
}

function updateElapsed() {
  const runId = ACTIVE.has(app.status) ? app.runId || app.live.runId : app.live.runId;
  const rec = recordFor(runId);
  let text = "—";
  if (rec && rec.started) {
    const end = rec.ended || (ACTIVE.has(app.status) && app.runId === runId ? serverNow() : null);
    if (end) text = formatDuration(end - rec.started);
    else if (typeof rec.duration === "number") text = formatDuration(rec.duration);
  }
  const el = $("status-elapsed");
  if (el.textContent !== text) el.textContent = text;
}
setInterval(updateElapsed, 250);

function updateControls() {
  const connected = !!(app.conn && app.conn.connected);
  const controller = app.role === "controller";
  const s = app.status;
  const can = {
    "btn-pause": s === "running",
    "btn-resume": s === "paused",
    "btn-stop": s === "starting" || s === "running" || s === "paused",
    "btn-abort": ACTIVE.has(s),
  };
  for (const [id, allowed] of Object.entries(can)) {
    $(id).disabled = !(connected && controller && allowed && !app.busy.has(id));
  }
  const canRun = connected && controller && s === "idle" && !!app.selectedKey && !app.busy.has("btn-run");
  $("btn-run").disabled = !canRun;
  const hint = !connected ? "Not connected." : ACTIVE.has(s) ? "A run is in progress." :
    s !== "idle" ? `The session is ${s}.` : "";
  $("btn-run").title = hint;
  for (const id of ["btn-annotate", "btn-add-data"]) $(id).disabled = !(connected && controller);
}

async function command(buttonId, cmd, args, label, options) {
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

$("btn-pause").addEventListener("click", () => command("btn-pause", "pause", {}, "Pause failed").catch(() => {}));
$("btn-resume").addEventListener("click", () => command("btn-resume", "resume", {}, "Resume failed").catch(() => {}));
$("btn-stop").addEventListener("click", () => command("btn-stop", "stop", {}, "Stop failed").catch(() => {}));
$("btn-abort").addEventListener("click", () => {
  const dialog = $("abort-dialog");
  dialog.returnValue = "";
  clearFieldError($("abort-grace"));
  dialog.showModal();
});
$("abort-confirm").addEventListener("click", (ev) => {
  const input = $("abort-grace");
  const grace = Number(input.value.trim());
  if (input.value.trim() === "" || !Number.isFinite(grace) || grace < 0 || grace > 60) {
    ev.preventDefault(); // keep the dialog open
    setFieldError(input, "Enter a number of seconds from 0 to 60.");
    input.focus();
  }
});
$("abort-dialog").addEventListener("close", () => {
  const dialog = $("abort-dialog");
  if (dialog.returnValue !== "abort") {
    $("btn-abort").focus();
    return;
  }
  const grace = Number($("abort-grace").value.trim());
  command("btn-abort", "abort", { grace }, "Abort failed", { timeout: (grace + 120) * 1000 })
    .then((result) => toast("info", `Run aborted${result && result.killed ? " (the worker was restarted)" : ""}.`))
    .catch(() => {})
    .finally(() => $("btn-abort").focus());
});

// --- trial position (best effort: only while running, answered within a frame) ------------

const trialQuery = { timer: null, busy: false, last: 0 };
function queueTrialQuery() {
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

// --- experiments and the expInfo form ---------------------------------------------------------------

function renderExperiments() {
  const container = $("exp-list");
  const experiments = [...app.experiments.values()].sort((a, b) => a.key.localeCompare(b.key));
  if (!experiments.length) {
    container.replaceChildren(h("p", { class: "help" }, "No experiments found in the session folder."));
    $("run-form").hidden = true;
    app.selectedKey = null;
    updateControls();
    return;
  }
  if (!app.selectedKey || !app.experiments.has(app.selectedKey)) {
    app.selectedKey = app.key && app.experiments.has(app.key) ? app.key : experiments[0].key;
  }
  const meta = (exp) => h("span", { class: "exp-meta" }, [exp.kind, exp.path].filter(Boolean).join(" · "));
  if (app.role === "controller") {
    const fieldset = h("fieldset", { class: "exp-choices" },
      h("legend", { class: "sr-only" }, "Choose an experiment"),
      experiments.map((exp) => {
        const id = `exp-${exp.key.replace(/[^A-Za-z0-9_-]/g, "_")}`;
        const input = h("input", { type: "radio", name: "experiment", id, value: exp.key });
        input.checked = exp.key === app.selectedKey;
        input.addEventListener("change", () => {
          if (!input.checked) return;
          app.selectedKey = exp.key;
          buildForm();
          updateControls();
        });
        const metaEl = meta(exp);
        metaEl.id = `${id}-meta`;
        input.setAttribute("aria-describedby", metaEl.id);
        return h("div", { class: "exp-option" }, input,
          h("span", { class: "exp-text" }, h("label", { class: "exp-name", for: id }, exp.key), metaEl));
      }));
    container.replaceChildren(fieldset);
    if (app.formKey !== app.selectedKey) buildForm();
    $("run-form").hidden = false;
  } else {
    container.replaceChildren(h("ul", { class: "exp-plain" },
      experiments.map((exp) => h("li", {}, h("span", { class: "exp-name" }, exp.key), " ", meta(exp)))));
    $("run-form").hidden = true;
  }
  updateControls();
}

let fieldCounter = 0;

function fieldKind(value) {
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number") return "number";
  if (Array.isArray(value)) return "choice";
  return "text";
}

function makeField(name, value) {
  const id = `xi-${++fieldCounter}`;
  const kind = fieldKind(value);
  const required = REQUIRED_FIELDS.has(name);
  const errorId = `${id}-error`;
  let input;
  if (kind === "bool") {
    input = h("input", { type: "checkbox", id, "aria-describedby": errorId });
    input.checked = value;
  } else if (kind === "choice") {
    input = h("select", { id, "aria-describedby": errorId },
      value.map((option, i) => h("option", { value: String(i) }, formatCell(option))));
  } else {
    input = h("input", {
      type: "text", id, autocomplete: "off", spellcheck: "false", "aria-describedby": errorId,
      inputmode: kind === "number" ? "decimal" : null, "aria-required": required ? "true" : null,
    });
    input.value = value === null || value === undefined ? "" : String(value);
  }
  input.dataset.xiName = name;
  input.dataset.xiKind = kind;
  input.dataset.xiDefault = JSON.stringify(value);
  input.addEventListener("input", () => clearFieldError(input));
  const label = h("label", { for: id }, name, required ? h("span", { class: "req" }, " (required)") : null,
    kind === "number" ? h("span", { class: "help-inline" }, " number") : null);
  const wrap = h("div", { class: kind === "bool" ? "field field-check" : "field" });
  if (kind === "bool") wrap.append(input, label);
  else wrap.append(label, input);
  wrap.append(h("p", { id: errorId, class: "field-error" }));
  return wrap;
}

function buildForm() {
  const exp = app.experiments.get(app.selectedKey);
  app.formKey = app.selectedKey;
  $("expinfo-key").textContent = app.selectedKey || "";
  const visible = [], hidden = [];
  const info = (exp && exp.exp_info) || {};
  for (const [name, value] of Object.entries(info)) {
    (HIDDEN_FIELDS.has(name) ? hidden : visible).push(makeField(name, value));
  }
  $("expinfo-fields").replaceChildren(...(visible.length ? visible : [h("p", { class: "help" }, "This experiment has no expInfo fields.")]));
  $("expinfo-hidden-fields").replaceChildren(...hidden);
  $("expinfo-hidden").hidden = !hidden.length;
  $("expinfo-extra").replaceChildren();
  $("run-form-error").textContent = "";
  clearFieldError($("run-seed"));
}

function addExtraField() {
  const n = ++fieldCounter;
  const nameId = `xf-${n}-name`, valueId = `xf-${n}-value`, errorId = `xf-${n}-error`;
  const name = h("input", { type: "text", id: nameId, autocomplete: "off", spellcheck: "false", "aria-describedby": errorId });
  const value = h("input", { type: "text", id: valueId, autocomplete: "off" });
  name.dataset.extra = "name";
  value.dataset.extra = "value";
  name.addEventListener("input", () => clearFieldError(name));
  const remove = h("button", { type: "button", class: "ghost small", "aria-label": `Remove extra field ${n}` }, "Remove");
  const row = h("div", { class: "extra-field", "data-extra-row": "" },
    h("div", { class: "field" }, h("label", { for: nameId }, "Field name"), name),
    h("div", { class: "field" }, h("label", { for: valueId }, "Value"), value),
    remove,
    h("p", { id: errorId, class: "field-error" }));
  remove.addEventListener("click", () => { row.remove(); $("add-field").focus(); });
  $("expinfo-extra").append(row);
  name.focus();
}
$("add-field").addEventListener("click", addExtraField);

function setFieldError(input, message) {
  input.setAttribute("aria-invalid", "true");
  const id = (input.getAttribute("aria-describedby") || "").split(/\s+/).find((x) => x.endsWith("-error"));
  if (id && $(id)) $(id).textContent = message;
}

function clearFieldError(input) {
  input.removeAttribute("aria-invalid");
  const id = (input.getAttribute("aria-describedby") || "").split(/\s+/).find((x) => x.endsWith("-error"));
  if (id && $(id)) $(id).textContent = "";
}

/** The expInfo to send, or null after marking the invalid fields. */
function collectForm() {
  const form = $("run-form");
  const values = {};
  const invalid = [];
  const names = new Set();
  for (const input of form.querySelectorAll("[data-xi-name]")) {
    const name = input.dataset.xiName;
    const kind = input.dataset.xiKind;
    const original = JSON.parse(input.dataset.xiDefault);
    names.add(name);
    clearFieldError(input);
    let value;
    if (kind === "bool") value = input.checked;
    else if (kind === "choice") value = original[Number(input.value)];
    else if (kind === "number") {
      const text = input.value.trim();
      if (text === "" || !Number.isFinite(Number(text))) {
        setFieldError(input, `${name} must be a number.`);
        invalid.push(input);
        continue;
      }
      value = Number(text);
    } else {
      value = input.value;
      if (REQUIRED_FIELDS.has(name) && value.trim() === "") {
        setFieldError(input, `Enter the ${name}.`);
        invalid.push(input);
        continue;
      }
    }
    if (HIDDEN_FIELDS.has(name) && JSON.stringify(value) === JSON.stringify(kind === "choice" ? original[0] : original)) continue;
    values[name] = value;
  }
  for (const row of form.querySelectorAll("[data-extra-row]")) {
    const nameInput = row.querySelector('[data-extra="name"]');
    const valueInput = row.querySelector('[data-extra="value"]');
    clearFieldError(nameInput);
    const name = nameInput.value.trim();
    if (!name && !valueInput.value.trim()) continue;
    let problem = null;
    if (!name) problem = "Give this field a name (empty names are not allowed).";
    else if (name.includes("|")) problem = "Field names cannot contain “|”.";
    else if (names.has(name)) problem = `“${name}” is already a field.`;
    if (problem) {
      setFieldError(nameInput, problem);
      invalid.push(nameInput);
      continue;
    }
    names.add(name);
    values[name] = expInfoValue(valueInput.value);
  }
  const seedInput = $("run-seed");
  clearFieldError(seedInput);
  let seed = null;
  const seedText = seedInput.value.trim();
  if (seedText) {
    if (!/^\d+$/.test(seedText) || Number(seedText) > 4294967295) {
      setFieldError(seedInput, "The seed must be a whole number from 0 to 4294967295.");
      invalid.push(seedInput);
    } else seed = Number(seedText);
  }
  if (invalid.length) {
    $("run-form-error").textContent = `Please fix ${invalid.length} field${invalid.length === 1 ? "" : "s"} above.`;
    invalid[0].focus();
    return null;
  }
  $("run-form-error").textContent = "";
  return { exp_info: values, seed };
}

$("run-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if ($("btn-run").disabled) return;
  const collected = collectForm();
  if (!collected) return;
  const key = app.selectedKey;
  const args = { key, exp_info: collected.exp_info };
  if (collected.seed !== null) args.seed = collected.seed;
  if ($("run-dry").checked) args.simulate = {};  // the simulated participant, default policy
  try {
    const result = await command("btn-run", "run", args, `Could not start ${key}`, { timeout: 60000 });
    toast("info", `Started ${key}${result && result.run_id ? ` (run ${result.run_id})` : ""}.`);
  } catch (err) {
    $("run-form-error").textContent = `Could not start ${key}: ${describeError(err)}`;
  }
});

// --- notes and extra data ------------------------------------------------------------------

$("annotate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("annotation");
  const text = input.value.trim();
  clearFieldError(input);
  if (!text) {
    setFieldError(input, "Write the annotation first.");
    input.focus();
    return;
  }
  try {
    await command("btn-annotate", "annotate", { text }, "Annotation failed");
    input.value = "";
    toast("success", "Annotation added.");
  } catch (_) { /* shown */ }
});

$("annotation").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    $("annotate-form").requestSubmit();
  }
});

$("data-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const nameInput = $("data-name");
  const name = nameInput.value.trim();
  clearFieldError(nameInput);
  if (!name) {
    setFieldError(nameInput, "Enter a name for the value.");
    nameInput.focus();
    return;
  }
  const value = parseValue($("data-value").value);
  try {
    await command("btn-add-data", "add_data", { name, value }, "Adding data failed");
    $("data-value").value = "";
    toast("success", `Added ${name} = ${formatCell(value)}.`);
  } catch (_) { /* shown */ }
});

// --- run history and downloads ---------------------------------------------------------------

let historyScheduled = false;
function scheduleHistory() {
  if (historyScheduled) return;
  historyScheduled = true;
  setTimeout(() => { historyScheduled = false; renderHistory(); }, 250);
}

function fileUrl(runId, path) {
  return `/api/runs/${encodeURIComponent(runId)}/files/${String(path).split("/").map(encodeURIComponent).join("/")}`;
}

async function download(runId, path, button) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(fileUrl(runId, path), { headers, cache: "no-store", credentials: "omit" });
    if (!response.ok) {
      const body = (await response.text()).trim();
      throw new Error(`${response.status} ${response.statusText}${body ? ` — ${body}` : ""}`);
    }
    const blob = await response.blob();
    const href = URL.createObjectURL(blob);
    const link = h("a", { href, download: basename(path), hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60000);
  } catch (err) {
    toast("error", `Could not download ${basename(path)}: ${err.message}`);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function resultLabel(rec) {
  if (rec.status === "ended" || rec.outcome) return rec.outcome || "ended";
  return rec.status || "running";
}

function renderHistory() {
  const tbody = $("history-table").tBodies[0];
  const records = [...app.runs.values()].reverse().slice(0, MAX_HISTORY);
  $("history-empty").hidden = records.length > 0;
  $("history-table").closest(".table-wrap").hidden = records.length === 0;
  tbody.replaceChildren(...records.map((rec) => {
    const result = resultLabel(rec);
    const files = rec.data_files || [];
    const duration = rec.ended && rec.started ? rec.ended - rec.started : rec.duration;
    const fileCell = files.length
      ? h("ul", { class: "file-list" }, files.map((path) => {
        const button = h("button", {
          type: "button", class: "link-button", title: `Download ${path}`,
          "aria-label": `Download ${path} (run ${rec.run_id})`,
        }, basename(path));
        button.addEventListener("click", () => download(rec.run_id, path, button));
        return h("li", {}, button);
      }))
      : h("span", { class: "help" }, rec.status === "ended" ? "none" : "after the run");
    const errorCell = rec.error
      ? h("details", { class: "run-error" }, h("summary", {}, "error"),
        h("p", {}, rec.error), rec.traceback ? h("pre", {}, rec.traceback) : null)
      : null;
    return h("tr", { "data-run-id": rec.run_id },
      h("th", { scope: "row" }, h("code", {}, shortId(rec.run_id))),
      h("td", {}, rec.key || "—"),
      h("td", {}, h("span", { class: "outcome", "data-outcome": result }, result), errorCell),
      h("td", { class: "num" }, String(rec.rows ?? 0)),
      h("td", {}, formatTime(rec.started)),
      h("td", { class: "num" }, duration ? formatDuration(duration) : "—"),
      h("td", {}, fileCell));
  }));
}

// --- header buttons and start-up ---------------------------------------------------------------

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token").value.trim();
  const role = (document.querySelector('input[name="role"]:checked') || {}).value || "controller";
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(ROLE_KEY, role);
  $("login-error").textContent = "";
  $("token").removeAttribute("aria-invalid");
  $("connect-btn").disabled = true;
  $("connect-btn").textContent = "Connecting…";
  connect();
});

$("logout-btn").addEventListener("click", () => {
  if (app.conn) app.conn.stop("signed out");
  app.conn = null;
  sessionStorage.removeItem(TOKEN_KEY);
  app.role = null;
  app.runs = new Map();
  app.experiments = new Map();
  app.formKey = null;
  resetLive(null, null);
  renderHistory();
  $("event-log").replaceChildren();
  showLogin("");
  toast("info", "Signed out. The token was removed from this tab.");
});

$("reconnect-btn").addEventListener("click", () => app.conn && app.conn.reconnectNow());

window.addEventListener("online", () => app.conn && app.conn.reconnectNow());

// A link with #token=... opened in a tab that already shows the dashboard changes only the fragment.
window.addEventListener("hashchange", () => {
  if (readFragment()) {
    $("connect-btn").disabled = true;
    $("connect-btn").textContent = "Connecting…";
    connect();
  }
});

// A handle for debugging from the browser console (and for tests): no secrets on it.
window.liaisonDashboard = {
  get status() { return app.status; },
  get lastSeq() { return app.conn ? app.conn.lastSeq : null; },
  get connection() { return app.conn ? app.conn.state : "disconnected"; },
  get rowCount() { return app.live.count; },
  dropConnection() { if (app.conn) app.conn.dropForTesting(); },
};

function start() {
  const fromFragment = readFragment();
  const stored = sessionStorage.getItem(TOKEN_KEY);
  if (fromFragment || stored !== null) {
    $("connect-btn").disabled = true;
    $("connect-btn").textContent = "Connecting…";
    connect();
  } else {
    showLogin("");
    // a server started with --no-auth needs no token: find out, and sign straight in if so
    connect({ probe: true });
  }
  updateStatus();
}

start();
