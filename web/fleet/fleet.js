// Fleet dashboard: one tile per booth, alerts, and actions on selected booths.
//
// Talks to the fleet service's own WebSocket (same origin as this page):
// hello -> auth {token} -> welcome {booths, alerts}, then updates with the
// tiles that changed. The token comes from the URL fragment (#token=...), like
// a booth's dashboard, so it never reaches a server log; it is then kept for
// this tab only.

const $ = (id) => document.getElementById(id);
const tiles = new Map();
const selected = new Set();
const participants = new Map();
let ws = null;
let nextId = 1;
const pending = new Map();
let retry = 500;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child !== null && child !== undefined) el.append(child);
  return el;
}

function tokenFromPage() {
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("fleet-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("fleet-token");
}

function ago(t) {
  if (!t) return "never";
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 2 ? "just now" : s < 120 ? `${Math.round(s)} s ago` : `${Math.round(s / 60)} min ago`;
}

let observer = false; // signed in with the fleet's observer token

function renderTile(tile) {
  const contact = tile.contact === "no contact" ? "nocontact" : tile.contact;
  const trial = tile.trial_n ? (tile.trial_total ? `${tile.trial_n} of ${tile.trial_total}` : `${tile.trial_n}`) : "–";
  const box = observer ? null : h("input", { type: "checkbox", "aria-label": `select ${tile.name}`, checked: selected.has(tile.name),
    onchange: (e) => { e.target.checked ? selected.add(tile.name) : selected.delete(tile.name); } });
  const pid = observer ? null : h("input", { type: "text", placeholder: "participant", "aria-label": `participant for ${tile.name}`,
    value: participants.get(tile.name) || "", oninput: (e) => participants.set(tile.name, e.target.value) });
  const el = h("article", { class: `tile ${contact} ${tile.status || ""}`, "data-booth": tile.name },
    h("h3", {}, h("label", {}, box, " ", tile.name),
      h("span", { class: `contact-${contact}`, "data-field": "contact" }, tile.contact)),
    h("dl", {},
      h("dt", {}, "status"), h("dd", { "data-field": "status" }, tile.status || "–"),
      h("dt", {}, "experiment"), h("dd", { "data-field": "experiment" }, tile.experiment || "–"),
      h("dt", {}, "participant"), h("dd", { "data-field": "participant" }, tile.participant || "–"),
      h("dt", {}, "trial"), h("dd", { "data-field": "trial" }, trial),
      h("dt", {}, "rows"), h("dd", { "data-field": "rows" }, String(tile.rows)),
      h("dt", {}, "stored"), h("dd", { "data-field": "stored" }, `seq ${tile.stored_seq}`),
      h("dt", {}, "timing"), h("dd", { "data-field": "timing" },
        tile.timing_warnings ? `${tile.timing_warnings} warning(s)` : "ok"),
      h("dt", {}, "last contact"), h("dd", { "data-field": "last-contact" }, ago(tile.last_contact)),
      tile.error ? h("dt", {}, "problem") : null, tile.error ? h("dd", { class: "error" }, tile.error) : null),
    pid, " ", h("a", { href: tile.dashboard, target: "_blank", rel: "noopener" }, "open booth"));
  return el;
}

function render() {
  const container = $("tiles");
  const focused = document.activeElement && document.activeElement.closest("[data-booth]");
  for (const tile of [...tiles.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const old = container.querySelector(`[data-booth="${CSS.escape(tile.name)}"]`);
    if (old && focused === old && old.dataset.version === String(tile._v)) continue;
    const el = renderTile(tile);
    el.dataset.version = String(tile._v);
    if (old) {
      if (focused === old) continue; // do not steal typing focus; refreshed on the next update
      old.replaceWith(el);
    } else container.append(el);
  }
  const keys = new Set();
  for (const tile of tiles.values()) for (const key of tile.experiments || []) keys.add(key);
  const select = $("experiment");
  const current = select.value;
  const options = [...keys].sort();
  if (options.join() !== [...select.options].map((o) => o.value).join()) {
    select.replaceChildren(...options.map((k) => h("option", { value: k }, k)));
    if (options.includes(current)) select.value = current;
  }
}

function addAlerts(alerts) {
  const list = $("alerts");
  for (const a of alerts) {
    list.prepend(h("li", { class: `alert-${a.kind}` },
      `${new Date(a.time * 1000).toLocaleTimeString()} ${a.booth}: ${a.kind} — ${a.message}`));
  }
  while (list.children.length > 200) list.lastChild.remove();
}

function request(cmd, args) {
  return new Promise((resolve, reject) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return reject(new Error("not connected"));
    const id = nextId++;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ type: "request", id, cmd, args }));
  });
}

function connect(token) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/`);
  $("conn").textContent = "connecting…";
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "hello") ws.send(JSON.stringify({ type: "auth", token }));
    else if (msg.type === "welcome") {
      retry = 500;
      observer = msg.role === "observer";  // the observer token: view only, actions refused
      $("conn").textContent = observer ? "connected (observer: view only)" : "connected";
      $("actions").hidden = observer;
      $("token-form").hidden = true;
      $("main").hidden = false;
      tiles.clear();
      for (const t of msg.booths) tiles.set(t.name, { ...t, _v: 0 });
      $("alerts").replaceChildren();
      addAlerts(msg.alerts);
      render();
    } else if (msg.type === "update") {
      for (const t of msg.booths) tiles.set(t.name, { ...t, _v: ((tiles.get(t.name) || {})._v || 0) + 1 });
      addAlerts(msg.alerts);
      render();
    } else if (msg.type === "reply") {
      const p = pending.get(msg.id);
      if (p) { pending.delete(msg.id); msg.ok ? p.resolve(msg.result) : p.reject(new Error(msg.error.message)); }
      else if (!msg.ok && msg.error.code === "unauthorized") showToken("wrong token");
    }
  };
  ws.onclose = (e) => {
    for (const p of pending.values()) p.reject(new Error("connection lost"));
    pending.clear();
    if (e.code === 4001) return showToken("wrong token");
    $("conn").textContent = "no contact with the fleet service; retrying…";
    setTimeout(() => connect(token), retry);
    retry = Math.min(retry * 2, 8000);
  };
}

function showToken(message) {
  $("token-form").hidden = false;
  $("main").hidden = true;
  $("token-error").textContent = message || "";
  $("conn").textContent = "signed out";
}

function chosen() {
  const names = [...selected].filter((n) => tiles.has(n));
  if (!names.length) $("action-result").textContent = "select booths first";
  return names;
}

async function act(cmd) {
  const names = chosen();
  if (!names.length) return;
  const args = cmd === "start"
    ? { key: $("experiment").value, booths: names.map((name) => ({ name, participant: participants.get(name) || null })) }
    : { booths: names };
  $("action-result").textContent = `${cmd}…`;
  try {
    const result = await request(cmd, args);
    const failed = Object.entries(result).filter(([, r]) => !r.ok);
    $("action-result").textContent = failed.length
      ? `${cmd}: ${failed.map(([n, r]) => `${n}: ${r.error.message}`).join("; ")}`
      : `${cmd}: done on ${Object.keys(result).join(", ")}`;
  } catch (err) {
    $("action-result").textContent = `${cmd} failed: ${err.message}`;
  }
}

for (const cmd of ["start", "pause", "resume", "stop"]) $(cmd).addEventListener("click", () => act(cmd));
$("select-all").addEventListener("change", (e) => {
  for (const name of tiles.keys()) e.target.checked ? selected.add(name) : selected.delete(name);
  for (const el of document.querySelectorAll(".tile input[type=checkbox]")) el.checked = e.target.checked;
});
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("fleet-token", $("token").value);
  connect($("token").value);
});
setInterval(() => {
  for (const t of tiles.values()) {
    const el = document.querySelector(`[data-booth="${CSS.escape(t.name)}"] [data-field="last-contact"]`);
    if (el) el.textContent = ago(t.last_contact);
  }
}, 1000);

const token = tokenFromPage();
if (token) connect(token); else showToken("");
