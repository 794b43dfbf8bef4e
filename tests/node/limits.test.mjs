// Limits at log() from Node: an explicit step a JS number cannot hold exactly (2^53 and
// beyond) is refused rather than silently merged with its neighbours.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tidelog from "../../pkg/node.js";
import { api, holdIngestSlot, startServer, tempDir } from "./helpers.mjs";

test("steps at or beyond 2^53 are refused at log() and nothing else is lost", async () => {
  const server = await startServer();
  try {
    const run = await tidelog.init({ project: "limits", dir: tempDir(), mode: "offline", server: server.url, apiKey: server.key, systemIntervalMs: 0 });
    tidelog.log({ loss: 1 });
    for (const step of [2 ** 53, 2 ** 53 + 2, Number.MAX_VALUE, Infinity]) {
      assert.throws(() => tidelog.log({ loss: 9 }, { step }), (e) => e instanceof TypeError && /below 2\^53/.test(e.message), String(step));
    }
    tidelog.log({ loss: 2 }, { step: Number.MAX_SAFE_INTEGER });
    await tidelog.finish();
    await tidelog.sync();
    const { rows } = await api(server, `/api/v1/runs/${run.id}/history`);
    assert.deepEqual(rows.map((r) => [r._step, r.loss]), [[0, 1], [Number.MAX_SAFE_INTEGER, 2]]);
  } finally {
    server.stop();
  }
});

test("registerServiceWorker loads everywhere and says it needs a browser", async () => {
  await assert.rejects(tidelog.registerServiceWorker(), /only in browsers/);
});

test("a server that is busy says when to come back, and the Node client hears it", async () => {
  const server = await startServer(["--max-ingests", "1"]);
  const held = await holdIngestSlot(server);
  try {
    const dir = tempDir();
    await tidelog.init({ project: "busy", dir, mode: "offline", server: server.url, apiKey: server.key, systemIntervalMs: 0 });
    tidelog.log({ loss: 1 });
    await tidelog.finish();
    let reports = null;
    const off = tidelog.on("sync", (d) => { if (d.phase === "error") reports = d.reports; });
    await assert.rejects(tidelog.sync(), /503/);
    off();
    assert.equal(reports?.[0]?.retry_after_ms, 1000, JSON.stringify(reports));
    assert.ok(tidelog.pending().nextAttemptInMs >= 1000 - 50, "the next try waits at least what the server asked");
  } finally {
    held.destroy();
    server.stop();
  }
});
