// The dashboard in real headless Chromium against a real `tidelog serve` holding synced runs:
// the run list, a run's charts (checked against the page's chart data, not pixels), files,
// system metrics, media, comparison, sorting, live updates; saves docs/dashboard.png.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, "target/debug/tidelog");
const QUICKSTART = join(ROOT, "target/debug/examples/quickstart");

const data = mkdtempSync(join(tmpdir(), "tidelog-dash-"));
const work = mkdtempSync(join(tmpdir(), "tidelog-dash-work-"));
const key = execFileSync(BIN, ["admin", "create-key", "--account", "demo", "--data", data]).toString().trim();
const server = spawn(BIN, ["serve", "--addr", "127.0.0.1:0", "--data", data], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve) => createInterface({ input: server.stdout }).once("line", (l) => resolve(l.replace("tidelog server listening on ", "").trim())));
const env = { ...process.env, TIDELOG_API_KEY: key, TIDELOG_BASE_URL: url };

const results = [];
async function check(name, fn) {
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name}`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const sync = () => execFileSync(BIN, ["sync"], { cwd: work, env, stdio: "pipe" });

// Runs to look at: two quickstarts, a `tidelog run` (output.log + system metrics), and a
// run with media logged through the npm package in Node.
execFileSync(QUICKSTART, { cwd: work, stdio: "pipe" });
execFileSync(QUICKSTART, { cwd: work, stdio: "pipe" });
execFileSync(BIN, ["run", "--project", "shell", "--system-interval", "1", "--", "sh", "-c", "echo hi; sleep 1.2"], { cwd: work, env, stdio: "pipe" });
const tidelog = await import(join(ROOT, "pkg/node.js"));
const media = await tidelog.init({ project: "vision", name: "media-demo", dir: work, mode: "offline", config: { lr: 0.01, batch: 32 }, systemIntervalMs: 0 });
for (let i = 0; i < 50; i++) tidelog.log({ loss: 2 * Math.exp(-i / 15) + 0.05 * Math.sin(i), acc: 1 - Math.exp(-i / 12) });
const px = new Uint8ClampedArray(16 * 16 * 4).map((_, p) => (p % 4 === 3 ? 255 : (p * 29) % 256));
tidelog.log({
  sample: tidelog.Image({ data: px, width: 16, height: 16 }, { caption: "input" }),
  weights: tidelog.Histogram(Array.from({ length: 500 }, (_, i) => Math.sin(i) * Math.cos(i / 7)), { bins: 20 }),
  confusion: tidelog.Table({ columns: ["class", "precision", "recall"], data: [["cat", 0.91, 0.88], ["dog", 0.87, 0.9]] }),
  pr: tidelog.Plot({ mark: "line", encoding: { x: { field: "recall" }, y: { field: "precision" } } }, { values: [{ recall: 0.1, precision: 0.99 }, { recall: 0.5, precision: 0.95 }, { recall: 0.9, precision: 0.8 }] }),
});
await tidelog.finish();
sync();

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on("pageerror", (e) => console.log(`  page error: ${e.message}`));
const rowIds = () => page.$$eval("#runs tbody tr", (trs) => trs.map((t) => t.dataset.run));
const runs = await (await fetch(`${url}/api/v1/runs`, { headers: { Authorization: `Bearer ${key}` } })).json();
const byName = (n) => runs.runs.find((r) => r.name === n);
const quick = runs.runs.filter((r) => r.project === "quickstart").map((r) => r.id);
const shell = runs.runs.find((r) => r.project === "shell").id;

try {
  await check("a wrong key is refused, the right one lists every run", async () => {
    await page.goto(url);
    await page.fill("#apikey", "tlk_wrong");
    await page.click("button[type=submit]");
    await page.waitForSelector(".login .error");
    await page.fill("#apikey", key);
    await page.click("button[type=submit]");
    await page.waitForSelector("#runs tbody tr");
    const ids = await rowIds();
    assert(ids.length === 4, `list shows ${ids.length} runs`);
    for (const r of runs.runs) assert(ids.includes(r.id), `run ${r.id} missing`);
    assert((await page.textContent("#account")) === "demo", "account shown");
  });

  await check("a run page charts every history key with the logged values", async () => {
    await page.goto(`${url}/#/runs/${quick[0]}`);
    await page.waitForSelector('[data-chart="loss"][data-points="10"]');
    const loss = await page.evaluate(() => window.tidelogDashboard.charts.get("loss"));
    assert(JSON.stringify(loss.series[0]) === JSON.stringify([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]), JSON.stringify(loss));
    assert(JSON.stringify(loss.x) === JSON.stringify([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), "x is the step");
    assert(await page.$('[data-chart="metric"][data-points="10"]'), "metric chart");
    assert((await page.textContent("#run-header")).includes("learning_rate"), "config shown");
  });

  await check("files and system metrics of a `tidelog run` run", async () => {
    await page.goto(`${url}/#/runs/${shell}`);
    await page.waitForSelector('#file-list a[data-path="output.log"]');
    await page.waitForSelector('[data-chart^="system:cpu.percent"]');
    const n = await page.$$eval('[data-chart^="system:"]', (c) => c.length);
    assert(n >= 3, `${n} system charts`);
  });

  await check("media: image, histogram, table and plot render", async () => {
    await page.goto(`${url}/#/runs/${byName("media-demo").id}`);
    await page.waitForSelector('#media [data-media="image"] img[src^="blob:"]');
    await page.waitForFunction(() => document.querySelector('#media [data-media="image"] img').naturalWidth === 16);
    await page.waitForSelector('#media [data-media="histogram"] [data-points="20"]');
    await page.waitForSelector('#media [data-media="table"] td');
    await page.waitForSelector('#media [data-media="plot"] [data-points="3"]');
    await page.waitForSelector('[data-chart="acc"][data-points="50"]');
    await page.screenshot({ path: join(ROOT, "docs/dashboard.png"), fullPage: true });
  });

  await check("comparison overlays two runs on one chart", async () => {
    await page.goto(`${url}/#/compare/${quick.join(",")}`);
    await page.waitForSelector('[data-chart="compare:loss"][data-series="2"]');
    const c = await page.evaluate(() => window.tidelogDashboard.charts.get("compare:loss"));
    assert(c.series.length === 2 && c.series.every((s) => s.length === 10), JSON.stringify(c));
  });

  await check("sorting by a column and selecting runs to compare from the list", async () => {
    await page.goto(`${url}/#/`);
    await page.waitForSelector("#runs tbody tr");
    await page.click('th[data-col="project"]');
    const projects = await page.$$eval("#runs tbody tr td:nth-child(3)", (tds) => tds.map((t) => t.textContent));
    assert(JSON.stringify(projects) === JSON.stringify([...projects].sort()), `not sorted: ${projects}`);
    await page.click('th[data-col="project"]');
    const desc = await page.$$eval("#runs tbody tr td:nth-child(3)", (tds) => tds.map((t) => t.textContent));
    assert(JSON.stringify(desc) === JSON.stringify([...projects].reverse()), `not reversed: ${desc}`);
    for (const id of quick) await page.check(`tr[data-run="${id}"] input[type=checkbox]`);
    await page.click("#compare");
    await page.waitForSelector('[data-chart="compare:loss"][data-series="2"]');
  });

  await check("live: a run synced after the page loaded appears without a reload", async () => {
    await page.goto(`${url}/#/`);
    await page.waitForSelector("#runs tbody tr");
    execFileSync(QUICKSTART, { cwd: work, stdio: "pipe" });
    sync();
    await page.waitForFunction(() => document.querySelectorAll("#runs tbody tr").length === 5, null, { timeout: 10_000 });
  });
} finally {
  await browser.close();
  server.kill();
}
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
