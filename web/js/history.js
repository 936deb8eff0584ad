// Run history and downloads. The trial CSV is the file a lab wants: it is shown first and
// highlighted; the run's other files (logs, manifest, STATUS...) are folded away.

import { $, h } from "./dom.js";
import { app, clockOffset } from "./state.js";
import { toast } from "./toast.js";
import { basename, formatDateTime, formatDuration } from "./format.js";

const MAX_HISTORY = 100;
const TOKEN_KEY = "liaison.token";

/** The run's outcome as a lab should read it: a run this tab aborted is "aborted", even when
 *  it stopped within the grace period (the server then records it as stopped). */
export function outcomeOf(rec) {
  if (rec.status === "ended" || rec.outcome) {
    const outcome = rec.outcome || "ended";
    return outcome === "stopped" && rec.abortRequested ? "aborted" : outcome;
  }
  return rec.status || "running";
}

let historyScheduled = false;
export function scheduleHistory() {
  if (historyScheduled) return;
  historyScheduled = true;
  setTimeout(() => { historyScheduled = false; renderHistory(); }, 250);
}

function fileUrl(runId, path) {
  return `/api/runs/${encodeURIComponent(runId)}/files/${String(path).split("/").map(encodeURIComponent).join("/")}`;
}

export async function download(runId, path, button) {
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

function fileButton(rec, path) {
  const button = h("button", {
    type: "button", class: "link-button", title: `Download ${path}`,
    "aria-label": `Download ${path} (run ${rec.run_id})`,
  }, basename(path));
  button.addEventListener("click", () => download(rec.run_id, path, button));
  return button;
}

/** The trial CSV(s) first and highlighted, everything else in a closed <details>. */
function filesCell(rec) {
  const files = rec.data_files || [];
  if (!files.length) return h("span", { class: "help" }, rec.status === "ended" ? "none" : "after the run");
  const isTrials = (f) => f.endsWith(".csv") && !/(^|\/)(STATUS|manifest)/i.test(basename(f));
  const main = files.filter(isTrials);
  const other = files.filter((f) => !isTrials(f));
  return h("div", { class: "files" },
    main.length ? h("ul", { class: "file-list main-files" }, main.map((f) => h("li", { class: "trial-csv" }, fileButton(rec, f)))) : null,
    other.length ? h("details", { class: "other-files" }, h("summary", {}, `${other.length} other file${other.length === 1 ? "" : "s"}`),
      h("ul", { class: "file-list" }, other.map((f) => h("li", {}, fileButton(rec, f))))) : null);
}

export function renderHistory() {
  const tbody = $("history-table").tBodies[0];
  const records = [...app.runs.values()].reverse().slice(0, MAX_HISTORY);
  $("history-empty").hidden = records.length > 0;
  $("history-table").closest(".table-wrap").hidden = records.length === 0;
  tbody.replaceChildren(...records.map((rec) => {
    const result = outcomeOf(rec);
    const duration = typeof rec.duration === "number" && rec.duration > 0 ? rec.duration
      : rec.ended && rec.started ? rec.ended - rec.started : null;
    const errorCell = rec.error
      ? h("details", { class: "run-error" }, h("summary", {}, "error"),
        h("p", {}, rec.error), rec.traceback ? h("pre", {}, rec.traceback) : null)
      : null;
    return h("tr", { "data-run-id": rec.run_id },
      h("th", { scope: "row" }, h("code", {}, rec.run_id ? String(rec.run_id) : "—")),
      h("td", {}, rec.key || "—"),
      h("td", {}, h("span", { class: "outcome", "data-outcome": result }, result), errorCell),
      h("td", { class: "num" }, String(rec.rows ?? 0)),
      h("td", { class: "nowrap" }, formatDateTime(rec.started, clockOffset())),
      h("td", { class: "num" }, duration ? formatDuration(duration) : "—"),
      h("td", {}, filesCell(rec)));
  }));
}
