// The data rows table, newest first, virtualised: only the rows in view (plus a margin) are
// in the DOM, so a run of 100,000 rows costs the same per frame as one of 50. The table is
// moved inside a tall sizer to where the view is, so its header always sits on top.

import { $, h, setText } from "./dom.js";
import { app } from "./state.js";
import { displayColumns } from "./columns.js";
import { formatCell, isNumber } from "./format.js";

const OVERSCAN = 12; // rows rendered beyond the view (small runs are rendered whole)
const FALLBACK_ROW_PX = 29;

const view = { columnsKey: null, runId: undefined, first: -1, count: -1, total: -1, rowPx: 0, headPx: 0, dirty: true };
let order = null; // row indices newest first, when the rows have holes; null when dense

const wrap = () => $("data-wrap");

/** Row index shown at position p (0 = newest). */
function indexAt(p) {
  const live = app.live;
  if (live.count === live.rows.length) return live.rows.length - 1 - p;
  if (!order) {
    order = [];
    for (let i = live.rows.length - 1; i >= 0; i -= 1) if (live.rows[i] !== undefined) order.push(i);
  }
  return order[p];
}

/** The rows changed (new run, new rows): redraw on the next frame. */
export function invalidateTable() {
  order = null;
  view.dirty = true;
}

function rowElement(index, row, columns) {
  const tr = document.createElement("tr");
  tr.dataset.row = String(index);
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

/** Render what is in view; cheap when nothing changed. Called once per animation frame. */
export function renderTable() {
  const live = app.live;
  const table = $("data-table");
  const scroller = wrap();
  const columns = displayColumns(live.columns);
  const key = columns.join("\u0000");
  if (key !== view.columnsKey || view.runId !== live.runId) {
    table.tHead.replaceChildren(h("tr", {}, h("th", { scope: "col" }, "#"), columns.map((c) => h("th", { scope: "col" }, c))));
    view.columnsKey = key;
    view.runId = live.runId;
    view.dirty = true;
  }
  const rowPx = view.rowPx || FALLBACK_ROW_PX;
  const total = live.count;
  const visible = Math.ceil((scroller.clientHeight || 400) / rowPx);
  const first = Math.max(0, Math.min(Math.floor(scroller.scrollTop / rowPx), total - 1));
  const count = Math.min(total - first, visible + OVERSCAN);
  if (view.dirty || first !== view.first || count !== view.count || total !== view.total) {
    const frag = document.createDocumentFragment();
    for (let p = first; p < first + count; p += 1) {
      const index = indexAt(p);
      if (index !== undefined && live.rows[index] !== undefined) frag.append(rowElement(index, live.rows[index], columns));
    }
    table.tBodies[0].replaceChildren(frag);
    if (!view.rowPx && table.tBodies[0].rows.length) {
      view.rowPx = table.tBodies[0].rows[0].getBoundingClientRect().height || FALLBACK_ROW_PX;
      view.headPx = table.tHead.getBoundingClientRect().height;
    }
    $("data-sizer").style.height = `${Math.ceil(total * (view.rowPx || rowPx) + (view.headPx || 32))}px`;
    table.style.transform = `translateY(${first * (view.rowPx || rowPx)}px)`;
    view.first = first;
    view.count = count;
    view.total = total;
    view.dirty = false;
  }
  table.dataset.rows = String(total);
  setText($("data-note"), total
    ? `Newest first: ${total} row${total === 1 ? "" : "s"}${total > count ? "; scroll for older ones (the data file has them all)" : ""}.`
    : "No rows yet. Rows appear here as trials end.");
}

export function initTable(schedule) {
  wrap().addEventListener("scroll", schedule, { passive: true });
}
