// Protocol values the dashboard relies on, in one place so they can be swapped for the
// generated web/js/protocol.js (made from the pydantic models) without hunting through modules.

export const CLOSE = { GOING_AWAY: 1001, AUTH_FAILED: 4001 };
export const ERROR = { EXPIRED: "expired", NOT_SENT: "not_sent", UNCONFIRMED: "unconfirmed" };
// Statuses with a run in progress.
export const ACTIVE = new Set(["starting", "running", "paused", "stopping"]);
export const SHUTTING_DOWN = "shutting_down";
export const WORKER_GONE = new Set(["worker_exited", "unavailable"]);
