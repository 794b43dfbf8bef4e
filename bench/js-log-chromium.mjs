// log() from JavaScript in headless Chromium: calls/s and scalars/s with 10 scalars a call
// (1,000,000 calls after a warm-up, median of 3), and the worst single log() call while
// flushes to IndexedDB run. `node bench/js-log-chromium.mjs` (after ./scripts/build-pkg)
import { createServer } from "node:http";
import { readFileSync, statSync } from "node:fs";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const ROOT = new URL("../", import.meta.url).pathname;
const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
const PAGE = `<!doctype html><script type="module">
import * as tidelog from "/pkg/tidelog.js";
window.bench = async (n) => {
  const run = await tidelog.init({ project: "bench", mode: "offline", systemIntervalMs: 0 });
  const pass = () => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      tidelog.log({ loss: 1 / (i + 1), acc: i * 1e-6, lr: 1e-3 - i * 1e-10, m3: i + 3, m4: i * 0.5, m5: i + 5.5, m6: -i, m7: i * 2, m8: i % 7, m9: i * 0.25 });
    }
    return performance.now() - t0;
  };
  pass(); await run.flush();
  const times = [];
  for (let r = 0; r < 3; r++) { times.push(pass()); await run.flush(); }
  times.sort((a, b) => a - b);
  // Worst single call while flushes run: log in 10 ms slices so the 100 ms flush timer fires.
  // Each loop runs once unmeasured first, so the JIT compiling the loop itself is not counted.
  const sliced = (ms, call) => {
    const times = [];
    const until = performance.now() + ms;
    return (async () => {
      while (performance.now() < until) {
        const slice = performance.now() + 10;
        while (performance.now() < slice) {
          const t0 = performance.now();
          call(times.length);
          times.push(performance.now() - t0);
        }
        await new Promise((r) => setTimeout(r, 0));
      }
      times.sort((a, b) => a - b);
      return { worst: times[times.length - 1], p999: times[Math.floor(times.length * 0.999)], over1: times.filter((t) => t > 1).length, calls: times.length };
    })();
  };
  const logOne = (i) => tidelog.log({ loss: Math.random(), acc: i * 1e-6, lr: 1e-3, m3: 3, m4: 4, m5: 5, m6: 6, m7: 7, m8: 8, m9: 9 });
  await sliced(2000, logOne);
  const during = await sliced(3000, logOne);
  // The same loop around a function that keeps the object, for what GC and the machine cost here.
  const kept = [];
  const keep = (i) => { kept[i % 1000] = { loss: Math.random(), acc: i * 1e-6, lr: 1e-3, m3: 3, m4: 4, m5: 5, m6: 6, m7: 7, m8: 8, m9: 9 }; };
  await sliced(2000, keep);
  const baseline = await sliced(3000, keep);
  await run.finish();
  return { median: times[1], during, baseline };
};
window.ready = true;
</script>`;

const server = createServer((req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  if (path === "/") return res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
  const file = normalize(join(ROOT, path));
  if (!file.startsWith(join(ROOT, "pkg")) || !statSync(file, { throwIfNoEntry: false })?.isFile()) return res.writeHead(404).end();
  res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(readFileSync(file));
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
});
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => window.ready === true);
  const N = 1_000_000;
  const r = await page.evaluate((n) => window.bench(n), N);
  console.log(`Chromium ${browser.version()}: ${N} log() calls of 10 scalars in ${r.median.toFixed(0)} ms (median of 3)`);
  console.log(`  ${(N / (r.median / 1000) / 1e6).toFixed(2)} M calls/s = ${((N * 10) / (r.median / 1000) / 1e6).toFixed(1)} M scalars/s`);
  const fmt = (x) => `worst ${x.worst.toFixed(1)} ms, 99.9th percentile ${x.p999.toFixed(3)} ms, ${x.over1} of ${x.calls} calls over 1 ms`;
  console.log(`  single log() calls while flushes ran: ${fmt(r.during)}`);
  console.log(`  the same loop without tidelog:        ${fmt(r.baseline)}`);
} finally {
  await browser.close();
  server.close();
}
