// A small live line plot on a <canvas>: value of one column per data row.
//
// Points are [rowIndex, value]. The element's data-points attribute always
// holds the number of points plotted, and its aria-label a short summary, so
// the plot can be checked without looking at pixels.

const MARGIN = { left: 56, right: 14, top: 14, bottom: 34 };

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const unit = raw / power;
  const nice = unit >= 5 ? 10 : unit >= 2 ? 5 : unit >= 1 ? 2 : 1;
  return nice * power;
}

function ticks(min, max, count) {
  if (!(max > min)) return [min];
  const step = niceStep(max - min, count);
  const first = Math.ceil(min / step) * step;
  const out = [];
  for (let v = first; v <= max + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

export function formatNumber(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 1e5 || abs < 1e-3) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

export class LivePlot {
  constructor(canvas) {
    this.canvas = canvas;
    this.points = [];
    this.lo = Infinity; // smallest and largest value plotted, kept as points come (no pass per frame)
    this.hi = -Infinity;
    this.column = null;
    this.scheduled = false;
    this.sorted = true;
    this.mode = "line"; // or "histogram": how often each range of values occurred
    if (typeof ResizeObserver !== "undefined") {
      this.resizer = new ResizeObserver(() => this.schedule());
      this.resizer.observe(canvas);
    } else {
      window.addEventListener("resize", () => this.schedule());
    }
    this._describe();
  }

  setColumn(column) {
    this.column = column;
    this.points = [];
    this.lo = Infinity; // smallest and largest value plotted, kept as points come (no pass per frame)
    this.hi = -Infinity;
    this._describe();
    this.schedule();
  }

  setMode(mode) {
    this.mode = mode === "histogram" ? "histogram" : "line";
    this.canvas.dataset.mode = this.mode;
    this.schedule();
  }

  clear() {
    this.points = [];
    this.lo = Infinity; // smallest and largest value plotted, kept as points come (no pass per frame)
    this.hi = -Infinity;
    this._describe();
    this.schedule();
  }

  /** Add [index, value] points (any order; kept sorted by index, one per index).
   *  draw: false leaves the drawing to the caller (`dirty` says one is due). */
  add(points, { draw = true } = {}) {
    if (!points.length) return;
    const last = this.points.length ? this.points[this.points.length - 1][0] : -Infinity;
    const inOrder = points.every((p, i) => p[0] > (i ? points[i - 1][0] : last));
    if (inOrder) {
      for (const p of points) {
        this.points.push(p);
        if (p[1] < this.lo) this.lo = p[1];
        if (p[1] > this.hi) this.hi = p[1];
      }
    } else {
      const byIndex = new Map(this.points.map((p) => [p[0], p]));
      for (const p of points) byIndex.set(p[0], p);
      this.points = [...byIndex.values()].sort((a, b) => a[0] - b[0]);
      this.lo = Infinity;
      this.hi = -Infinity;
      for (const [, y] of this.points) { if (y < this.lo) this.lo = y; if (y > this.hi) this.hi = y; }
    }
    this.described = false; // summarised once per frame, in draw(), not per batch
    this.canvas.dataset.points = String(this.points.length);
    this.dirty = true;
    if (draw) this.schedule();
  }

  _describe() {
    this.described = true;
    const n = this.points.length;
    this.canvas.dataset.points = String(n);
    let label;
    if (!this.column) label = "Live plot: no numeric column to show yet.";
    else if (!n) label = `Live plot of ${this.column}: no values yet.`;
    else {
      const min = this.lo, max = this.hi;
      const lastY = this.points[n - 1][1];
      label = `Live plot of ${this.column} per row: ${n} value${n === 1 ? "" : "s"}, ` +
        `latest ${formatNumber(lastY)}, range ${formatNumber(min)} to ${formatNumber(max)}.`;
    }
    this.canvas.setAttribute("aria-label", label);
    this.summary = label;
    if (this.onSummary) this.onSummary(label);
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => { this.scheduled = false; this.draw(); };
    if (document.hidden) setTimeout(run, 250);
    else requestAnimationFrame(run);
  }

  draw() {
    this.dirty = false;
    if (!this.described) this._describe();
    const canvas = this.canvas;
    const rect = canvas.getBoundingClientRect();
    if (rect.width < 10 || rect.height < 10) return;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.round(rect.width * dpr);
    const height = Math.round(rect.height * dpr);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const W = rect.width, H = rect.height;
    const style = getComputedStyle(canvas);
    const color = (name, fallback) => (style.getPropertyValue(name) || "").trim() || fallback;
    const cText = color("--plot-text", "#3d4756");
    const cGrid = color("--plot-grid", "#e3e7ed");
    const cAxis = color("--plot-axis", "#8a94a3");
    const cLine = color("--plot-line", "#1f5fbf");
    const cLast = color("--plot-last", "#c2410c");
    const font = `12px ${style.fontFamily || "sans-serif"}`;
    ctx.clearRect(0, 0, W, H);
    ctx.font = font;

    const pts = this.points;
    const plotW = W - MARGIN.left - MARGIN.right;
    const plotH = H - MARGIN.top - MARGIN.bottom;
    if (!pts.length) {
      ctx.fillStyle = cText;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(this.column ? `Waiting for values of “${this.column}”…` : "No numeric column yet", W / 2, H / 2);
      return;
    }
    if (this.mode === "histogram") {
      this._histogram(ctx, W, H, plotW, plotH, { cText, cGrid, cAxis, cLine });
      return;
    }
    let xMin = pts[0][0], xMax = pts[pts.length - 1][0];
    let yMin = this.lo, yMax = this.hi;
    if (yMax === yMin) { const pad = Math.abs(yMax) * 0.1 || 1; yMin -= pad; yMax += pad; }
    else { const pad = (yMax - yMin) * 0.06; yMin -= pad; yMax += pad; }
    if (xMax === xMin) { xMin -= 1; xMax += 1; }
    const sx = (x) => MARGIN.left + ((x - xMin) / (xMax - xMin)) * plotW;
    const sy = (y) => MARGIN.top + (1 - (y - yMin) / (yMax - yMin)) * plotH;

    // grid and axes
    ctx.lineWidth = 1;
    ctx.strokeStyle = cGrid;
    ctx.fillStyle = cText;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of ticks(yMin, yMax, Math.max(2, Math.floor(plotH / 40)))) {
      const y = Math.round(sy(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(MARGIN.left, y); ctx.lineTo(W - MARGIN.right, y); ctx.stroke();
      ctx.fillText(formatNumber(t), MARGIN.left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const xTicks = ticks(xMin + 1, xMax + 1, Math.max(2, Math.floor(plotW / 80))).filter((t) => Number.isInteger(t));
    for (const t of xTicks) {
      const x = Math.round(sx(t - 1)) + 0.5;
      ctx.strokeStyle = cGrid;
      ctx.beginPath(); ctx.moveTo(x, MARGIN.top); ctx.lineTo(x, MARGIN.top + plotH); ctx.stroke();
      ctx.fillText(String(t), x, MARGIN.top + plotH + 6);
    }
    ctx.strokeStyle = cAxis;
    ctx.beginPath();
    ctx.moveTo(MARGIN.left + 0.5, MARGIN.top);
    ctx.lineTo(MARGIN.left + 0.5, MARGIN.top + plotH + 0.5);
    ctx.lineTo(W - MARGIN.right, MARGIN.top + plotH + 0.5);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    ctx.fillText("row", W - MARGIN.right, H - 2);

    // data: min/max per pixel column when there are more points than pixels
    ctx.save();
    ctx.beginPath();
    ctx.rect(MARGIN.left, MARGIN.top - 4, plotW + 4, plotH + 8);
    ctx.clip();
    ctx.strokeStyle = cLine;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (pts.length > plotW * 2) {
      let col = -1, lo = 0, hi = 0, first = true;
      const flush = () => {
        if (col < 0) return;
        if (first) { ctx.moveTo(col, sy(hi)); first = false; } else ctx.lineTo(col, sy(hi));
        ctx.lineTo(col, sy(lo));
      };
      for (const [x, y] of pts) {
        const c = Math.round(sx(x));
        if (c !== col) { flush(); col = c; lo = hi = y; }
        else { if (y < lo) lo = y; if (y > hi) hi = y; }
      }
      flush();
    } else {
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y))));
    }
    ctx.stroke();
    if (pts.length <= 200) {
      ctx.fillStyle = cLine;
      for (const [x, y] of pts) {
        ctx.beginPath(); ctx.arc(sx(x), sy(y), 2.5, 0, Math.PI * 2); ctx.fill();
      }
    }
    const [lx, ly] = pts[pts.length - 1];
    ctx.fillStyle = cLast;
    ctx.beginPath(); ctx.arc(sx(lx), sy(ly), 4.5, 0, Math.PI * 2); ctx.fill();
    ctx.restore();
  }

  /** Counts of values in equal-width bins (about √n of them, 5 to 40). */
  _histogram(ctx, W, H, plotW, plotH, { cText, cGrid, cAxis, cLine }) {
    const pts = this.points;
    let lo = Infinity, hi = -Infinity;
    for (const [, y] of pts) { if (y < lo) lo = y; if (y > hi) hi = y; }
    if (hi === lo) { hi = lo + 1; }
    const bins = Math.max(5, Math.min(40, Math.round(Math.sqrt(pts.length))));
    const counts = new Array(bins).fill(0);
    for (const [, y] of pts) counts[Math.min(bins - 1, Math.floor(((y - lo) / (hi - lo)) * bins))] += 1;
    const top = Math.max(...counts);
    this.canvas.dataset.bins = counts.join(",");
    const bw = plotW / bins;
    ctx.strokeStyle = cGrid;
    ctx.fillStyle = cText;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of ticks(0, top, Math.max(2, Math.floor(plotH / 40)))) {
      if (!Number.isInteger(t)) continue;
      const y = Math.round(MARGIN.top + (1 - t / top) * plotH) + 0.5;
      ctx.beginPath(); ctx.moveTo(MARGIN.left, y); ctx.lineTo(W - MARGIN.right, y); ctx.stroke();
      ctx.fillText(String(t), MARGIN.left - 6, y);
    }
    ctx.fillStyle = cLine;
    counts.forEach((c, i) => {
      const h = (c / top) * plotH;
      ctx.fillRect(MARGIN.left + i * bw + 1, MARGIN.top + plotH - h, Math.max(1, bw - 2), h);
    });
    ctx.strokeStyle = cAxis;
    ctx.beginPath();
    ctx.moveTo(MARGIN.left + 0.5, MARGIN.top);
    ctx.lineTo(MARGIN.left + 0.5, MARGIN.top + plotH + 0.5);
    ctx.lineTo(W - MARGIN.right, MARGIN.top + plotH + 0.5);
    ctx.stroke();
    ctx.fillStyle = cText;
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText(formatNumber(lo), MARGIN.left, MARGIN.top + plotH + 6);
    ctx.textAlign = "right";
    ctx.fillText(formatNumber(hi), W - MARGIN.right, MARGIN.top + plotH + 6);
    ctx.textBaseline = "bottom";
    ctx.fillText(`${this.column} (count per bin)`, W - MARGIN.right, H - 2);
  }
}
