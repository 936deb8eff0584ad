// Frame timing panel: dropped frames and the worst interval of the current (or last) run.
//
// Fed by the server's `run_timing` events (about once a second during a run)
// and the timing report in `run_finished` / `run_failed`. Self-contained: it
// fills the element it is given and needs nothing else from the dashboard.
// Everything is written with textContent (server data is never HTML).

const fmtMs = (v) => (typeof v === "number" ? `${v.toFixed(v < 10 ? 2 : 1)} ms` : "—");

export class TimingPanel {
  constructor(root) {
    this.root = root;
    this.runId = null;
    if (!root) return;
    root.replaceChildren();
    const title = document.createElement("h2");
    title.id = "timing-title";
    title.textContent = "Frame timing";
    root.setAttribute("aria-labelledby", "timing-title");
    const grid = document.createElement("dl");
    grid.className = "status-grid timing-grid";
    this.cells = {};
    for (const [name, label] of [["dropped", "Dropped frames"], ["worst", "Worst interval"],
      ["p99", "p99 interval"], ["frames", "Frames"], ["refresh", "Refresh rate"]]) {
      const item = document.createElement("div");
      item.className = "status-item";
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.id = `timing-${name}`;
      dd.className = "mono";
      dd.textContent = "—";
      item.append(dt, dd);
      grid.append(item);
      this.cells[name] = dd;
    }
    this.verdict = document.createElement("p");
    this.verdict.id = "timing-verdict";
    this.verdict.className = "help";
    this.verdict.setAttribute("aria-live", "polite");
    this.verdict.textContent = "No run yet.";
    root.append(title, grid, this.verdict);
  }

  // Call with every event message ({event, data}); ignores the ones it does not need.
  onEvent(msg) {
    if (!this.root) return;
    const d = msg.data || {};
    if (msg.event === "run_started") {
      this.runId = d.run_id;
      this.show(null);
      this.verdict.textContent = `Timing run ${d.run_id}…`;
      this.root.dataset.state = "running";
    } else if (msg.event === "run_timing" && d.timing) {
      this.runId = d.run_id;
      this.show(d.timing);
    } else if ((msg.event === "run_finished" || msg.event === "run_failed") && d.timing) {
      this.runId = d.run_id;
      this.show(d.timing);
      const ok = d.timing_ok !== false;
      this.root.dataset.state = ok ? "ok" : "bad";
      this.verdict.textContent = ok ? "Timing OK for this run." : `Timing was bad: ${d.timing_problem}`;
    }
  }

  show(t) {
    const c = this.cells;
    if (!t) {
      for (const cell of Object.values(c)) cell.textContent = "—";
      return;
    }
    const iv = t.interval_ms || {};
    const worst = (t.worst || [])[0];
    c.dropped.textContent = String(t.dropped ?? 0);
    c.worst.textContent = worst ? `${fmtMs(worst.ms)}${worst.trial >= 0 ? ` (trial ${worst.trial})` : ""}`
      : fmtMs(iv.max);
    c.p99.textContent = fmtMs(iv.p99);
    c.frames.textContent = String(t.frames ?? 0);
    c.refresh.textContent = typeof t.refresh_hz === "number" ? `${t.refresh_hz.toFixed(1)} Hz` : "—";
  }
}
