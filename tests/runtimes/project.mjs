// What the runtime tests share: a throwaway project that depends on the built package (pkg/
// copied to node_modules/tidelog, as `npm install ../pkg` would), the entry a runtime's export
// conditions pick, a child process's output, and the server-side check of a synced run.
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import assert from "node:assert/strict";
import { ROOT, api, tempDir } from "../node/helpers.mjs";

export const PKG = join(ROOT, "pkg");
export const BIN_DIR = join(ROOT, "node_modules/.bin");

// A project folder with tidelog installed and the given files written into it.
export function project(files) {
  const dir = tempDir("tidelog-runtime-");
  const pkgDir = join(dir, "node_modules/tidelog");
  mkdirSync(pkgDir, { recursive: true });
  cpSync(PKG, pkgDir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module", dependencies: { tidelog: "file:" + PKG } }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return { dir, pkgDir };
}

// The file the package's `exports` resolve to under `conditions`, in Node's resolution order
// (the first key of the conditions object that the runtime has).
export function entryFor(conditions) {
  const exp = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8")).exports["."];
  const key = Object.keys(exp).find((k) => conditions.includes(k));
  assert.ok(key, `no export condition for ${conditions.join(", ")}`);
  return exp[key];
}

// The files of package folder `dir` that `file` reaches by its static imports and the
// `new URL("./…", import.meta.url)` it loads (what a bundler includes), `file` among them.
export function reach(dir, file, seen = new Set()) {
  if (seen.has(file)) return seen;
  seen.add(file);
  if (!file.endsWith(".js")) return seen;
  const text = readFileSync(join(dir, file), "utf8");
  for (const m of text.matchAll(/(?:from|import(?: source)?)\s+"(\.[^"]+)"|new URL\("(\.[^"]+)", import\.meta\.url\)/g)) {
    reach(dir, normalize(join(dirname(file), m[1] ?? m[2])), seen);
  }
  return seen;
}

// Runs a command to its end; resolves to { code, stdout, stderr }.
export function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

// The user program every runtime runs: init → log `steps` steps → finish (which syncs) →
// sync again; prints the run id and both syncs' reports as JSON.
export const APP = `
import * as tidelog from "tidelog";
const [server, apiKey, steps] = globalThis.Deno ? Deno.args : process.argv.slice(2);
const run = await tidelog.init({ project: "runtimes", server, apiKey, systemIntervalMs: 0 });
for (let i = 0; i < Number(steps); i++) tidelog.log({ loss: i / 8, i });
let first = null;
tidelog.on("sync", (d) => { if (d.phase === "done") first ??= d.reports; });
await tidelog.finish();
const again = await tidelog.sync();
console.log(JSON.stringify({ id: run.id, first, again }));
`;

// The server holds run `id` with steps 0..steps-1, each exactly once and with its value.
export async function assertSyncedOnce(server, id, steps) {
  const { rows } = await api(server, `/api/v1/runs/${id}/history?keys=loss,i`);
  assert.equal(rows.length, steps, `run ${id}: ${rows.length} history rows, ${steps} logged`);
  rows.forEach((r, n) => {
    assert.equal(r._step, n, `row ${n} is step ${r._step}`);
    assert.equal(r.i, n);
    assert.equal(r.loss, n / 8);
  });
  const { state } = await api(server, `/api/v1/runs/${id}`);
  assert.equal(state, "finished");
}

// Polls `check` until it stops throwing or `ms` pass (then rethrows its last error).
export async function eventually(check, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try { return await check(); } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
