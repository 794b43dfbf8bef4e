// A Node script logs offline into ./tidelog/; the native `tidelog sync` uploads it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import * as tidelog from "../../pkg/node.js";
import { BIN, api, startServer, tempDir } from "./helpers.mjs";

test("a run logged offline from Node is synced by the native CLI, exactly once", async () => {
  const dir = tempDir();
  const run = await tidelog.init({ project: "node-offline", dir, mode: "offline", config: { lr: 0.1 }, systemIntervalMs: 0 });
  for (let i = 0; i < 100; i++) tidelog.log({ loss: 1 / (i + 1), step_sq: i * i, note: i === 7 ? "seven" : undefined === 1 });
  tidelog.log({ val: NaN }, { commit: false });
  tidelog.log({ inf: -Infinity });
  await tidelog.finish();

  const latest = JSON.parse(readFileSync(join(dir, "tidelog", "latest.spec"), "utf8"));
  assert.equal(latest.id, run.id);
  assert.equal(latest.state, "finished");
  const runDir = join(dir, "tidelog", latest.dir);
  assert.ok(existsSync(join(runDir, "records.tlog")));
  assert.ok(existsSync(join(runDir, "run.spec")));
  assert.deepEqual(readdirSync(join(dir, "tidelog")).filter((n) => n.startsWith("run-")), [latest.dir]);

  const server = await startServer();
  try {
    const env = { ...process.env, TIDELOG_API_KEY: server.key, TIDELOG_BASE_URL: server.url };
    execFileSync(BIN, ["sync"], { cwd: dir, env, stdio: "pipe" });
    execFileSync(BIN, ["sync", "--include-synced"], { cwd: dir, env, stdio: "pipe" });
    const { rows } = await api(server, `/api/v1/runs/${run.id}/history`);
    assert.equal(rows.length, 101);
    assert.equal(rows[3].loss, 0.25);
    assert.equal(rows[9].step_sq, 81);
    assert.equal(rows[7].note, "seven");
    assert.equal(rows[8].note, false);
    assert.equal(rows[100].val, "NaN");
    assert.equal(rows[100].inf, "-Infinity");
    const meta = await api(server, `/api/v1/runs/${run.id}`);
    assert.equal(meta.state, "finished");
    assert.equal(meta.config.lr, 0.1);
  } finally {
    server.stop();
  }
});
