// log() from JavaScript in Node: calls/s and scalars/s with 10 scalars a call
// (1,000,000 calls after a warm-up, median of 3). `node bench/js-log-node.mjs`
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tidelog from "../pkg/node.js";

const N = 1_000_000;
const run = await tidelog.init({ project: "bench", dir: mkdtempSync(join(tmpdir(), "tidelog-bench-")), mode: "offline", systemIntervalMs: 0 });

function pass() {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    tidelog.log({ loss: 1 / (i + 1), acc: i * 1e-6, lr: 1e-3 - i * 1e-10, m3: i + 3, m4: i * 0.5, m5: i + 5.5, m6: -i, m7: i * 2, m8: i % 7, m9: i * 0.25 });
  }
  return performance.now() - t0;
}

pass();
await run.flush();
const times = [];
for (let r = 0; r < 3; r++) {
  times.push(pass());
  await run.flush();
}
times.sort((a, b) => a - b);
const ms = times[1];
console.log(`Node ${process.version}: ${N} log() calls of 10 scalars in ${ms.toFixed(0)} ms (median of 3)`);
console.log(`  ${(N / (ms / 1000) / 1e6).toFixed(2)} M calls/s = ${((N * 10) / (ms / 1000) / 1e6).toFixed(1)} M scalars/s, ${((ms * 1e6) / N).toFixed(0)} ns per call`);
await run.finish();
