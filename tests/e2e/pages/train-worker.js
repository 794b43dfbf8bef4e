// A training loop in a dedicated (module) Web Worker, logging through the package's browser
// entry into IndexedDB: a small tfjs network (its ES module build, CPU backend) learns a fixed
// two-class set. Every `flushEvery` steps it awaits run.flush() and posts the step it reached,
// so the page knows what is stored before it terminates the worker mid-run.
import * as tf from "/node_modules/@tensorflow/tfjs/dist/tf.fesm.min.js";
import * as tidelog from "/pkg/tidelog.js";

let run = null;
let model = null;
// Two classes of 2-d points on either side of x = 0.
const points = Array.from({ length: 64 }, (_, k) => [Math.cos(k) + (k % 2 ? 1.5 : -1.5), Math.sin(k)]);
const xs = tf.tensor2d(points);
const ys = tf.tensor2d(points.map((_, k) => [k % 2]));

async function ready() {
  if (model) return;
  await tf.setBackend("cpu");
  model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 4, activation: "relu" }), tf.layers.dense({ units: 1, activation: "sigmoid" })] });
  model.compile({ optimizer: tf.train.sgd(0.1), loss: "binaryCrossentropy", metrics: ["accuracy"] });
}

const handlers = {
  async start({ id, server, apiKey }) {
    run = await tidelog.init({ project: "worker", id, resume: "allow", server, apiKey, syncIntervalMs: 200, systemIntervalMs: 200 });
    return run.id;
  },
  async train({ steps, flushEvery }) {
    await ready();
    for (let k = 0; k < steps; k++) {
      const [loss, acc] = await model.trainOnBatch(xs, ys);
      tidelog.log({ i: run.step, loss, acc, src: "worker" });
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
