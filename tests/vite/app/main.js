// The demo as a bundled app: fits y = 2x + 1 by gradient descent, logging each step through
// tidelog (IndexedDB), then syncs to the server named in the page's query string.
import * as tidelog from "tidelog";

const q = new URLSearchParams(location.search);
const steps = Number(q.get("steps") ?? 50);
const status = document.getElementById("status");

async function main() {
  const run = await tidelog.init({
    project: "vite-app", config: { steps, lr: 0.1 }, server: q.get("server") ?? undefined, apiKey: q.get("key") ?? undefined,
    mode: "offline", systemIntervalMs: 0,
  });
  const xs = Array.from({ length: 32 }, (_, i) => i / 32);
  let w = 0;
  let b = 0;
  for (let step = 0; step < steps; step++) {
    let gw = 0;
    let gb = 0;
    let loss = 0;
    for (const x of xs) {
      const err = w * x + b - (2 * x + 1);
      loss += err * err / xs.length;
      gw += 2 * err * x / xs.length;
      gb += 2 * err / xs.length;
    }
    w -= 0.1 * gw;
    b -= 0.1 * gb;
    tidelog.log({ loss, w, b });
  }
  run.summary.set("final_w", w);
  await run.flush();
  status.textContent = `run ${run.id}: ${steps} steps stored`;
  return { id: run.id };
}

window.tidelogApp = { tidelog, ready: main() };
