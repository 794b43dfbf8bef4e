// What two processes, look-alike run ids and a full disk can do to Node runs (CONTRACT §3):
// real Node child processes, real files, the native CLI and a real `tidelog serve`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import * as tidelog from "../../pkg/node.js";
import { BIN, ROOT, api, startServer, tempDir } from "./helpers.mjs";

const PKG = JSON.stringify(join(ROOT, "pkg/node.js"));

// A Node script as a child process, its stdout as text.
const runScript = (script, opts = {}) =>
  spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", ...opts });

// Walks records.tlog by its frame lengths: true when the last frame ends exactly at the end.
function endsOnAFrame(bytes) {
  let pos = 0;
  while (pos + 8 <= bytes.length) pos += 8 + bytes.readUInt32LE(pos);
  return pos === bytes.length;
}

const runFolders = (dir) => readdirSync(join(dir, "tidelog")).filter((n) => n.startsWith("run-"));

test("a second Node process initialising a held run is refused naming the holder; the run stays whole", async () => {
  const dir = tempDir();
  const opts = JSON.stringify({ project: "two", id: "twice", resume: "allow", dir, mode: "offline", systemIntervalMs: 0 });
  const holder = spawn(process.execPath, ["--input-type=module", "-e", `
    import * as tidelog from ${PKG};
    import { createInterface } from "node:readline";
    const run = await tidelog.init(${opts});
    for (let i = 0; i < 5; i++) tidelog.log({ first: i });
    await run.flush();
    console.log("ready");
    for await (const _ of createInterface({ input: process.stdin })) {}
    for (let i = 5; i < 10; i++) tidelog.log({ first: i });
    await tidelog.finish();
  `], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise((resolve) => holder.once("exit", resolve));
  const lines = createInterface({ input: holder.stdout });
  const [line] = await Promise.race([
    new Promise((resolve) => lines.once("line", (l) => resolve([l]))),
    exited.then((code) => { throw new Error(`the holder exited ${code}`); }),
  ]);
  assert.equal(line, "ready");

  const second = runScript(`
    import * as tidelog from ${PKG};
    try {
      await tidelog.init(${opts});
      for (let i = 0; i < 5; i++) tidelog.log({ second: i });
      await tidelog.finish();
      console.log("initialised");
    } catch (e) {
      console.log(e.message);
    }
  `);
  assert.match(second.stdout, new RegExp(`run twice: the run is being written by process ${holder.pid} on host ${hostname()}`), second.stderr);

  holder.stdin.end();
  assert.equal(await exited, 0);
  assert.equal(runFolders(dir).length, 1);
  const ls = execFileSync(BIN, ["ls"], { cwd: dir, encoding: "utf8" });
  assert.doesNotMatch(ls, /corrupt/);
  assert.match(ls, /twice\s+two\s+finished/);

  const server = await startServer();
  try {
    const env = { ...process.env, TIDELOG_API_KEY: server.key, TIDELOG_BASE_URL: server.url };
    execFileSync(BIN, ["sync"], { cwd: dir, env, stdio: "pipe" });
    const { rows } = await api(server, "/api/v1/runs/twice/history");
    assert.deepEqual(rows.map((r) => [r._step, r.first, r.second]), [...Array(10).keys()].map((i) => [i, i, undefined]));
  } finally {
    server.stop();
  }
});

test("a lock left by a dead process is taken over, and a finished run's lock is released", async () => {
  const dir = tempDir();
  const base = { project: "stale", id: "stale01", resume: "allow", dir, mode: "offline", systemIntervalMs: 0 };
  const killed = runScript(`
    import * as tidelog from ${PKG};
    const run = await tidelog.init(${JSON.stringify(base)});
    tidelog.log({ a: 1 });
    await run.flush();
    process.kill(process.pid, "SIGKILL");
  `);
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  const folder = join(dir, "tidelog", runFolders(dir)[0]);
  assert.match(readFileSync(join(folder, ".lock"), "utf8"), /"pid"/, "the dead process's lock is still there");
  await tidelog.init(base);
  tidelog.log({ a: 2 });
  await tidelog.finish();
  assert.ok(!readdirSync(folder).includes(".lock"), "finish releases the lock");
  await tidelog.init(base);
  await tidelog.finish();
  assert.equal(runFolders(dir).length, 1);
});

test("runs are found by their exact id: 1 is not exp-1, a-x and b-x are two runs", async () => {
  const dir = tempDir();
  const base = { project: "ids", dir, mode: "offline", systemIntervalMs: 0 };
  for (const id of ["exp-1", "a-x", "b-x"]) {
    await tidelog.init({ ...base, id, resume: "never" });
    tidelog.log({ [id]: 1 });
    await tidelog.finish();
  }
  await assert.rejects(tidelog.init({ ...base, id: "1", resume: "must" }), /no run 1 to resume/);
  const one = await tidelog.init({ ...base, id: "1", resume: "allow" });
  assert.equal(one.id, "1");
  tidelog.log({ one: 1 });
  await tidelog.finish();
  assert.equal(runFolders(dir).length, 4);

  const server = await startServer();
  try {
    process.env.TIDELOG_BASE_URL = server.url;
    process.env.TIDELOG_API_KEY = server.key;
    const reports = await tidelog.sync();
    assert.deepEqual(reports.map((r) => [r.id, r.error]).sort(), [["1", undefined], ["a-x", undefined], ["b-x", undefined], ["exp-1", undefined]]);
    for (const [id, key] of [["exp-1", "exp-1"], ["a-x", "a-x"], ["b-x", "b-x"], ["1", "one"]]) {
      const { rows } = await api(server, `/api/v1/runs/${id}/history`);
      assert.deepEqual(rows.map((r) => r[key]), [1], id);
    }
  } finally {
    delete process.env.TIDELOG_BASE_URL;
    delete process.env.TIDELOG_API_KEY;
    server.stop();
  }
});

test("an append the file-size limit cuts short is cut back to the last whole record", () => {
  const dir = tempDir();
  // A real EFBIG: the shell's `ulimit -f` (KiB blocks) caps the file; with SIGXFSZ handled the
  // write returns the error instead of killing the process.
  const script = `
    import * as tidelog from ${PKG};
    process.on("SIGXFSZ", () => {});
    const errors = [];
    tidelog.on("error", (e) => errors.push(String(e?.message ?? e)));
    const run = await tidelog.init({ project: "full", dir: ${JSON.stringify(dir)}, mode: "offline", systemIntervalMs: 0 });
    for (let i = 0; i < 10; i++) tidelog.log({ small: i });
    await run.flush();
    tidelog.log({ big: "x".repeat(200000) });
    await run.flush();
    console.log(JSON.stringify({ id: run.id, errors }));
    process.kill(process.pid, "SIGKILL");
  `;
  const child = spawnSync("bash", ["-c", `ulimit -f 64; exec "${process.execPath}" --input-type=module -e "$0"`, script], { encoding: "utf8" });
  assert.equal(child.signal, "SIGKILL", child.stderr);
  const { errors } = JSON.parse(child.stdout);
  assert.ok(errors.some((e) => /EFBIG/.test(e)), JSON.stringify(errors));
  const log = readFileSync(join(dir, "tidelog", runFolders(dir)[0], "records.tlog"));
  assert.ok(log.length < 64 * 1024, `the partial append was cut back (${log.length} bytes)`);
  assert.ok(endsOnAFrame(log), "no partial frame is left behind");
  const ls = execFileSync(BIN, ["ls"], { cwd: dir, encoding: "utf8" });
  assert.match(ls, /full\s+crashed\s+12\s/, ls);
});

test("a flipped bit mid-log: Node's sync uploads both sides and reports it, a resume after it is refused and the file kept", async () => {
  const dir = tempDir();
  const base = { project: "flip", id: "flip01", dir, mode: "offline", systemIntervalMs: 0 };
  await tidelog.init(base);
  for (let i = 0; i < 40; i++) tidelog.log({ v: i });
  await tidelog.finish();
  const path = join(dir, "tidelog", runFolders(dir)[0], "records.tlog");
  const log = readFileSync(path);
  const starts = [];
  for (let pos = 0; pos < log.length; pos += 8 + log.readUInt32LE(pos)) starts.push(pos);
  const at = starts[20];
  const len = starts[21] - at;
  log[at + 10] ^= 0x01;
  writeFileSync(path, log);

  const server = await startServer();
  try {
    process.env.TIDELOG_BASE_URL = server.url;
    process.env.TIDELOG_API_KEY = server.key;
    await assert.rejects(tidelog.sync(), new RegExp(`flip01: corrupt: run flip01, byte offset ${at}, ${len} bytes unreadable`));
    const { rows } = await api(server, "/api/v1/runs/flip01/history");
    assert.equal(rows.length, 39, "every row but the damaged one");
    assert.equal(rows.at(-1).v, 39, "rows after the damage arrive too");
    assert.ok(!readdirSync(join(path, "..")).includes(".synced"), "the run is never marked synced");
  } finally {
    delete process.env.TIDELOG_BASE_URL;
    delete process.env.TIDELOG_API_KEY;
    server.stop();
  }
  // The ended run's resume point trusted the log before it; the sync that found the damage
  // dropped it, so the resume reads the whole log again and refuses, as natively.
  await assert.rejects(tidelog.init({ ...base, resume: "allow" }), new RegExp(`corrupt: run flip01, byte offset ${at}, ${len} bytes unreadable`));
  assert.deepEqual(readFileSync(path), log, "the file is kept as it is");
});
