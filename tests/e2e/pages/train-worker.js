// A training loop in a dedicated (module) Web Worker, logging through the package's browser
// entry into IndexedDB: logistic regression by SGD on a fixed two-class set. Every
// `flushEvery` steps it awaits run.flush() and posts the step it reached, so the page knows
// what is stored before it terminates the worker mid-run.
import * as tidelog from "/pkg/tidelog.js";

let run = null;
const points = Array.from({ length: 64 }, (_, k) => {
  const cls = k % 2;
  return { x: [Math.cos(k) + (cls ? 1.5 : -1.5), Math.sin(k)], y: cls };
});
const w = [0, 0, 0];

function sgdStep(k) {
  const p = points[k % points.length];
  const z = w[0] * p.x[0] + w[1] * p.x[1] + w[2];
  const pred = 1 / (1 + Math.exp(-z));
  const g = pred - p.y;
  w[0] -= 0.1 * g * p.x[0];
  w[1] -= 0.1 * g * p.x[1];
  w[2] -= 0.1 * g;
  return -(p.y * Math.log(pred + 1e-9) + (1 - p.y) * Math.log(1 - pred + 1e-9));
}

const handlers = {
  async start({ id, server, apiKey }) {
    run = await tidelog.init({ project: "worker", id, resume: "allow", server, apiKey, syncIntervalMs: 200, systemIntervalMs: 200 });
    return run.id;
  },
  async train({ steps, flushEvery }) {
    for (let k = 0; k < steps; k++) {
      const i = run.step;
      tidelog.log({ i, loss: sgdStep(i), w0: w[0], src: "worker" });
      if ((k + 1) % flushEvery === 0) {
        await run.flush();
        postMessage({ flushed: run.step });
      }
    }
    return run.step;
  },
  finish: () => tidelog.finish(),
  pending: () => tidelog.pending(),
  global: () => ({ isWorker: typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope, hasWindow: typeof window !== "undefined" }),
};

self.onmessage = async ({ data }) => {
  try {
    postMessage({ reply: data.n, value: await handlers[data.cmd](data) });
  } catch (e) {
    postMessage({ reply: data.n, error: String(e?.message ?? e) });
  }
};
postMessage({ ready: true });
