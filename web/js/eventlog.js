// The event log panel: what happened, newest first, bounded.

import { $, h } from "./dom.js";
import { clockOffset, serverNow } from "./state.js";

const MAX_LOG = 200;

export function logEvent(time, text, kind = "info") {
  const list = $("event-log");
  const when = new Date(((time || serverNow()) - clockOffset()) * 1000);
  list.prepend(h("li", { class: `log-${kind}` },
    h("time", { datetime: when.toISOString(), class: "mono" }, when.toLocaleTimeString([], { hour12: false })),
    " ", h("span", {}, text)));
  while (list.children.length > MAX_LOG) list.lastElementChild.remove();
}
