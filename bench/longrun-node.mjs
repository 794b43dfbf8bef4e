// Long runs from Node (bench/longrun.sh runs each mode under /usr/bin/time -v for peak RSS):
// `log DIR STEPS` logs STEPS steps of 10 scalars and finishes (prints the log() rate),
// `resume DIR` resumes the run, logs one step and finishes, `sync DIR` is `tidelog.sync()`
// with TIDELOG_BASE_URL and TIDELOG_API_KEY.
import * as tidelog from "../pkg/node.js";

const [mode, dir, steps] = process.argv.slice(2);
const base = { project: "bench", id: "longnode1", dir, mode: "offline", systemIntervalMs: 0 };
const step = (i) => ({ loss: 1 / (i + 1), acc: i * 1e-6, lr: 1e-3 - i * 1e-10, m3: i + 3, m4: i * 0.5, m5: i + 5.5, m6: -i, m7: i * 2, m8: i % 7, m9: i * 0.25 });

if (mode === "log") {
  const n = Number(steps);
  await tidelog.init(base);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    tidelog.log(step(i));
    // A training loop awaits its batches: the package stores on its own (every 8,192 calls
    // or 100 ms), whenever the loop lets it.
    if (i % 1024 === 1023) await new Promise((r) => setImmediate(r));
  }
  const ms = performance.now() - t0;
  const t1 = performance.now();
  await tidelog.finish();
  console.log(`node log: ${n} steps x 10 scalars: ${((n * 10) / (ms / 1000) / 1e6).toFixed(1)} M scalars/s; finish ${((performance.now() - t1) / 1000).toFixed(2)} s`);
} else if (mode === "resume") {
  const t0 = performance.now();
  const run = await tidelog.init({ ...base, resume: "must" });
  const at = run.step;
  tidelog.log(step(at));
  await tidelog.finish();
  console.log(`node resume at step ${at}, log 1 step, finish: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
} else if (mode === "sync") {
  const t0 = performance.now();
  // sync() uses the folder of the last init: a one-record run there names it.
  await tidelog.init({ ...base, id: undefined, project: "bench-sync-probe" });
  await tidelog.finish();
  const reports = await tidelog.sync();
  console.log(`node sync: ${((performance.now() - t0) / 1000).toFixed(2)} s ${JSON.stringify(reports ?? null).slice(0, 200)}`);
} else {
  throw new Error(`unknown mode ${mode}`);
}
