// The waits between failed syncs are the core's schedule (wasm `syncDelayMs`, the one
// `Backoff` of src/core/transport.rs), not one of JS's own: for a server that cannot be
// reached (doubling, no Retry-After) and for one that answers 503 with Retry-After.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { once } from "node:events";
import * as tidelog from "../../pkg/node.js";
// The module pkg/node.js initialised: the core's own schedule.
import * as wasm from "../../pkg/web/tidelog_wasm.js";
import { createTidelog } from "../../pkg/core.js";
import { fsPlatform } from "../../pkg/fs-host.js";
import { holdIngestSlot, startServer, tempDir } from "./helpers.mjs";

const { syncDelayMs } = wasm;

/** A loopback port nothing listens on. */
async function closedPort() {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const { port } = s.address();
  s.close();
  await once(s, "close");
  return port;
}

/** One failed sync: the wait JS chose and the reports. */
async function failedSync(t = tidelog) {
  let event = null;
  const off = t.on("sync", (d) => { if (d.phase === "error") event = d; });
  await assert.rejects(t.sync());
  off();
  assert.ok(event, "an error event");
  assert.ok(Math.abs(t.pending().nextAttemptInMs - event.retryInMs) < 1000, "pending() says the same wait");
  return event;
}

async function finishedRun(server, apiKey, t = tidelog) {
  await t.init({ project: "backoff", dir: tempDir(), mode: "offline", server, apiKey, systemIntervalMs: 0 });
  t.log({ loss: 1 });
  await t.finish();
}

test("the wait comes from the wasm module, whatever schedule it has", async () => {
  // The same JS over the same wasm, but with the schedule export watched and scaled: a JS
  // wrapper that computed its own waits would not follow it.
  const asked = [];
  const watched = { ...wasm, syncDelayMs: (n, retryAfterMs) => { asked.push([n, retryAfterMs]); return 7 * syncDelayMs(n, retryAfterMs); } };
  const { memory } = wasm.initSync();
  const t = createTidelog(watched, memory, fsPlatform(watched));
  await finishedRun(`http://127.0.0.1:${await closedPort()}`, "k", t);
  for (let n = 1; n <= 2; n++) {
    assert.equal((await failedSync(t)).retryInMs, 7 * syncDelayMs(n, 0), `failure ${n}`);
  }
  assert.deepEqual(asked, [[1, 0], [2, 0]]);
});

test("JS waits between failed syncs exactly what the core's schedule says", async () => {
  await finishedRun(`http://127.0.0.1:${await closedPort()}`, "k");
  const waits = [];
  for (let n = 1; n <= 3; n++) {
    const { retryInMs, reports } = await failedSync();
    assert.equal(reports[0].retry_after_ms, undefined, "an unreachable server asked for nothing");
    assert.equal(retryInMs, syncDelayMs(n, 0), `failure ${n}`);
    waits.push(retryInMs);
  }
  assert.deepEqual(waits, [waits[0], waits[0] * 2, waits[0] * 4], "doubling");

  const server = await startServer(["--max-ingests", "1"]);
  const held = await holdIngestSlot(server);
  try {
    await finishedRun(server.url, server.key);
    const { retryInMs, reports } = await failedSync();
    assert.equal(reports[0].retry_after_ms, 1000, JSON.stringify(reports));
    assert.equal(retryInMs, syncDelayMs(4, 1000), "the fourth failure in a row, with the server's Retry-After");
    held.destroy();
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await tidelog.sync();
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
    assert.equal(tidelog.pending().nextAttemptInMs, 0, "a sync that went through resets the schedule");
  } finally {
    held.destroy();
    server.stop();
  }
});
