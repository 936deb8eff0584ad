// Liaison dashboard: sign in, watch and control runs, see their data live.
//
// Everything shown comes from the server: the welcome's state snapshot, then events
// (handled in events.js, one handler per event). Nothing from the server is ever inserted
// as HTML. Each panel is its own module; this one signs in and wires them together.

import { Connection } from "./connection.js";
import { $ } from "./dom.js";
import { app } from "./state.js";
import { ACTIVE, CLOSE } from "./constants.js";
import { describeError, showError, toast } from "./toast.js";
import { parseValue, formatCell } from "./format.js";
import { clearFieldError, setFieldError } from "./dom.js";
import { logEvent } from "./eventlog.js";
import { attachTimingPanel, backlog, enqueueEvent } from "./events.js";
import { renderExperiments } from "./form.js";
import { renderHistory } from "./history.js";
import { addRows, initLive, plot, resetLive } from "./live.js";
import { command, initControls, updateControls } from "./controls.js";
import { updateConnection, updateStatus } from "./status.js";
import { refreshClients, renderFooter, stopClients } from "./clients.js";
import { initPlan, refreshPlan } from "./plans.js";
import { frameIn, perf, resetPerf } from "./perf.js";
import { TimingPanel } from "./timing.js";

attachTimingPanel(new TimingPanel(document.getElementById("timing-panel")));
initPlan();

const TOKEN_KEY = "liaison.token";
const ROLE_KEY = "liaison.role";

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
  if (fromLogin) $("main").focus({ preventScroll: true }); // keyboard and screen-reader users continue at the content
  window.scrollTo(0, 0); // the status panel, with the connection state, first
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
      onContact: (fresh, last) => {
        app.contact = { fresh, last };
        if (!fresh) logEvent(null, `No contact with the server since ${new Date(last || Date.now()).toLocaleTimeString([], { hour12: false })}`, "warn");
        updateConnection(app.conn.state);
        updateControls();
      },
      onWelcome,
      onEvent: enqueueEvent,
      onFrame: frameIn,
      onAlert: (alert) => {
        // e.g. the server's disk is full: nothing more is recorded until it is fixed
        toast(alert.code === "storage_restored" ? "info" : "error", alert.message, { timeout: 0 });
      },
      onGap: (gap) => {
        const text = `Missed events ${gap.from_seq}–${gap.to_seq} (${gap.reason || "no longer buffered"}); the data shown may be incomplete.`;
        toast("warning", text, { timeout: 10000 });
        logEvent(null, text, "warn");
      },
      onGoodbye: (bye) => {
        if (bye.code === CLOSE.AUTH_FAILED) return;
        if (bye.code === CLOSE.GOING_AWAY) {
          app.shuttingDown = true;
          updateStatus();
          return;
        }
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
      onPong: (result) => {
        if (app.server && result && typeof result.clients === "number" && result.clients !== app.server.clients) {
          app.server.clients = result.clients; // the footer's count follows who comes and goes
          renderFooter();
        }
      },
    },
  });
  app.conn.start();
}

function onConnState(state, info) {
  updateConnection(state, info || {});
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
  if (info.restarted || app.shuttingDown) {
    app.shuttingDown = false;
    toast("warning", "The server restarted since you were last connected; history starts again from its restart.", { timeout: 10000 });
    logEvent(null, "Server restarted (new session)", "warn");
  } else if (info.reconnected) {
    logEvent(null, `Reconnected (${welcome.replay === "full" ? "missed events replayed" : welcome.replay})`);
  }
  applySnapshot(state, welcome, info);
  showDashboard();
  refreshClients();
  refreshPlan();
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
  for (const r of runs) {
    const old = before.get(r.run_id) || {};
    app.runs.set(r.run_id, { ...old, ...r, abortRequested: old.abortRequested });
  }
  renderHistory();

  const fresh = welcome.replay !== "full" || info.restarted;
  let target = null;
  if (app.runId && ACTIVE.has(app.status)) target = { run_id: app.runId, key: app.key };
  else if (runs.length) target = runs[runs.length - 1];
  if (target && app.live.runId !== target.run_id) resetLive(target.run_id, target.key);
  if (fresh && target && app.live.runId === target.run_id) {
    const expected = (app.runs.get(target.run_id) || {}).rows || state.rows || 0;
    if (expected > app.live.count) loadEarlierRows(target.run_id, welcome.last_seq);
  }
  renderFooter();
  updateStatus();
  if (app.status === "unavailable") retryUnavailable();
}

/** The snapshot was taken while the worker was being replaced (after an abort or a crash): its
 *  experiments and status are missing, and the events that announced them came before this
 *  connection. Ask again until the worker answers. */
function retryUnavailable(attempt = 0) {
  setTimeout(async () => {
    if (!app.conn || !app.conn.connected || app.status !== "unavailable") return;
    try {
      const state = await app.conn.request("state", {}, { timeout: 10000 });
      if (state && state.status && state.status !== "unavailable") {
        app.experiments = new Map();
        for (const exp of state.experiments || []) app.experiments.set(exp.key, exp);
        app.status = state.status;
        app.runId = state.run_id || app.runId;
        app.key = state.key || app.key;
        renderExperiments();
        updateStatus();
        return;
      }
    } catch (_) { /* try again below */ }
    if (attempt < 60) retryUnavailable(attempt + 1);
  }, 2000);
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
    if (err.code !== "connection_lost" && err.code !== "not_sent") {
      toast("warning", `Rows recorded before you connected could not be loaded: ${describeError(err)}`, { timeout: 8000 });
    }
  }
}

// --- notes and extra data ------------------------------------------------------------------

function updateAnnotationHelp() {
  const during = ACTIVE.has(app.status);
  const text = during
    ? "Saved with the run's data and in the session log. Ctrl+Enter adds it."
    : "No run is in progress: it goes to the session log (not to a run's data file). Ctrl+Enter adds it.";
  if ($("annotation-help").textContent !== text) $("annotation-help").textContent = text;
}

function initNotes() {
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
    const where = ACTIVE.has(app.status) ? "with the run's data" : "to the session log";
    try {
      await command("btn-annotate", "annotate", { text }, "Annotation not added");
      input.value = "";
      toast("success", `Annotation added ${where}.`);
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
  stopClients();
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
window.addEventListener("offline", () => app.conn && app.conn.networkLost());

// A link with #token=... opened in a tab that already shows the dashboard changes only the fragment.
window.addEventListener("hashchange", () => {
  if (readFragment()) {
    $("connect-btn").disabled = true;
    $("connect-btn").textContent = "Connecting…";
    connect();
  }
});

// A handle for debugging from the browser console (and for tests and the benchmark): no secrets on it.
window.liaisonDashboard = {
  get status() { return app.status; },
  get lastSeq() { return app.conn ? app.conn.lastSeq : null; },
  get connection() { return app.conn ? app.conn.state : "disconnected"; },
  get rowCount() { return app.live.count; },
  get backlog() { return backlog(); },
  get perf() { return { ...perf }; },
  resetPerf,
  /** Row numbers (1-based) in the page's model, newest first: what the table scrolls through. */
  rowNumbers() {
    const out = [];
    for (let i = app.live.rows.length - 1; i >= 0; i -= 1) if (app.live.rows[i] !== undefined) out.push(i + 1);
    return out;
  },
  dropConnection() { if (app.conn) app.conn.dropForTesting(); },
  /** Send a command the way the buttons do; resolves to "ok" or the error's code. */
  async send(cmd) {
    try {
      await app.conn.request(cmd, {}, { deadline: 3000 });
      return "ok";
    } catch (err) {
      return err.code;
    }
  },
};

function start() {
  initLive();
  initControls();
  initNotes();
  setInterval(updateAnnotationHelp, 500);
  updateAnnotationHelp();
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
