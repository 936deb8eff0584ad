// Where the page's main thread time goes (for the benchmark and the browser console).

export const perf = { drainMs: 0, drainMax: 0, renderMs: 0, renderMax: 0, renders: 0 };

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
