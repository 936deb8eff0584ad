// The dashboard's model: what the server told us, nothing else.

export function newLive(runId = null, key = null) {
  return { runId, key, rows: [], count: 0, columns: [], colSet: new Set(), stats: new Map() };
}

export const app = {
  conn: null,
  role: null,
  status: "idle",
  runId: null,
  key: null,
  runExpInfo: {},
  experiments: new Map(),
  selectedKey: null,
  formKey: null,
  runs: new Map(), // run_id -> record, oldest first
  live: newLive(),
  trial: null,
  plotChoice: null, // plot column picked by the user
  busy: new Set(),
  server: null,
  shown: false,
  contact: { fresh: false, last: null }, // heard from the server lately?
  shuttingDown: false, // the server said it is shutting down
};

/** Server-minus-local clock offset in seconds, from the connection's pings. */
export const clockOffset = () => (app.conn ? app.conn.clockOffset : 0);
export const serverNow = () => Date.now() / 1000 + clockOffset();

export function recordFor(runId) {
  return runId ? app.runs.get(runId) : undefined;
}
