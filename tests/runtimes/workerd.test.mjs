// A Cloudflare Worker under the real workerd (`workerd serve` with a generated config, no
// network beyond 127.0.0.1): the package's `workerd` entry loads (its wasm imported as a
// module), a request logs 1,000 steps and hands `tidelog.finish()` to `ctx.waitUntil`, and
// the real `tidelog serve` holds every row exactly once; a run finished with nowhere to
// sync names what it drops.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import { api, startServer } from "../node/helpers.mjs";
import { BIN_DIR, assertSyncedOnce, entryFor, eventually, project, reach } from "./project.mjs";

const STEPS = 1000;
// The conditions wrangler's bundler resolves packages with.
const WORKERD = ["workerd", "worker", "browser", "import", "default"];

const WORKER = `
import * as tidelog from "tidelog";
export default {
  async fetch(req, env, ctx) {
    const q = new URL(req.url).searchParams;
    const path = new URL(req.url).pathname;
    if (path === "/sync") return Response.json(await tidelog.sync());
    const offline = path === "/offline";
    const run = await tidelog.init({
      project: "workerd", systemIntervalMs: 0,
      ...(offline ? {} : { server: q.get("server"), apiKey: q.get("key") }),
    });
    for (let i = 0; i < Number(q.get("steps")); i++) tidelog.log({ loss: i / 8, i });
    ctx.waitUntil(tidelog.finish());
    return Response.json({ id: run.id });
  },
};
`;

let server;
let workerd;
let base;
let stderr = "";

// The package's modules the entry the conditions pick reaches (as a bundler would include
// them), named by their path in the package (so relative imports resolve), with the entry as
// the module "tidelog".
function modules(pkgDir) {
  const entry = entryFor(WORKERD).replace(/^\.\//, "");
  const seen = reach(pkgDir, entry);
  const embed = (file) => `embed "${relative(join(pkgDir, "../.."), join(pkgDir, file))}"`;
  return [...seen].map((file) => `(name = "${file === entry ? "tidelog" : file}", ${file.endsWith(".wasm") ? "wasm" : "esModule"} = ${embed(file)})`);
}

before(async () => {
  server = await startServer();
  const { dir, pkgDir } = project({ "worker.mjs": WORKER });
  writeFileSync(join(dir, "config.capnp"), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "loopback", network = (allow = ["local", "private"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    ${modules(pkgDir).join(",\n    ")}
  ],
  compatibilityDate = "2025-09-01",
  globalOutbound = "loopback",
);
`);
  workerd = spawn(join(BIN_DIR, "workerd"), ["serve", "config.capnp", "--control-fd=3", "--verbose"], {
    cwd: dir, stdio: ["ignore", "inherit", "pipe", "pipe"],
  });
  workerd.stderr.on("data", (d) => { stderr += d; });
  const port = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: workerd.stdio[3] });
    lines.on("line", (line) => {
      const ev = JSON.parse(line);
      if (ev.event === "listen" && ev.socket === "http") resolve(ev.port);
    });
    workerd.once("exit", (code) => reject(new Error(`workerd exited ${code}:\n${stderr}`)));
  });
  base = `http://127.0.0.1:${port}`;
});
after(() => { workerd?.kill(); server?.stop(); });

async function get(path) {
  const res = await fetch(`${base}${path}`);
  const text = await res.text();
  assert.equal(res.status, 200, `${path}: ${text}\n${stderr}`);
  return JSON.parse(text);
}

test("the workerd condition picks the entry that imports the wasm as a module", () => {
  assert.equal(entryFor(WORKERD), "./workerd.js");
  assert.equal(entryFor(["worker", "browser", "import", "default"]), "./workerd.js");
});

test("a Worker logs 1,000 steps, finishes in ctx.waitUntil, and the server holds each row once", async () => {
  const q = new URLSearchParams({ server: server.url, key: server.key, steps: String(STEPS) });
  const { id } = await get(`/run?${q}`);
  // The response went out before finish() synced: the upload completes in waitUntil.
  await eventually(() => assertSyncedOnce(server, id, STEPS));
  const again = await get("/sync");
  assert.ok(!again.some((r) => r.id === id && r.rows_added > 0), `a second sync added rows: ${JSON.stringify(again)}`);
  await assertSyncedOnce(server, id, STEPS);
  assert.doesNotMatch(stderr, /kept in memory only/, stderr);
});

test("a Worker run finished with no server to sync to says what it drops", async () => {
  const { id } = await get("/offline?steps=10");
  const said = await eventually(() => {
    const m = stderr.match(new RegExp(`tidelog: run ${id} is kept in memory only: (\\d+) of its records were not synced \\(no server and apiKey to sync to\\)`));
    assert.ok(m, stderr);
    return Number(m[1]);
  });
  assert.ok(said >= 10, `${said} records named, 10 steps logged`);
  const { runs } = await api(server, "/api/v1/runs");
  assert.ok(!runs.some((r) => r.id === id));
});
