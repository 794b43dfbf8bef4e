// Deno (with and without write permission) and Bun load the package by its export conditions,
// log 1,000 steps, finish, and the real `tidelog serve` holds every row exactly once.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startServer } from "../node/helpers.mjs";
import { APP, BIN_DIR, assertSyncedOnce, entryFor, project, run } from "./project.mjs";

const STEPS = 1000;
let server;
before(async () => { server = await startServer(); });
after(() => server.stop());

function parse(out) {
  assert.equal(out.code, 0, `exit ${out.code}\n${out.stderr}`);
  return JSON.parse(out.stdout.trim().split("\n").at(-1));
}

// Run `id` has one folder in dir/tidelog/, marked synced, whose metadata names `runtime`.
function assertOnDisk(dir, id, runtime) {
  const runs = readdirSync(join(dir, "tidelog")).filter((n) => n.endsWith(id));
  assert.equal(runs.length, 1, "one run folder on disk");
  assert.ok(existsSync(join(dir, "tidelog", runs[0], ".synced")), "the run is marked synced");
  const meta = JSON.parse(readFileSync(join(dir, "tidelog", runs[0], "files/metadata.json"), "utf8"));
  assert.match(meta.runtime, new RegExp(`^${runtime} \\d`));
}

// Both syncs in one process: the first uploads everything, the second finds nothing left.
function assertTwoSyncs(result) {
  const first = result.first?.find((r) => r.id === result.id);
  assert.ok(first && !first.error, `first sync: ${JSON.stringify(result.first)}`);
  assert.equal(first.acked_records, first.total_records);
  assert.ok(first.rows_added >= STEPS, `rows added ${first.rows_added}`);
  assert.ok(!result.again.some((r) => r.id === result.id && r.rows_added > 0), `second sync added rows: ${JSON.stringify(result.again)}`);
}

test("the deno and bun conditions pick the entries that suit them", () => {
  assert.equal(entryFor(["deno", "node", "import", "default"]), "./deno.js");
  assert.equal(entryFor(["bun", "node", "import", "default"]), "./node.js");
});

test("Deno with write access keeps the run in ./tidelog/ and syncs it exactly once", async () => {
  const { dir } = project({ "app.mjs": APP });
  const out = await run(join(BIN_DIR, "deno"), [
    "run", "--quiet", "--no-prompt", "--node-modules-dir=manual", "--allow-read", `--allow-write=${dir}`,
    "--allow-net=127.0.0.1", "--allow-sys", "--allow-env", "app.mjs", server.url, server.key, String(STEPS),
  ], { cwd: dir, env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" } });
  const result = parse(out);
  assert.doesNotMatch(out.stderr, /memory/, out.stderr);
  assertOnDisk(dir, result.id, "deno");
  assertTwoSyncs(result);
  await assertSyncedOnce(server, result.id, STEPS);
});

test("Deno without write access keeps the run in memory with one warning and syncs it exactly once", async () => {
  const { dir } = project({ "app.mjs": APP });
  const out = await run(join(BIN_DIR, "deno"), [
    "run", "--quiet", "--no-prompt", "--node-modules-dir=manual", "--allow-read", "--allow-net=127.0.0.1",
    "app.mjs", server.url, server.key, String(STEPS),
  ], { cwd: dir, env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" } });
  const result = parse(out);
  const warnings = out.stderr.split("\n").filter((l) => l.startsWith("tidelog:"));
  assert.equal(warnings.length, 1, out.stderr);
  assert.match(warnings[0], /kept in memory .*Deno does not permit it to write \S+tidelog or read the host name .*--allow-write=/);
  assert.ok(!existsSync(join(dir, "tidelog")), "nothing written");
  assertTwoSyncs(result);
  await assertSyncedOnce(server, result.id, STEPS);
});

test("Bun runs the Node entry: ./tidelog/ on disk, synced exactly once", async () => {
  const { dir } = project({ "app.mjs": APP });
  const out = await run(join(BIN_DIR, "bun"), ["app.mjs", server.url, server.key, String(STEPS)], { cwd: dir });
  const result = parse(out);
  assert.doesNotMatch(out.stderr, /tidelog:/, out.stderr);
  assertOnDisk(dir, result.id, "bun");
  assertTwoSyncs(result);
  await assertSyncedOnce(server, result.id, STEPS);
});
