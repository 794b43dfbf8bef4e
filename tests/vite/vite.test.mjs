// A Vite app that depends on the built package (tests/vite/app, `"tidelog": "file:../../../pkg"`)
// builds with the real `vite build`, ships one copy of the wasm, and the built app runs in
// headless Chromium: it logs steps into IndexedDB and syncs them to a real `tidelog serve`,
// which holds each row exactly once.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";
import { ROOT, api, startServer, tempDir } from "../node/helpers.mjs";
import { run } from "../runtimes/project.mjs";

const STEPS = 50;
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
let dist;
let web;
let server;
let browser;

function files(dir) {
  return readdirSync(dir, { recursive: true }).filter((f) => statSync(join(dir, f)).isFile());
}

before(async () => {
  // The app in a folder of its own, with tidelog installed the way npm installs a file: dependency (a link).
  const app = tempDir("tidelog-vite-");
  cpSync(join(ROOT, "tests/vite/app"), app, { recursive: true });
  mkdirSync(join(app, "node_modules"));
  symlinkSync(join(ROOT, "pkg"), join(app, "node_modules/tidelog"), "dir");
  dist = join(app, "dist");
  const out = await run(join(ROOT, "node_modules/.bin/vite"), ["build", "--logLevel", "warn"], { cwd: app });
  assert.equal(out.code, 0, `vite build failed:\n${out.stdout}\n${out.stderr}`);
  web = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const file = normalize(join(dist, path === "/" ? "index.html" : path));
    if (!file.startsWith(dist) || !statSync(file, { throwIfNoEntry: false })?.isFile()) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(readFileSync(file));
  });
  await new Promise((resolve) => web.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${web.address().port}`;
  server = await startServer(["--allow-origin", origin]);
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
  });
});
after(async () => { await browser?.close(); web?.close(); server?.stop(); });

test("vite build bundles the browser entry with one copy of the wasm", () => {
  const built = files(dist);
  const wasm = built.filter((f) => f.endsWith(".wasm"));
  assert.equal(wasm.length, 1, `wasm files in dist: ${wasm.join(", ")}`);
  const js = built.filter((f) => f.endsWith(".js")).map((f) => readFileSync(join(dist, f), "utf8")).join("\n");
  assert.match(js, /indexedDB/, "the browser entry (IndexedDB) is the one bundled");
  assert.doesNotMatch(js, /node:fs/, "no Node entry in the bundle");
});

test("the built app logs into IndexedDB in Chromium and syncs every row exactly once", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const q = new URLSearchParams({ server: server.url, key: server.key, steps: String(STEPS) });
  await page.goto(`http://127.0.0.1:${web.address().port}/?${q}`);
  // The load event does not wait for a module's top-level await (the wasm instantiation in
  // tidelog's browser entry): wait for the app to have set itself up.
  await page.waitForFunction(() => window.tidelogApp !== undefined);
  const { id } = await page.evaluate(() => window.tidelogApp.ready);
  const stored = await page.evaluate((runId) => new Promise((resolve, reject) => {
    const req = indexedDB.open("tidelog");
    req.onerror = () => reject(req.error);
    req.onsuccess = () => {
      const get = req.result.transaction("runs").objectStore("runs").get(runId);
      get.onsuccess = () => resolve(Boolean(get.result));
      get.onerror = () => reject(get.error);
    };
  }), id);
  assert.ok(stored, `run ${id} is in IndexedDB`);
  const [first, again] = await page.evaluate(async () => {
    const { tidelog } = window.tidelogApp;
    await tidelog.finish();
    return [await tidelog.sync(), await tidelog.sync()];
  });
  const mine = first.find((r) => r.id === id);
  assert.ok(mine && !mine.error && mine.acked_records === mine.total_records, JSON.stringify(first));
  assert.ok(!again.some((r) => r.id === id && r.rows_added > 0), `second sync added rows: ${JSON.stringify(again)}`);
  const { rows } = await api(server, `/api/v1/runs/${id}/history?keys=loss,w,b`);
  assert.deepEqual(rows.map((r) => r._step), [...Array(STEPS).keys()]);
  assert.ok(rows.at(-1).loss < rows[0].loss, "the fit converges");
  assert.deepEqual(errors, []);
});
