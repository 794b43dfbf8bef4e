// The dashboard's run page on long runs (issue 11): for each size (default 1 k and 1 M steps of
// 10 scalars; SIZES="..." to choose) a run logged by benches/longrun.rs and synced to a release
// `tidelog serve`, then opened in headless Chromium ROUNDS times (default 5, each a fresh
// load of the page). Prints the median and worst time to the first chart drawn, from the
// dashboard's own performance marks: since the run page began ("tidelog:run-page") and since
// navigation. Reported, not asserted.
//
// Run: node bench/dashboard.mjs   (builds what it needs in release)
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { launch } from "../tests/e2e/lib/harness.mjs";

const ROOT = new URL("../", import.meta.url).pathname;
const TARGET = process.env.CARGO_TARGET_DIR ?? join(ROOT, "target");
const SIZES = (process.env.SIZES ?? "1000 1000000").split(/\s+/).filter(Boolean).map(Number);
const ROUNDS = Number(process.env.ROUNDS ?? 5);

execFileSync("cargo", ["build", "--quiet", "--release", "--bin", "tidelog"], { cwd: ROOT, stdio: "inherit" });
const BIN = join(TARGET, "release/tidelog");
const built = execFileSync("cargo", ["bench", "--quiet", "--bench", "longrun", "--no-run", "--message-format=json"], { cwd: ROOT }).toString();
const LONGRUN = [...built.matchAll(/"executable":"([^"]*longrun[^"]*)"/g)].pop()[1];

/** A release server on a fresh data folder: its URL, a key, and a way to stop it. */
async function serve() {
  const data = mkdtempSync(join(tmpdir(), "tidelog-bench-dash-"));
  const key = execFileSync(BIN, ["admin", "create-key", "--account", "bench", "--data", data]).toString().trim();
  const child = spawn(BIN, ["serve", "--addr", "127.0.0.1:0", "--data", data], { stdio: ["ignore", "pipe", "ignore"] });
  const url = await new Promise((resolve, reject) => {
    child.once("exit", (c) => reject(new Error(`tidelog serve exited ${c}`)));
    createInterface({ input: child.stdout }).once("line", (l) => resolve(l.replace("tidelog server listening on ", "").trim()));
  });
  return { url, key, stop: () => { child.kill(); rmSync(data, { recursive: true, force: true }); } };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const browser = await launch();
try {
  for (const steps of SIZES) {
    const server = await serve();
    const work = mkdtempSync(join(tmpdir(), "tidelog-bench-dash-run-"));
    try {
      execFileSync(LONGRUN, ["log", work, String(steps)], { stdio: "pipe" });
      execFileSync(BIN, ["sync"], { cwd: work, stdio: "pipe", env: { ...process.env, TIDELOG_BASE_URL: server.url, TIDELOG_API_KEY: server.key } });
      const id = readdirSync(join(work, "tidelog")).find((d) => d.startsWith("run-")).split("-").pop();
      const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      await page.goto(server.url);
      await page.evaluate((key) => localStorage.setItem("tidelog.apiKey", key), server.key);
      const sinceRunPage = [];
      const sinceNavigation = [];
      let points = 0;
      for (let round = 0; round < ROUNDS; round++) {
        if (round === 0) await page.goto(`${server.url}/#/runs/${id}`);
        else await page.reload();
        const m = await page.waitForFunction(() => {
          const mark = performance.getEntriesByName("tidelog:first-chart", "mark")[0];
          const measure = performance.getEntriesByName("tidelog:first-chart", "measure")[0];
          return mark && measure && { points: mark.detail.points, runPage: measure.duration, navigation: mark.startTime };
        }, null, { timeout: 120_000 }).then((h) => h.jsonValue());
        sinceRunPage.push(m.runPage);
        sinceNavigation.push(m.navigation);
        points = m.points;
      }
      await page.close();
      const fmt = (xs) => `median ${median(xs).toFixed(0)} ms, worst ${Math.max(...xs).toFixed(0)} ms`;
      console.log(`${steps} steps (${points} rows charted): first chart ${fmt(sinceRunPage)} after the run page began; ${fmt(sinceNavigation)} after navigation`);
    } finally {
      server.stop();
      rmSync(work, { recursive: true, force: true });
    }
  }
} finally {
  await browser.close();
}
