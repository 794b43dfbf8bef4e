// Values from Node that cannot be logged: a TypeError naming the key, and the run goes on
// with nothing lost. A 10 MB string is stored; one over the 32 MiB value limit is refused;
// a value that contains itself, a Date, a Map or a BigInt is refused by its path; nested
// NaN and ±Infinity keep their meaning.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tidelog from "../../pkg/node.js";
import { api, startServer, tempDir } from "./helpers.mjs";

test("refused values name their key, keep the step, and lose nothing logged before or after", async () => {
  const server = await startServer();
  try {
    const run = await tidelog.init({ project: "values", dir: tempDir(), mode: "offline", server: server.url, apiKey: server.key, systemIntervalMs: 0 });
    tidelog.log({ loss: 1 });
    const cyclic = { a: 1 };
    cyclic.self = cyclic;
    const looped = [];
    looped.push(looped);
    const refused = [
      [{ f: () => 1 }, /^tidelog.*key "f" is a function/],
      [{ _step: "mine" }, /^tidelog.*key "_step": reserved/],
      [{ "": 2 }, /^tidelog.*key "": empty/],
      [{ huge: "x".repeat(33 << 20) }, /^tidelog.*key "huge" is \d+ bytes, over the \d+-byte limit/],
      [{ cyc: cyclic }, /^tidelog.*key "cyc\.self" cannot be logged: it contains itself/],
      [{ nest: { list: [1, looped] } }, /^tidelog.*key "nest\.list\[1\]\[0\]" cannot be logged: it contains itself/],
      [{ when: new Date(0) }, /^tidelog.*key "when" cannot be logged: it is a Date, not a plain object/],
      [{ map: new Map([["k", 2]]) }, /^tidelog.*key "map" cannot be logged: it is a Map/],
      [{ later: Promise.resolve(1) }, /^tidelog.*key "later" cannot be logged: it is a Promise/],
      [{ o: { big: 1n } }, /^tidelog.*key "o\.big" cannot be logged: it is a bigint/],
      [{ b64: new BigInt64Array([1n]) }, /^tidelog.*key "b64" cannot be logged: it holds BigInts/],
      [{ deep: { a: [{ s: Symbol("x") }] } }, /^tidelog.*key "deep\.a\[0\]\.s" cannot be logged: it is a symbol/],
    ];
    for (const [data, names] of refused) {
      assert.throws(() => tidelog.log(data), (e) => e instanceof TypeError && names.test(e.message), JSON.stringify(Object.keys(data)));
    }
    const ten = "y".repeat(10_000_000);
    tidelog.log({ loss: 2, text: ten });
    tidelog.log({ loss: 3, nested: { x: NaN, y: [1, -Infinity], z: 4 }, f32: new Float32Array([0.5, Infinity]), shared: [cyclic.a, cyclic.a] });
    await tidelog.finish();
    await tidelog.sync();

    const { rows } = await api(server, `/api/v1/runs/${run.id}/history`);
    assert.deepEqual(rows.map((r) => [r._step, r.loss]), [[0, 1], [1, 2], [2, 3]]);
    assert.equal(rows[1].text.length, ten.length);
    assert.ok(rows.every((r) => !("huge" in r) && !("f" in r) && !("cyc" in r) && !("when" in r)));
    assert.deepEqual(rows[2].nested, { x: "NaN", y: [1, "-Infinity"], z: 4 });
    assert.deepEqual(rows[2].f32, [0.5, "Infinity"]);
    assert.deepEqual(rows[2].shared, [1, 1]);
  } finally {
    server.stop();
  }
});
