// A Node run's life: init's options are checked, a new init ends the previous run, finish is
// idempotent, a lower step warns through console.warn, files/ holds config, summary and
// metadata as CONTRACT §3 lists, system rows reach the disk on their own (a killed
// process keeps them), and the native CLI tells a live Node run from a crashed one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, rmSync } from "node:fs";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as tidelog from "../../pkg/node.js";
import { BIN, ROOT, api, startServer, tempDir } from "./helpers.mjs";

const latest = (dir) => JSON.parse(readFileSync(join(dir, "tidelog", "latest.spec"), "utf8"));
const runFile = (dir, id, name) => {
  const spec = latest(dir);
  assert.equal(spec.id, id);
  return JSON.parse(readFileSync(join(dir, "tidelog", spec.dir, name), "utf8"));
};

test("init refuses bad options by name", async () => {
  const bad = [
    [{ project: "p", mode: "sometimes" }, /mode must be "offline", "online", "auto" \(got "sometimes"\)/],
    [{ project: "p", resume: "maybe" }, /resume must be "allow", "must", "never"/],
    [{ project: "p", resume: "must" }, /resume: "must" needs the id/],
    [{ project: "p", server: "not a url" }, /server must be an http:\/\/ or https:\/\/ URL \(got "not a url"\)/],
    [{ project: "p", config: { when: new Date(0) } }, /config key "config\.when" cannot be logged: it is a Date/],
  ];
  for (const [opts, message] of bad) {
    await assert.rejects(tidelog.init({ dir: tempDir(), systemIntervalMs: 0, ...opts }), (e) => e instanceof TypeError && message.test(e.message), JSON.stringify(opts));
  }
});

test("a second init finishes the first run; finish twice is harmless; files/ holds the run's JSON", async () => {
  const dir = tempDir();
  const first = await tidelog.init({ project: "two", dir, mode: "offline", systemIntervalMs: 0, config: { lr: 0.1, opt: { name: "adam" } } });
  tidelog.log({ loss: 1 });
  const second = await tidelog.init({ project: "two", dir, mode: "offline", systemIntervalMs: 0 });
  assert.notEqual(first.id, second.id);
  await assert.rejects(async () => first.log({ loss: 2 }), /has finished/);
  tidelog.log({ loss: 0.5, acc: 0.75 });
  second.config.update({ batch: 64 });
  second.summary.set("best_acc", 0.8);
  await tidelog.finish();
  await tidelog.finish();

  assert.deepEqual(runFile(dir, second.id, "run.spec").state, "finished");
  assert.deepEqual(runFile(dir, second.id, "files/config.json"), { batch: 64 });
  assert.deepEqual(runFile(dir, second.id, "files/summary.json"), { loss: 0.5, acc: 0.75, best_acc: 0.8 });
  const meta = runFile(dir, second.id, "files/metadata.json");
  assert.equal(meta.id, second.id);
  assert.match(meta.runtime, /^node v\d+/);
  assert.equal(meta.cwd, process.cwd());

  const server = await startServer();
  try {
    const env = { ...process.env, TIDELOG_API_KEY: server.key, TIDELOG_BASE_URL: server.url };
    execFileSync(BIN, ["sync"], { cwd: dir, env, stdio: "pipe" });
    const one = await api(server, `/api/v1/runs/${first.id}`);
    assert.equal(one.state, "finished");
    assert.deepEqual(one.config, { lr: 0.1, opt: { name: "adam" } });
    const { rows } = await api(server, `/api/v1/runs/${first.id}/history`);
    assert.deepEqual(rows.map((r) => r.loss), [1]);
  } finally {
    server.stop();
  }
});

test("a lower step is dropped with a console.warn", async () => {
  const warned = [];
  const warn = console.warn;
  console.warn = (...args) => warned.push(args.join(" "));
  try {
    await tidelog.init({ project: "steps", dir: tempDir(), mode: "offline", systemIntervalMs: 0 });
    assert.equal(tidelog.log({ a: 1 }, { step: 5 }), true);
    assert.equal(tidelog.log({ a: 2 }, { step: 3 }), false);
    await tidelog.finish();
  } finally {
    console.warn = warn;
  }
  assert.equal(warned.length, 1);
  assert.match(warned[0], /dropped values logged at step 3: the run is at step 5/);
});

test("system rows are stored on their own timer: a killed process keeps them", async () => {
  const dir = tempDir();
  const script = `
    import * as tidelog from ${JSON.stringify(join(ROOT, "pkg/node.js"))};
    const run = await tidelog.init({ project: "sys", dir: ${JSON.stringify(dir)}, mode: "offline", systemIntervalMs: 100 });
    console.log(run.id);
    setTimeout(() => process.kill(process.pid, "SIGKILL"), 700);
    setInterval(() => {}, 1000);
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(child.signal, "SIGKILL", child.stderr);
  const id = child.stdout.trim();
  const server = await startServer();
  try {
    const env = { ...process.env, TIDELOG_API_KEY: server.key, TIDELOG_BASE_URL: server.url };
    execFileSync(BIN, ["sync"], { cwd: dir, env, stdio: "pipe" });
    assert.equal((await api(server, `/api/v1/runs/${id}`)).state, "crashed");
    const body = await api(server, `/api/v1/runs/${id}/system`);
    const rows = body.rows ?? body;
    assert.ok(rows.length >= 3, `system rows: ${JSON.stringify(rows).slice(0, 300)}`);
    assert.ok(rows.every((r) => r["proc.memory.rss_bytes"] > 0 && r["cpu.count"] >= 1), JSON.stringify(rows[0]));
  } finally {
    server.stop();
  }
});

test("resume: must continues a stored run's steps, never refuses it, another project is refused", async () => {
  const dir = tempDir();
  const base = { dir, mode: "offline", systemIntervalMs: 0 };
  const run = await tidelog.init({ ...base, project: "res", id: "resume01" });
  tidelog.log({ a: 1 });
  tidelog.log({ a: 2 });
  await tidelog.finish();
  await assert.rejects(tidelog.init({ ...base, project: "res", id: "resume01", resume: "never" }), /run resume01 already exists/);
  await assert.rejects(tidelog.init({ ...base, project: "other", id: "resume01" }), /run resume01 belongs to project "res", not "other"/);
  await assert.rejects(tidelog.init({ ...base, project: "res", id: "nothere1", resume: "must" }), /no run nothere1 to resume/);
  const again = await tidelog.init({ ...base, project: "res", id: "resume01", resume: "must" });
  assert.equal(again.id, run.id);
  tidelog.log({ a: 3 });
  await tidelog.finish();
  const server = await startServer();
  try {
    const env = { ...process.env, TIDELOG_API_KEY: server.key, TIDELOG_BASE_URL: server.url };
    execFileSync(BIN, ["sync"], { cwd: dir, env, stdio: "pipe" });
    const { rows } = await api(server, `/api/v1/runs/${run.id}/history`);
    assert.deepEqual(rows.map((r) => [r._step, r.a]), [[0, 1], [1, 2], [2, 3]]);
  } finally {
    server.stop();
  }
});

test("the native CLI sees a Node run as running while its process lives, crashed once it is killed (and tells the server)", async () => {
  const dir = tempDir();
  const script = `
    import * as tidelog from ${JSON.stringify(join(ROOT, "pkg/node.js"))};
    const run = await tidelog.init({ project: "live", dir: ${JSON.stringify(dir)}, mode: "offline", systemIntervalMs: 0 });
    tidelog.log({ a: 1 });
    await run.flush();
    console.log(run.id);
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const server = await startServer();
  try {
    const [line] = await once(child.stdout, "data");
    const id = String(line).trim();
    const env = { ...process.env, TIDELOG_API_KEY: server.key, TIDELOG_BASE_URL: server.url };
    assert.match(execFileSync(BIN, ["ls"], { cwd: dir, env, encoding: "utf8" }), new RegExp(`${id}.*running`));
    execFileSync(BIN, ["sync"], { cwd: dir, env, stdio: "pipe" });
    assert.equal((await api(server, `/api/v1/runs/${id}`)).state, "running");

    child.kill("SIGKILL");
    await once(child, "exit");
    assert.match(execFileSync(BIN, ["ls"], { cwd: dir, env, encoding: "utf8" }), new RegExp(`${id}.*crashed`));
    // Synced while running, nothing logged since: the next sync still tells the server.
    execFileSync(BIN, ["sync"], { cwd: dir, env, stdio: "pipe" });
    assert.equal((await api(server, `/api/v1/runs/${id}`)).state, "crashed");
    assert.deepEqual((await api(server, `/api/v1/runs/${id}/history`)).rows.map((r) => r.a), [1]);
    assert.match(execFileSync(BIN, ["sync"], { cwd: dir, env, encoding: "utf8" }), /nothing to sync/);
    const spec = latest(dir);
    assert.ok(existsSync(join(dir, "tidelog", spec.dir, ".lock")), "a killed process leaves its lock file behind");
  } finally {
    child.kill("SIGKILL");
    server.stop();
  }
});

test("a finished Node run leaves no lock file", async () => {
  const dir = tempDir();
  await tidelog.init({ project: "lockless", dir, mode: "offline", systemIntervalMs: 0 });
  const spec = latest(dir);
  assert.ok(existsSync(join(dir, "tidelog", spec.dir, ".lock")), "the lock file names the live process");
  tidelog.log({ a: 1 });
  await tidelog.finish();
  assert.ok(!existsSync(join(dir, "tidelog", spec.dir, ".lock")));
});

test("tidelog.sync() in one Node process keeps another's live run running, and marks it crashed once killed", async () => {
  const dir = tempDir();
  const server = await startServer();
  const script = `
    import * as tidelog from ${JSON.stringify(join(ROOT, "pkg/node.js"))};
    const run = await tidelog.init({ project: "peers", dir: ${JSON.stringify(dir)}, mode: "offline", systemIntervalMs: 0,
      server: ${JSON.stringify(server.url)}, apiKey: ${JSON.stringify(server.key)} });
    tidelog.log({ a: 1 });
    await run.flush();
    await tidelog.sync();
    console.log(run.id);
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const [line] = await once(child.stdout, "data");
    const id = String(line).trim();
    assert.equal((await api(server, `/api/v1/runs/${id}`)).state, "running");
    await tidelog.init({ project: "peers", dir, mode: "offline", systemIntervalMs: 0, server: server.url, apiKey: server.key });
    await tidelog.sync();
    assert.equal((await api(server, `/api/v1/runs/${id}`)).state, "running", "the other process still writes it");
    child.kill("SIGKILL");
    await once(child, "exit");
    await tidelog.sync();
    assert.equal((await api(server, `/api/v1/runs/${id}`)).state, "crashed");
    await tidelog.finish();
  } finally {
    child.kill("SIGKILL");
    server.stop();
  }
});

test("a Node script that ends without finish() keeps its open row: the explicit step is committed at exit", async () => {
  const dir = tempDir();
  const script = `
    import * as tidelog from ${JSON.stringify(join(ROOT, "pkg/node.js"))};
    const run = await tidelog.init({ project: "exit", dir: ${JSON.stringify(dir)}, mode: "offline", systemIntervalMs: 0 });
    for (let i = 0; i < 5; i++) tidelog.log({ a: i }, { step: i * 10 });
    console.log(run.id);
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(child.status, 0, child.stderr);
  const id = child.stdout.trim();
  const server = await startServer();
  try {
    const env = { ...process.env, TIDELOG_API_KEY: server.key, TIDELOG_BASE_URL: server.url };
    execFileSync(BIN, ["sync"], { cwd: dir, env, stdio: "pipe" });
    const { rows } = await api(server, `/api/v1/runs/${id}/history`);
    assert.deepEqual(rows.map((r) => [r._step, r.a]), [[0, 0], [10, 1], [20, 2], [30, 3], [40, 4]]);
    assert.equal((await api(server, `/api/v1/runs/${id}`)).state, "crashed");
  } finally {
    server.stop();
  }
});

test("finish writes config.json and summary.json from memory: a resumed run's digest carries the first session's keys, without the log", async () => {
  const dir = tempDir();
  const base = { project: "digest", id: "dig01", dir, mode: "offline", systemIntervalMs: 0 };
  const first = await tidelog.init({ ...base, config: { lr: 0.1 } });
  tidelog.log({ loss: 3, acc: 0.5 });
  first.summary.set("best", 1);
  first.summary.set("loss", 9);
  await tidelog.finish();
  assert.deepEqual(runFile(dir, "dig01", "files/summary.json"), { loss: 9, acc: 0.5, best: 1 });

  const second = await tidelog.init({ ...base, resume: "must", config: { batch: 8 } });
  assert.equal(second.step, 1);
  tidelog.log({ loss: 2 });
  await second.flush();
  // The log is gone from under the run: whatever finish writes now comes from memory.
  const records = join(dir, "tidelog", latest(dir).dir, "records.tlog");
  rmSync(records);
  await tidelog.finish();
  assert.deepEqual(runFile(dir, "dig01", "files/config.json"), { lr: 0.1, batch: 8 });
  assert.deepEqual(runFile(dir, "dig01", "files/summary.json"), { loss: 2, acc: 0.5, best: 1 }, "a later log of loss replaces its summary.set");
});
