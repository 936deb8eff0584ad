// Formatting of durations, times, cells and typed input.

import { formatNumber } from "./plot.js";

export { formatNumber };

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.floor(seconds);
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${pad(mm)}:${pad(ss)}` : `${mm}:${pad(ss)}`;
}

/** Local time of a server timestamp (Unix seconds), given the server-minus-local clock offset. */
export function formatTime(unixSeconds, offset = 0) {
  if (!unixSeconds) return "—";
  return new Date((unixSeconds - offset) * 1000).toLocaleTimeString([], { hour12: false });
}

/** Date and time, e.g. "2026-12-01 21:49:56", for history where runs span days. */
export function formatDateTime(unixSeconds, offset = 0) {
  if (!unixSeconds) return "—";
  const d = new Date((unixSeconds - offset) * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${d.toLocaleTimeString([], { hour12: false })}`;
}

export function formatCell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return formatNumber(value);
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "True" : "False";
  return JSON.stringify(value);
}

export function basename(path) {
  const parts = String(path).split("/");
  return parts[parts.length - 1] || String(path);
}

export function parseValue(text) {
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
export function expInfoValue(text) {
  const value = parseValue(text);
  if (isScalar(value) || (Array.isArray(value) && value.every(isScalar))) return value;
  return text;
}

export const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
