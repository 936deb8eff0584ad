// Who is connected: a count in the footer for everyone, and for controllers a list
// (name, role, since when) from the `clients` command, refreshed every few seconds.

import { $, h, setText } from "./dom.js";
import { app, clockOffset } from "./state.js";
import { formatTime } from "./format.js";

const REFRESH_MS = 5000;
let timer = null;

export function renderFooter() {
  const s = app.server;
  const parts = [];
  if (s) {
    if (s.version) parts.push(`liaison ${s.version}`);
    if (s.session_id) parts.push(`session ${s.session_id}`);
    if (typeof s.clients === "number") parts.push(`${s.clients} client${s.clients === 1 ? "" : "s"} connected`);
    if (s.worker_restarts) parts.push(`worker restarted ${s.worker_restarts}×`);
  }
  setText($("server-info"), parts.join(" · "));
}

export async function refreshClients() {
  clearTimeout(timer);
  timer = setTimeout(refreshClients, REFRESH_MS);
  if (!app.conn || !app.conn.connected || !app.contact.fresh) return;
  try {
    if (app.role === "controller") {
      const people = await app.conn.request("clients", {}, { timeout: 5000 });
      if (app.server) app.server.clients = people.length;
      $("clients-panel").hidden = false;
      $("clients-list").replaceChildren(...people.map((p) => h("li", { "data-role": p.role },
        h("strong", {}, p.name || "unnamed client"), p.you ? " (this tab)" : "",
        ` · ${p.role} · since ${formatTime(p.connected_since, clockOffset())}`)));
      renderFooter();
    } else {
      $("clients-panel").hidden = true; // observers see the count from the welcome only
    }
  } catch (_) {
    // informational; the next refresh tries again
  }
}

export function stopClients() {
  clearTimeout(timer);
  timer = null;
}
