// A Node script logs offline, then `await tidelog.sync()` uploads it; bad values are TypeErrors.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tidelog from "../../pkg/node.js";
import { api, startServer, tempDir } from "./helpers.mjs";

test("await tidelog.sync() from Node uploads every unsynced run, and again adds nothing", async () => {
  const dir = tempDir();
  const server = await startServer();
  try {
    const run = await tidelog.init({ project: "node-sync", dir, mode: "offline", systemIntervalMs: 0 });
    for (let i = 0; i < 50; i++) tidelog.log({ acc: i / 50 });
    tidelog.log({ late: 1 }, { step: 100 });
    assert.equal(tidelog.log({ early: 1 }, { step: 3 }), false, "a lower step is dropped");
    const file = run.save("weights.bin", new Uint8Array([1, 2, 3, 4]));
    assert.equal(file.size, 4);
    assert.throws(() => tidelog.log({ f: () => 1 }), (e) => e instanceof TypeError && e.message.includes('"f"'));
    assert.throws(() => tidelog.log({ _step: 1 }), (e) => e instanceof TypeError && e.message.includes("_step"));
    tidelog.log({ after_error: 1 });
    await tidelog.finish({ exitCode: 2 });
    assert.equal(tidelog.pending().run, null);

    process.env.TIDELOG_BASE_URL = server.url;
    process.env.TIDELOG_API_KEY = server.key;
    const reports = await tidelog.sync();
    assert.equal(reports.length, 1);
    assert.equal(reports[0].id, run.id);
    assert.equal(reports[0].error, undefined);
    const again = await tidelog.sync();
    assert.equal(again.length, 0, "nothing left to sync");

    const { rows } = await api(server, `/api/v1/runs/${run.id}/history`);
    assert.deepEqual(rows.map((r) => r._step).slice(-3), [48, 49, 100]);
    assert.equal(rows.filter((r) => "early" in r).length, 0);
    assert.equal(rows.length, 51);
    assert.equal(rows[50].late, 1, "step 100 kept its value");
    assert.equal(rows[50].after_error, 1, "the next call joined step 100, like wandb.log");
    const meta = await api(server, `/api/v1/runs/${run.id}`);
    assert.equal(meta.state, "failed");
    assert.equal(meta.exit_code, 2);
    const res = await fetch(`${server.url}/api/v1/runs/${run.id}/files/weights.bin`, { headers: { Authorization: `Bearer ${server.key}` } });
    assert.deepEqual([...new Uint8Array(await res.arrayBuffer())], [1, 2, 3, 4]);
  } finally {
    server.stop();
  }
});

test("the memory store syncs at finish", async () => {
  const server = await startServer();
  try {
    const run = await tidelog.init({ project: "edge", storage: "memory", server: server.url, apiKey: server.key, systemIntervalMs: 0 });
    tidelog.log({ x: 1 });
    tidelog.log({ x: 2 });
    await tidelog.finish();
    const { rows } = await api(server, `/api/v1/runs/${run.id}/history`);
    assert.deepEqual(rows.map((r) => r.x), [1, 2]);
  } finally {
    server.stop();
  }
});
