// A loop that logs faster than the 100 ms flush timer stores every 8,192 log() calls, so the
// batch held in memory stays near a megabyte whatever the rate (docs/PERFORMANCE.md). The
// timer is mocked here: only the call count can make the package store.
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import * as tidelog from "../../pkg/node.js";
import { tempDir } from "./helpers.mjs";

const turn = () => new Promise((r) => setImmediate(r));

test("a fast loop stores every 8,192 log() calls, not only when the 100 ms timer fires", async () => {
  const dir = tempDir();
  const run = await tidelog.init({ dir, id: "cadence1", project: "cad", mode: "offline", systemIntervalMs: 0 });
  await run.flush();
  const root = join(dir, "tidelog");
  const log = join(root, readdirSync(root).find((n) => n.endsWith("cadence1")), "records.tlog");
  const size = () => statSync(log).size;
  const before = size();
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    for (let i = 0; i < 8191; i++) tidelog.log({ v: i });
    for (let t = 0; t < 100; t++) await turn();
    assert.equal(size(), before, "8,191 calls and no timer: nothing stored yet");
    assert.equal(tidelog.pending().buffered, 8192, "8,191 rows and the record naming key v, all in memory");
    tidelog.log({ v: 8191 });
    for (let t = 0; t < 10_000 && tidelog.pending().buffered > 0; t++) await turn();
    assert.equal(tidelog.pending().buffered, 0, "the 8,192nd call stored the batch");
    assert.ok(size() > before + 8192 * 8, `the log grew by the batch: ${before} → ${size()}`);
  } finally {
    mock.timers.reset();
  }
  await tidelog.finish();
});
