// The session plan panel: what ran, what is next, and each participant's progress, from the
// `plan_state` command (refreshed when a `plan_changed` event arrives). Controllers also get the
// plan's controls: pause after this run, continue, skip the current step, cancel.

import { $, h, setText } from "./dom.js";
import { app } from "./state.js";
import { describeError, toast } from "./toast.js";

const ACTIONS = [
  ["plan_pause", "Pause after this run"],
  ["plan_continue", "Continue"],
  ["plan_skip", "Skip this step"],
  ["plan_cancel", "Cancel plan"],
];
let pending = null;

/** Ask the server for the plan's state and show it (soon, and once, however many events asked). */
export function refreshPlan() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    if (!app.conn || !app.conn.connected) return;
    try {
      renderPlan(await app.conn.request("plan_state", {}, { timeout: 5000 }));
    } catch (_) {
      // informational: the next plan_changed event (or reconnect) asks again
    }
  }, 100);
}

function stepLabel(step) {
  if (step.kind !== "run") return `Break${step.seconds ? ` (${step.seconds} s)` : ""}`;
  return `${step.participant} · ${step.key}`;
}

/** Draw the panel from a plan state (hidden while no plan was ever started). */
export function renderPlan(state) {
  const panel = $("plan-panel");
  if (!state || state.status === "none") {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  panel.dataset.status = state.status;
  const steps = state.steps || [];
  const runs = steps.filter((s) => s.kind === "run").length;
  const at = Math.min(state.cursor + 1, steps.length);
  setText($("plan-summary"), `${state.name} — ${state.status}${state.simulate ? " (dry run)" : ""} · ` +
    `step ${at} of ${steps.length} · ${state.completed_runs} of ${runs} runs done` +
    (state.message ? ` · ${state.message}` : ""));
  const participants = Object.entries(state.participants || {});
  $("plan-participants").replaceChildren(...participants.map(([id, p]) =>
    h("tr", { "data-participant": id }, h("th", { scope: "row" }, id), h("td", {}, `${p.done} of ${p.runs}`))));
  $("plan-steps").replaceChildren(...steps.map((step, i) => h("li", {
    "data-status": step.status, ...(i === state.cursor ? { "aria-current": "step" } : {}),
  }, `${stepLabel(step)} — ${step.status}`)));
  const controls = $("plan-controls");
  controls.hidden = app.role !== "controller" || ["finished", "cancelled", "stopped"].includes(state.status);
}

/** Wire the controllers' buttons once. */
export function initPlan() {
  $("plan-controls").replaceChildren(...ACTIONS.map(([cmd, label]) => {
    const button = h("button", { type: "button", "data-cmd": cmd }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        renderPlan(await app.conn.request(cmd, {}, { timeout: 60000 }));
      } catch (err) {
        toast("error", `${label}: ${describeError(err)}`);
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }));
}
