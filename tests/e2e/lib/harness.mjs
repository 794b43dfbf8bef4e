// Shared parts of the browser end-to-end scripts: a static server for the pages, a real
// `tidelog serve` on 127.0.0.1 (stoppable and restartable on its port, for a real outage),
// headless Chromium, and the `ok`/`FAIL` checks ending in "N passed, N failed".
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const ROOT = new URL("../../../", import.meta.url).pathname;
export const BIN = join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug/tidelog");
const TYPES = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
  ".json": "application/json", ".onnx": "application/octet-stream",
};
// Served from the repository; every other path from tests/e2e/pages.
const SHARED = ["/pkg/", "/www/", "/node_modules/@tensorflow/", "/node_modules/onnxruntime-web/"];

/** The pages, /pkg/, /www/ and the browser libraries on 127.0.0.1; `origin` is its URL. */
async function staticServer() {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const file = normalize(SHARED.some((p) => path.startsWith(p)) ? join(ROOT, path) : join(ROOT, "tests/e2e/pages", path));
    if (!file.startsWith(ROOT) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
    res.end(readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/**
 * A real `tidelog serve` allowing `origin`. `stop()` ends it (awaiting the exit, so the port
 * is free) and `start()` brings it back on the same port and data: the network returning.
 */
async function tidelogServer(origin) {
  const data = mkdtempSync(join(tmpdir(), "tidelog-e2e-"));
  const key = execFileSync(BIN, ["admin", "create-key", "--account", "e2e", "--data", data]).toString().trim();
  const srv = { data, key, url: null, child: null };
  srv.start = async () => {
    const addr = srv.url ? srv.url.replace(/^http:\/\//, "") : "127.0.0.1:0";
    const child = spawn(BIN, ["serve", "--addr", addr, "--data", data, "--allow-origin", origin], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
    srv.url = await new Promise((resolve, reject) => {
      createInterface({ input: child.stdout }).once("line", (l) => resolve(l.replace("tidelog server listening on ", "").trim()));
      child.once("exit", (c) => reject(new Error(`tidelog serve exited ${c}`)));
    });
    srv.child = child;
  };
  srv.stop = async () => {
    const child = srv.child;
    srv.child = null;
    if (!child || child.exitCode !== null) return;
    await new Promise((resolve) => { child.once("exit", resolve); child.kill(); });
  };
  srv.api = async (path) => {
    const res = await fetch(`${srv.url}${path}`, { headers: { Authorization: `Bearer ${key}` } });
    return { status: res.status, body: res.headers.get("content-type")?.includes("json") ? await res.json() : Buffer.from(await res.arrayBuffer()) };
  };
  srv.rows = async (id, what = "history") => {
    const { status, body } = await srv.api(`/api/v1/runs/${id}/${what}`);
    return status === 200 ? body.rows : [];
  };
  await srv.start();
  return srv;
}

/** Debian's Chromium, headless, as the other browser tests launch it. */
export function launch() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
  });
}

/**
 * The static server, a `tidelog serve` allowing it and Chromium, for one script: `open` loads
 * a page of it in `context` and waits until `ready` (an expression) holds; `close` ends all three.
 */
export async function e2e() {
  const web = await staticServer();
  const srv = await tidelogServer(web.origin);
  const browser = await launch();
  return {
    web, srv, browser,
    async open(context, path, ready = "window.ready === true") {
      const page = await context.newPage();
      page.on("pageerror", (e) => console.log(`  page error: ${e.message}`));
      await page.goto(`${web.origin}${path}`);
      await page.waitForFunction(ready, null, { timeout: 60_000 });
      return page;
    },
    async close() {
      await browser.close();
      await srv.stop();
      web.close();
    },
  };
}

const results = [];

/** Runs one named check, printing `ok` or `FAIL` with its time. */
export async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  }
}

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** Polls `probe` until it returns a truthy value, or fails naming `what` after `ms`. */
export async function until(what, probe, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Prints "N passed, N failed" and exits non-zero on any failure. */
export function summary() {
  const passed = results.filter(Boolean).length;
  console.log(`${passed} passed, ${results.length - passed} failed`);
  process.exit(passed === results.length ? 0 : 1);
}

/** Asserts `rows` are steps 0..n-1, each once, with `i === step` (and `extra` on each row). */
export function contiguous(rows, n, extra = {}) {
  assert(rows.length === n, `expected ${n} rows, the server has ${rows.length}`);
  rows.forEach((r, i) => {
    assert(r._step === i && r.i === i && Object.entries(extra).every(([k, v]) => r[k] === v), `row ${i} is ${JSON.stringify(r)}`);
  });
}
