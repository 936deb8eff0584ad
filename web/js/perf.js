// Where the page's main thread time goes (for the benchmark and the browser console).

export const perf = {
  drainMs: 0, drainMax: 0, renderMs: 0, renderMax: 0, renders: 0,
  frames: 0, frameGapMax: 0, // WebSocket frames received, and the longest wait between two of them
  lastFrameAt: 0,
};

/** Count a frame from the server (and how long since the previous one). */
export function frameIn() {
  const now = performance.now();
  if (perf.lastFrameAt && now - perf.lastFrameAt > perf.frameGapMax) perf.frameGapMax = now - perf.lastFrameAt;
  perf.lastFrameAt = now;
  perf.frames += 1;
}

/** Start counting afresh (the benchmark does at the start of each run). */
export function resetPerf() {
  for (const k of Object.keys(perf)) perf[k] = 0;
}

/** Run fn and add its duration to perf[name + "Ms"] (and the max). */
export function timed(name, fn) {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    const ms = performance.now() - t0;
    perf[`${name}Ms`] += ms;
    if (ms > perf[`${name}Max`]) perf[`${name}Max`] = ms;
  }
}
