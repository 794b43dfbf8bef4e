// Charts from Node like wandb.plot: Plot.line / scatter / bar from rows or a Table reach the
// server as Vega-Lite specs with their data; bad arguments are a TypeError naming the helper.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tidelog from "../../pkg/node.js";
import { api, startServer, tempDir } from "./helpers.mjs";

test("Plot.line, Plot.scatter and Plot.bar log Vega-Lite specs with their rows", async () => {
  const server = await startServer();
  try {
    const run = await tidelog.init({ project: "plots", dir: tempDir(), mode: "offline", server: server.url, apiKey: server.key, systemIntervalMs: 0 });
    const rows = [{ epoch: 0, loss: 1.5 }, { epoch: 1, loss: 0.75 }];
    const table = tidelog.Table({ columns: ["class", "count"], data: [["cat", 3], ["dog", 5]] });
    tidelog.log({
      curve: tidelog.Plot.line(rows, "epoch", "loss", { title: "loss" }),
      cloud: tidelog.Plot.scatter(rows, "epoch", "loss"),
      counts: tidelog.Plot.bar({ columns: ["class", "count"], data: [["cat", 3], ["dog", 5]] }, "class", "count"),
      fromTable: tidelog.Plot.bar(table, "class", "count"),
      table,
    });
    assert.throws(() => tidelog.Plot.line("nope", "x", "y"), /^TypeError: tidelog\.Plot\.line: expected an array of rows or a Table/);
    assert.throws(() => tidelog.Plot.bar(rows, "epoch"), /^TypeError: tidelog\.Plot\.bar: expected the x and y field names/);
    await tidelog.finish();
    await tidelog.sync();

    const [row] = (await api(server, `/api/v1/runs/${run.id}/history`)).rows;
    assert.deepEqual(row.curve, {
      _type: "plot",
      spec: { mark: "line", encoding: { x: { field: "epoch", type: "quantitative" }, y: { field: "loss", type: "quantitative" } }, title: "loss" },
      data: { values: rows },
    });
    assert.equal(row.cloud.spec.mark, "point");
    assert.equal(row.counts.spec.mark, "bar");
    assert.deepEqual(row.counts.data.values, [{ class: "cat", count: 3 }, { class: "dog", count: 5 }]);
    assert.deepEqual(row.fromTable.data.values, row.counts.data.values, "a tidelog.Table charts like its rows");
    assert.deepEqual(row.table, { _type: "table", columns: ["class", "count"], data: [["cat", 3], ["dog", 5]] });
  } finally {
    server.stop();
  }
});
