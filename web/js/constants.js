// Protocol values the dashboard relies on. Codes, message types and statuses come from the
// generated web/js/protocol.js (made from the pydantic models by scripts/gen_protocol_doc.py);
// only the page's own groupings and client-side outcomes are defined here.

import { CLOSE, ERROR as PROTOCOL_ERROR, STATUS } from "./protocol.js";

export { CLOSE };
// Request outcomes: the server's `expired`, and the page's own for requests it never sent or never saw answered.
export const ERROR = { EXPIRED: PROTOCOL_ERROR.EXPIRED, NOT_SENT: "not_sent", UNCONFIRMED: "unconfirmed" };
// Statuses with a run in progress.
export const ACTIVE = new Set([STATUS.STARTING, STATUS.RUNNING, STATUS.PAUSED, STATUS.STOPPING]);
export const SHUTTING_DOWN = STATUS.SHUTTING_DOWN;
export const WORKER_GONE = new Set([STATUS.WORKER_EXITED, STATUS.UNAVAILABLE]);
