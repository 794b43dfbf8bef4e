// The dashboard in headless Chromium against a real `tidelog serve` holding real runs: sign-in,
// the run list (filter, sorting, live), run pages (charts checked against the page's chart data,
// not pixels; x axis; system groups; media with the step slider; files), comparison, a live run
// updating in place, sign-out. Saves docs/dashboard.png.
//
// Needs `cargo build` (tidelog + examples) and `scripts/build-pkg` (pkg/, for the Node runs).
// Run: node tests/e2e/dashboard.mjs
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, "target/debug/tidelog");
const QUICKSTART = join(ROOT, "target/debug/examples/quickstart");
const started = Date.now();

const data = mkdtempSync(join(tmpdir(), "tidelog-dash-data-"));
const work = mkdtempSync(join(tmpdir(), "tidelog-dash-work-"));
const liveDir = mkdtempSync(join(tmpdir(), "tidelog-dash-live-"));
const key = execFileSync(BIN, ["admin", "create-key", "--account", "demo", "--data", data]).toString().trim();
const server = spawn(BIN, ["serve", "--addr", "127.0.0.1:0", "--data", data], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
process.on("exit", () => server.kill());
const url = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("tidelog serve did not start in 20 s")), 20_000);
  server.once("exit", (code) => reject(new Error(`tidelog serve exited with ${code}`)));
  createInterface({ input: server.stdout }).once("line", (line) => {
    clearTimeout(timer);
    resolve(line.replace("tidelog server listening on ", "").trim());
  });
});
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
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const quickstart = () => execFileSync(QUICKSTART, { cwd: work, stdio: "pipe" });
const sync = () => execFileSync(BIN, ["sync"], { cwd: work, env, stdio: "pipe" });
const apiGet = async (path) => (await fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${key}` } })).json();

let browser;
try {
  // The runs: two quickstarts (10 steps of `metric` = i and `loss` = 10 - i), a `tidelog run`
  // (output.log, system metrics, exit code), and a run logged with the npm package in Node with
  // media, NaN/Infinity values, nested config and system rows that include a GPU.
  quickstart();
  quickstart();
  execFileSync(BIN, ["run", "--project", "shell", "--system-interval", "1", "--", "sh", "-c", "echo hi; sleep 1.2"], { cwd: work, env, stdio: "pipe" });
  const tidelog = await import(join(ROOT, "pkg/node.js"));
  const run = await tidelog.init({
    project: "vision", name: "media-demo", dir: work, mode: "offline", systemIntervalMs: 0,
    config: { lr: 0.003, batch: 64, optimizer: { name: "adam", beta1: 0.9 } },
  });
  // The package samples Node's own metrics; these rows stand in for a host with a GPU, written
  // the way the package's sampler writes its rows.
  const systemRow = (i) => {
    const row = {
      "cpu.percent": 35 + 25 * Math.sin(i / 3), "memory.percent": 41 + i / 4, "memory.used_bytes": 6.5e9 + i * 2e7,
      "gpu.0.utilization": 80 + 15 * Math.sin(i / 2), "gpu.0.memory.used_bytes": 1.1e10 + i * 1e7, "gpu.0.temperature_c": 61 + i / 3, "gpu.0.power_w": 210 + 20 * Math.cos(i),
    };
    run._logSystem(row);
  };
  const picture = (i) => new Uint8ClampedArray(16 * 16 * 4).map((_, p) => (p % 4 === 3 ? 255 : ((p >> 2) * (7 + i) + (p % 4) * 80) % 256));
  for (let i = 0; i < 50; i++) {
    const row = { loss: 2 * Math.exp(-i / 15) + 0.05 * Math.sin(i), acc: 1 - Math.exp(-i / 12), grad_norm: i === 25 ? Infinity : i === 26 ? NaN : 1 / (1 + i / 10) };
    if (i % 10 === 0) {
      row.sample = tidelog.Image({ data: picture(i), width: 16, height: 16 }, { caption: `epoch ${i / 10}` });
      row.weights = tidelog.Histogram(Array.from({ length: 500 }, (_, k) => Math.sin(k) * Math.cos(k / 7) * (1 + i / 50)), { bins: 20 });
    }
    tidelog.log(row);
    if (i % 5 === 0) systemRow(i);
    await sleep(20);
  }
  tidelog.log({
    confusion: tidelog.Table({ columns: ["class", "precision", "recall"], data: [["cat", 0.91, 0.88], ["dog", 0.87, 0.9]] }),
    chirp: tidelog.Audio(Array.from({ length: 4000 }, (_, k) => 0.5 * Math.sin((k * k) / 4000)), { sampleRate: 8000 }),
    pr: tidelog.Plot({ mark: "line", encoding: { x: { field: "recall" }, y: { field: "precision" } } }, { values: [{ recall: 0.1, precision: 0.99 }, { recall: 0.5, precision: 0.95 }, { recall: 0.9, precision: 0.8 }] }),
  });
  await tidelog.finish();
  sync();

  const { runs } = await apiGet("/api/v1/runs");
  const quick = runs.filter((r) => r.project === "quickstart").map((r) => r.id);
  const shell = runs.find((r) => r.project === "shell").id;
  const media = runs.find((r) => r.name === "media-demo").id;
  assert(runs.length === 4 && quick.length === 2, `setup made ${runs.length} runs`);

  await check("the page and its assets: content types, revalidation, no outside URLs", async () => {
    const page = await fetch(`${url}/`);
    assert(page.headers.get("content-type").startsWith("text/html"), "html type");
    assert(page.headers.get("content-security-policy").includes("default-src 'self'"), "CSP");
    for (const [name, type] of [["app.js", "text/javascript"], ["app.css", "text/css"], ["uPlot.iife.min.js", "text/javascript"], ["uPlot.min.css", "text/css"]]) {
      const res = await fetch(`${url}/assets/${name}`);
      assert(res.status === 200 && res.headers.get("content-type").startsWith(type), `${name}: ${res.status} ${res.headers.get("content-type")}`);
      assert(res.headers.get("cache-control") === "no-cache", `${name} cache-control`);
      const again = await fetch(`${url}/assets/${name}`, { headers: { "If-None-Match": res.headers.get("etag") } });
      assert(again.status === 304, `${name} revalidation gave ${again.status}`);
    }
    const html = await page.text();
    const js = await (await fetch(`${url}/assets/app.js`)).text();
    assert(!/https?:\/\//.test(html + js), "the page names no outside URL");
    assert((await fetch(`${url}/assets/nope.js`)).status === 404, "unknown asset");
  });

  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
  });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const rowIds = () => page.$$eval("#runs tbody tr[data-run]", (trs) => trs.map((t) => t.dataset.run));
  const chart = (id) => page.evaluate((id) => window.tidelogDashboard.charts.get(id), id);

  await check("sign-in: a wrong key is refused with a message, the right one lists every run", async () => {
    await page.goto(url);
    await page.fill("#apikey", "tlk_wrong");
    await page.click("button[type=submit]");
    await page.waitForSelector(".login .error");
    assert((await page.textContent(".login .error")).includes("401"), "the message says why");
    await page.fill("#apikey", key);
    await page.click("button[type=submit]");
    await page.waitForSelector("#runs tbody tr[data-run]");
    const ids = await rowIds();
    assert(ids.length === 4, `list shows ${ids.length} runs`);
    const text = await page.textContent("#runs tbody");
    for (const r of runs) assert(ids.includes(r.id) && text.includes(r.id), `run ${r.id} missing`);
    assert((await page.textContent("#account")) === "demo", "account shown");
    assert((await page.evaluate(() => localStorage.getItem("tidelog.apiKey"))) === key, "key kept");
    const headers = await page.$$eval("#runs thead th[data-col]", (ths) => ths.map((t) => t.dataset.col));
    for (const col of ["name", "project", "state", "created", "config.learning_rate", "config.optimizer.name", "summary.loss"]) {
      assert(headers.includes(col), `column ${col} missing from ${headers}`);
    }
    assert(await page.$(`tr[data-run="${shell}"] .state-finished`), "state badge");
  });

  await check("run page: one chart per history key with the logged values; config, state", async () => {
    await page.goto(`${url}/#/runs/${quick[0]}`);
    await page.waitForSelector('[data-key="loss"][data-points="10"]');
    // The first chart's performance mark (bench/dashboard.mjs reads it on long runs): reported.
    const mark = await page.waitForFunction(() => {
      const m = performance.getEntriesByName("tidelog:first-chart", "mark")[0];
      const d = performance.getEntriesByName("tidelog:first-chart", "measure")[0];
      return m && d && { detail: m.detail, since_run_page: d.duration, since_navigation: m.startTime };
    }).then((h) => h.jsonValue());
    assert(mark.detail.id === quick[0] && mark.detail.points === 10, `first-chart mark: ${JSON.stringify(mark)}`);
    console.log(`     first chart of a 10-step run: ${mark.since_run_page.toFixed(1)} ms after the run page began, ${mark.since_navigation.toFixed(1)} ms after navigation`);
    const loss = await chart("loss");
    assert(same(loss.series[0], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]), JSON.stringify(loss));
    assert(same(loss.x, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), "x is the step");
    assert(loss.series.length === 1, "a short run's line has no min/max band");
    assert(same((await chart("metric")).series[0], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), "metric values");
    assert(await page.$('[data-key="metric"][data-points="10"]'), "metric chart");
    const header = await page.textContent("#run-header");
    assert(header.includes("learning_rate") && header.includes("finished") && header.includes("Exit code"), header);
  });

  await check("run page: the x axis switches to wall time", async () => {
    const { rows } = await apiGet(`/api/v1/runs/${quick[0]}/history`);
    await page.selectOption("#xaxis", "time");
    await page.waitForFunction(() => window.tidelogDashboard.charts.get("loss")?.x[0] > 1e9);
    assert(same((await chart("loss")).x, rows.map((r) => r._timestamp)), "x is _timestamp");
    await page.selectOption("#xaxis", "step");
    await page.waitForFunction(() => window.tidelogDashboard.charts.get("loss")?.x[0] === 0);
  });

  await check("a `tidelog run` run: output.log downloads, system metrics are charted by group", async () => {
    await page.goto(`${url}/#/runs/${shell}`);
    await page.waitForSelector('#file-list a[data-path="output.log"]');
    await page.waitForSelector('[data-chart="system:cpu.percent"]');
    const groups = await page.$$eval("#system [data-group]", (g) => g.map((e) => e.dataset.group));
    for (const g of ["cpu", "memory", "disk", "network"]) assert(groups.includes(g), `group ${g} missing from ${groups}`);
    const points = Number(await page.getAttribute('[data-chart="system:cpu.percent"]', "data-points"));
    assert(points >= 2, `${points} cpu samples`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click('#file-list a[data-path="output.log"]')]);
    assert(download.suggestedFilename() === "output.log", download.suggestedFilename());
    assert(readFileSync(await download.path(), "utf8").includes("hi"), "output.log content");
  });

  await check("media run: NaN/Infinity are gaps, GPU metrics grouped, image/histogram/table/plot, step slider", async () => {
    await page.goto(`${url}/#/runs/${media}`);
    await page.waitForSelector('[data-key="acc"][data-points="50"]');
    const grad = await chart("grad_norm");
    assert(grad.series[0][25] === null && grad.series[0][26] === null && grad.series[0][27] > 0, JSON.stringify(grad.series[0].slice(24, 28)));
    await page.waitForSelector('#system [data-group="gpu.0"] [data-key="gpu.0.power_w"][data-points="10"]');
    assert((await page.textContent('#system [data-group="gpu.0"] h3')) === "GPU 0", "GPU group title");
    assert(!(await page.$('[data-key="sample"].chart')), "media keys get no line chart");
    await page.waitForFunction(() => document.querySelector('[data-media-key="sample"] img')?.naturalWidth === 16);
    assert((await page.getAttribute('[data-media-key="sample"]', "data-step")) === "40", "the latest image by default");
    const latest = await page.getAttribute('[data-media-key="sample"] img', "src");
    await page.$eval('[data-media-slider="sample"]', (el) => { el.value = "0"; el.dispatchEvent(new Event("input")); });
    await page.waitForSelector('[data-media-key="sample"][data-step="0"]');
    await page.waitForFunction((old) => {
      const img = document.querySelector('[data-media-key="sample"] img');
      return img?.src.startsWith("blob:") && img.src !== old && img.naturalWidth === 16;
    }, latest);
    await page.waitForSelector('[data-media="histogram"] [data-points="20"]');
    await page.$eval('[data-media-slider="weights"]', (el) => { el.value = "1"; el.dispatchEvent(new Event("input")); });
    await page.waitForSelector('[data-media-key="weights"][data-step="10"] [data-points="20"]');
    await page.$eval('[data-media-slider="weights"]', (el) => { el.value = el.max; el.dispatchEvent(new Event("input")); });
    assert((await page.textContent('[data-media="table"]')).includes("precision"), "table");
    await page.waitForFunction(() => document.querySelector('[data-media="audio"] audio')?.src.startsWith("blob:"));
    assert((await page.textContent('[data-media="audio"]')).includes("8000 Hz"), "audio details");
    await page.waitForSelector('[data-media="plot"] [data-points="3"]');
    assert(same((await chart("media:pr")).series[0], [0.99, 0.95, 0.8]), "plot values");
    await page.$eval('[data-media-slider="sample"]', (el) => { el.value = el.max; el.dispatchEvent(new Event("input")); });
    await page.waitForFunction(() => document.querySelector('[data-media-key="sample"][data-step="40"] img')?.naturalWidth === 16);
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(ROOT, "docs/dashboard.png"), fullPage: true });
  });

  await check("list: project filter, sorting by a column header (both ways, numbers by value)", async () => {
    await page.goto(`${url}/#/`);
    await page.waitForSelector("#runs tbody tr[data-run]");
    const column = (cls) => page.$$eval(`#runs tbody td.col-${cls}`, (tds) => tds.map((t) => t.textContent));
    await page.click('th[data-col="project"]');
    const asc = await column("project");
    assert(same(asc, [...asc].sort()) && new Set(asc).size > 1, `not sorted: ${asc}`);
    await page.click('th[data-col="project"]');
    assert(same(await column("project"), [...asc].reverse()), "not reversed");
    await page.click('th[data-col="summary.loss"]');
    const lossOf = new Map(runs.map((r) => [r.id, r.summary.loss]));
    const losses = (await rowIds()).map((id) => lossOf.get(id));
    const byLoss = [...lossOf.values()].filter((v) => typeof v === "number").sort((x, y) => x - y);
    assert(same(losses.slice(0, byLoss.length), byLoss) && losses.at(-1) === undefined, `by loss: ${losses}`);
    await page.selectOption("#project", "quickstart");
    assert(same((await rowIds()).sort(), [...quick].sort()), "filter keeps the quickstarts");
    await page.selectOption("#project", { index: 0 });
  });

  await check("comparison: select runs in the list, one chart per shared key, one series per run", async () => {
    await page.goto(`${url}/#/`);
    await page.waitForSelector("#runs tbody tr[data-run]");
    assert(await page.isDisabled("#compare"), "compare needs two runs");
    for (const id of quick) await page.check(`tr[data-run="${id}"] input[type=checkbox]`);
    await page.click("#compare");
    await page.waitForSelector('[data-chart="compare:loss"][data-series="2"][data-points="10"]');
    const c = await chart("compare:loss");
    assert(c.series.length === 2 && c.series.every((s) => same(s, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1])), JSON.stringify(c));
    assert(await page.$('[data-chart="compare:metric"]'), "metric is shared too");
    const legend = await page.textContent('[data-chart="compare:loss"] .u-legend');
    assert(quick.every((id) => legend.includes(id)), `legend names the runs: ${legend}`);
    // Only the keys every run has: the quickstart and the media run share `loss` alone.
    await page.goto(`${url}/#/compare/${quick[0]},${media}`);
    // (The previous comparison stays on screen until the new one is drawn.)
    await page.waitForSelector(`#compare-head a[href="#/runs/${media}"]`);
    await page.waitForSelector('[data-chart="compare:loss"][data-series="2"][data-points="50"]');
    assert(!(await page.$('[data-chart="compare:metric"]')) && !(await page.$('[data-chart="compare:acc"]')), "only shared keys");
    const mixed = await chart("compare:loss");
    assert(mixed.x.length === 50 && mixed.series[0].filter((v) => v !== null && v !== undefined).length === 10, "aligned on steps");
  });

  await check("live: a run synced after the list loaded shows up without a reload", async () => {
    await page.goto(`${url}/#/`);
    await page.waitForSelector("#runs tbody tr[data-run]");
    await page.evaluate(() => { window.notReloaded = true; });
    quickstart();
    sync();
    await page.waitForFunction(() => document.querySelectorAll("#runs tbody tr[data-run]").length === 5, null, { timeout: 10_000 });
    assert(await page.evaluate(() => window.notReloaded), "the page was reloaded");
  });

  await check("live: a running run's charts grow in place, then it shows as finished", async () => {
    const live = await tidelog.init({ project: "live", name: "live-demo", dir: liveDir, server: url, apiKey: key, systemIntervalMs: 0 });
    for (let i = 0; i < 3; i++) tidelog.log({ loss: 1 / (i + 1) });
    await tidelog.sync();
    await page.goto(`${url}/#/runs/${live.id}`);
    await page.waitForSelector('#run-header .state-running');
    await page.waitForSelector('[data-key="loss"][data-points="3"]');
    await page.evaluate(() => { document.querySelector('[data-key="loss"] canvas').dataset.mark = "same"; });
    for (let i = 3; i < 7; i++) tidelog.log({ loss: 1 / (i + 1) });
    await tidelog.sync();
    await page.waitForSelector('[data-key="loss"][data-points="7"]', { timeout: 10_000 });
    assert(await page.$('[data-key="loss"] canvas[data-mark="same"]'), "the chart was redrawn from scratch");
    assert((await chart("loss")).series[0][6] === 1 / 7, "new values");
    await tidelog.finish();
    await page.waitForSelector('#run-header .state-finished', { timeout: 10_000 });
  });

  await check("a long run: charts thinned by M4 to at most 2,000 points that keep its first and last step and its one spike; its rare media all kept", async () => {
    const long = await tidelog.init({ project: "long", name: "long-demo", dir: liveDir, server: url, apiKey: key, systemIntervalMs: 0 });
    for (let i = 0; i < 12_000; i++) {
      const value = i === 5_555 ? 1e6 : i;
      tidelog.log(i === 7_777 || i === 7_778 ? { long: value, spread: tidelog.Histogram([i, i + 1, i + 2], { bins: 3 }) } : { long: value });
    }
    await tidelog.finish();
    await page.goto(`${url}/#/runs/${long.id}`);
    await page.waitForFunction(() => window.tidelogDashboard.charts.get("long")?.x.at(-1) === 11_999, null, { timeout: 20_000 });
    const points = await chart("long");
    const n = points.x.length;
    assert(n > 500 && n <= 2000 && points.x[0] === 0, `${n} points from ${points.x[0]}`);
    assert(points.series[0][points.x.indexOf(5_555)] === 1e6, "the spike survives thinning");
    const [line, lo, hi] = points.series;
    assert(points.series.length === 3, `a sampled line gets its min/max band: ${points.series.length} series`);
    assert(line.every((v, i) => lo[i] <= v && v <= hi[i]), "the band holds the line");
    assert(hi[points.x.indexOf(5_555)] === 1e6 && lo[0] === 0, "the band reaches the spike and the first value");
    await page.waitForSelector('[data-media-key="spread"][data-step="7778"]');
    await page.$eval('[data-media-slider="spread"]', (el) => { el.value = "0"; el.dispatchEvent(new Event("input")); });
    await page.waitForSelector('[data-media-key="spread"][data-step="7777"]');
  });

  await check("sign-out forgets the key and asks again", async () => {
    await page.click("#signout");
    await page.waitForSelector("#apikey");
    assert((await page.evaluate(() => localStorage.getItem("tidelog.apiKey"))) === null, "key forgotten");
    await page.reload();
    await page.waitForSelector("#apikey");
  });

  await check("no script errors on any page", async () => {
    assert(pageErrors.length === 0, pageErrors.join("\n"));
  });
} catch (e) {
  results.push(false);
  console.log(`FAIL setup: ${e.stack ?? e}`);
} finally {
  await browser?.close();
  server.kill();
  for (const dir of [data, work, liveDir]) rmSync(dir, { recursive: true, force: true });
}
const passed = results.filter(Boolean).length;
console.log(`${passed} passed, ${results.length - passed} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
process.exit(passed === results.length ? 0 : 1);
