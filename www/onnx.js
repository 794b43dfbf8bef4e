// The onnxruntime-web demo: batches of generated stripe images through www/models/stripes.onnx
// (made by scripts/make-onnx-model.py), each batch's latency and throughput and a sample of
// predictions logged with tidelog.
import * as ort from "/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";
import * as tidelog from "/pkg/tidelog.js";

const CLASSES = ["horizontal", "vertical", "diagonal"];
const SIZE = 8;
const SHOWN = 8;
const SCALE = 4;

// The wasm backend on one thread, its files from node_modules like the module itself.
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = new URL("/node_modules/onnxruntime-web/dist/", location.href).href;

const $ = (id) => document.getElementById(id);
$("origin").textContent = location.origin;
for (const k of ["server", "apikey"]) {
  $(k).value = localStorage.getItem(`demo.${k}`) ?? "";
  $(k).addEventListener("change", () => localStorage.setItem(`demo.${k}`, $(k).value));
}

const session = await ort.InferenceSession.create(new URL("./models/stripes.onnx", import.meta.url).href, { executionProviders: ["wasm"] });

// A seeded generator (mulberry32): the same images for the same seed.
function random(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// One 8×8 image of class `cls`, as scripts/make-onnx-model.py trains on them.
function stripes(cls, rand, out, at) {
  const phase = Math.floor(rand() * 4);
  const period = rand() < 0.5 ? 2 : 4;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const coord = [y, x, x + y][cls];
      const v = (coord + phase) % period < period / 2 ? 1 : 0;
      out[at + y * SIZE + x] = Math.min(1, Math.max(0, v + (rand() - 0.5) * 0.4));
    }
  }
}

// The first SHOWN images of a batch side by side, scaled up, as RGBA for tidelog.Image.
function strip(images) {
  const width = SHOWN * SIZE * SCALE;
  const height = SIZE * SCALE;
  const data = new Uint8ClampedArray(width * height * 4);
  for (let py = 0; py < height; py++) {
    for (let px = 0; px < width; px++) {
      const n = Math.floor(px / (SIZE * SCALE));
      const v = images[n * SIZE * SIZE + Math.floor(py / SCALE) * SIZE + Math.floor((px % (SIZE * SCALE)) / SCALE)];
      const o = (py * width + px) * 4;
      data[o] = data[o + 1] = data[o + 2] = Math.round(v * 255);
      data[o + 3] = 255;
    }
  }
  return { data, width, height };
}

/** Runs `batches` batches of `batchSize` images as one tidelog run; resolves to what it logged. */
export async function infer({ batches = 50, batchSize = 256, seed = 1 } = {}) {
  const server = $("server").value.trim() || undefined;
  const apiKey = $("apikey").value.trim() || undefined;
  const run = await tidelog.init({
    project: "onnx-demo",
    config: { model: "stripes.onnx", backend: "wasm", threads: 1, batch_size: batchSize, batches, onnxruntime_web: ort.env.versions.web },
    server, apiKey,
  });
  const rand = random(seed);
  const input = new Float32Array(batchSize * SIZE * SIZE);
  const labels = new Int32Array(batchSize);
  let correct = 0;
  let totalMs = 0;
  let probs = null;
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < batchSize; i++) {
      labels[i] = Math.floor(rand() * CLASSES.length);
      stripes(labels[i], rand, input, i * SIZE * SIZE);
    }
    const t0 = performance.now();
    const out = await session.run({ image: new ort.Tensor("float32", input, [batchSize, 1, SIZE, SIZE]) });
    const ms = performance.now() - t0;
    probs = out.probs.data;
    let right = 0;
    for (let i = 0; i < batchSize; i++) if (argmax(probs, i) === labels[i]) right++;
    correct += right;
    totalMs += ms;
    // A batch faster than the clock's resolution has no finite rate: only its latency is logged.
    tidelog.log({ latency_ms: ms, batch_accuracy: right / batchSize, ...(ms > 0 ? { throughput: (batchSize * 1000) / ms } : {}) });
    $("status").textContent = `batch ${b + 1}/${batches}: ${ms.toFixed(2)} ms`;
  }
  const rows = Array.from({ length: SHOWN }, (_, i) => {
    const p = argmax(probs, i);
    return [i, CLASSES[labels[i]], CLASSES[p], Number(probs[i * CLASSES.length + p].toFixed(4))];
  });
  const image = strip(input);
  $("samples").getContext("2d").putImageData(new ImageData(image.data, image.width, image.height), 0, 0);
  tidelog.log({
    samples: tidelog.Image(image, { caption: rows.map((r) => r[2]).join(", ") }),
    predictions: tidelog.Table({ columns: ["index", "label", "predicted", "confidence"], data: rows }),
  });
  const summary = { accuracy: correct / (batches * batchSize), throughput: (batches * batchSize * 1000) / totalMs, mean_latency_ms: totalMs / batches };
  for (const [k, v] of Object.entries(summary)) run.summary.set(k, v);
  await tidelog.finish();
  $("status").textContent = `${batches} batches: ${summary.throughput.toFixed(0)} images/s, accuracy ${summary.accuracy.toFixed(3)}`;
  return { id: run.id, rows, summary };
}

function argmax(probs, i) {
  let best = 0;
  for (let c = 1; c < CLASSES.length; c++) if (probs[i * CLASSES.length + c] > probs[i * CLASSES.length + best]) best = c;
  return best;
}

window.onnxDemo = { infer };
$("run").disabled = false;
$("run").addEventListener("click", () => infer({ batches: Number($("batches").value), batchSize: Number($("batch").value) }));
$("status").textContent = `model loaded (onnxruntime-web ${ort.env.versions.web}, wasm backend, 1 thread)`;
