// Values from Node that cannot be logged: a TypeError naming the key, and the run goes on
// with nothing lost. A 10 MB string is stored; one over the 32 MiB value limit is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tidelog from "../../pkg/node.js";
import { api, startServer, tempDir } from "./helpers.mjs";

test("refused values name their key, keep the step, and lose nothing logged before or after", async () => {
  const server = await startServer();
  try {
    const run = await tidelog.init({ project: "values", dir: tempDir(), mode: "offline", server: server.url, apiKey: server.key, systemIntervalMs: 0 });
    tidelog.log({ loss: 1 });
    const refused = [
      [{ f: () => 1 }, /^tidelog.*key "f" is a function/],
      [{ _step: "mine" }, /^tidelog.*key "_step": reserved/],
      [{ "": 2 }, /^tidelog.*key "": empty/],
      [{ huge: "x".repeat(33 << 20) }, /^tidelog.*key "huge" is \d+ bytes, over the \d+-byte limit/],
    ];
    for (const [data, names] of refused) {
      assert.throws(() => tidelog.log(data), (e) => e instanceof TypeError && names.test(e.message), JSON.stringify(Object.keys(data)));
    }
    const ten = "y".repeat(10_000_000);
    tidelog.log({ loss: 2, text: ten });
    tidelog.log({ loss: 3 });
    await tidelog.finish();
    await tidelog.sync();

    const { rows } = await api(server, `/api/v1/runs/${run.id}/history`);
    assert.deepEqual(rows.map((r) => [r._step, r.loss]), [[0, 1], [1, 2], [2, 3]]);
    assert.equal(rows[1].text.length, ten.length);
    assert.ok(rows.every((r) => !("huge" in r) && !("f" in r)));
  } finally {
    server.stop();
  }
});
