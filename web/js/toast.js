// Messages that come and go (toasts), and how errors read.

import { $, h } from "./dom.js";
import { RequestError } from "./connection.js";

const MAX_TOASTS = 4;

export function toast(kind, message, { timeout } = {}) {
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
  expired: "it reached the server too late and was not carried out",
};

export function describeError(err) {
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

export function showError(context, err) {
  toast("error", `${context}: ${describeError(err)}`);
}
