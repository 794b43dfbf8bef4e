// The www/ demo: trains a tiny tfjs classifier on a spiral and logs every step with tidelog.
import * as tidelog from "/pkg/tidelog.js";

const $ = (id) => document.getElementById(id);
$("origin").textContent = location.origin;
for (const k of ["server", "apikey"]) {
  $(k).value = localStorage.getItem(`demo.${k}`) ?? "";
  $(k).addEventListener("change", () => localStorage.setItem(`demo.${k}`, $(k).value));
}

function spiral(n) {
  const xs = [];
  const ys = [];
  for (let i = 0; i < n; i++) {
    const cls = i % 2;
    const r = (i / n) * 5;
    const t = 1.75 * (i / n) * 2 * Math.PI + cls * Math.PI;
    xs.push([r * Math.sin(t) + Math.random() * 0.2, r * Math.cos(t) + Math.random() * 0.2]);
    ys.push(cls);
  }
  return { xs: tf.tensor2d(xs), ys: tf.tensor1d(ys, "float32"), points: xs, labels: ys };
}

function draw(data) {
  const ctx = $("plot").getContext("2d");
  ctx.clearRect(0, 0, 240, 240);
  data.points.forEach(([x, y], i) => {
    ctx.fillStyle = data.labels[i] ? "#1d5fa8" : "#e8a33d";
    ctx.fillRect(120 + x * 20, 120 + y * 20, 3, 3);
  });
}

function showStatus(extra = "") {
  const p = tidelog.pending();
  $("status").textContent =
    `online: ${p.online}  buffered: ${p.buffered}  unsynced: ${p.unsynced}  syncing: ${p.syncing}\n` +
    `last sync: ${p.lastSync ? new Date(p.lastSync).toLocaleTimeString() : "never"}  last error: ${p.lastError ?? "none"}\n${extra}`;
}

export async function train(steps) {
  const server = $("server").value || undefined;
  const apiKey = $("apikey").value || undefined;
  const run = await tidelog.init({ project: "browser-demo", config: { steps, hidden: 16, lr: 0.05, backend: tf.getBackend() }, server, apiKey });
  const data = spiral(400);
  draw(data);
  const model = tf.sequential({ layers: [
    tf.layers.dense({ inputShape: [2], units: 16, activation: "tanh" }),
    tf.layers.dense({ units: 16, activation: "tanh" }),
    tf.layers.dense({ units: 1, activation: "sigmoid" }),
  ] });
  model.compile({ optimizer: tf.train.adam(0.05), loss: "binaryCrossentropy", metrics: ["accuracy"] });
  for (let step = 0; step < steps; step++) {
    const h = await model.trainOnBatch(data.xs, data.ys);
    const [loss, acc] = Array.isArray(h) ? h : [h, 0];
    tidelog.log({ loss, acc });
    if (step % 10 === 0) showStatus(`run ${run.id} step ${step}: loss ${loss.toFixed(4)} acc ${acc.toFixed(3)}`);
  }
  const preds = model.predict(data.xs).dataSync();
  const matrix = [[0, 0], [0, 0]];
  preds.forEach((p, i) => matrix[data.labels[i]][p > 0.5 ? 1 : 0]++);
  tidelog.log({
    confusion: tidelog.Table({ columns: ["true", "pred 0", "pred 1"], data: matrix.map((r, i) => [i, ...r]) }),
    weights: tidelog.Histogram(model.getWeights()[0].dataSync(), { bins: 30 }),
    data: tidelog.Image($("plot"), { caption: "training data" }),
  });
  await tidelog.finish();
  showStatus(`run ${run.id} finished`);
  return run.id;
}

window.demo = { train };
$("train").addEventListener("click", () => train(Number($("steps").value) || 300));
tidelog.on("sync", () => showStatus());
setInterval(() => showStatus(), 1000);
showStatus();
