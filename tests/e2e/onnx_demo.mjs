// Browser end to end: the www/onnx.html demo (onnxruntime-web from node_modules, wasm backend,
// one thread) runs inference offline in headless Chromium and logs through tidelog; once
// online, its rows, the sample image's bytes and the predictions table reach a real
// `tidelog serve`. Prints one line per check and "N passed, N failed".
import { createHash } from "node:crypto";
import { assert, check, e2e, summary, until } from "./lib/harness.mjs";

const { srv, browser, open, close } = await e2e();
const CLASSES = ["horizontal", "vertical", "diagonal"];

try {
  await check("onnx demo offline → online: per-batch latency and throughput, the image and the table reach the server", async () => {
    const context = await browser.newContext();
    // The page is ready once the model is loaded: nothing is fetched after that.
    const page = await open(context, "/www/onnx.html", "window.onnxDemo");
    await page.fill("#server", srv.url);
    await page.fill("#apikey", srv.key);
    assert(!(await page.evaluate(() => self.crossOriginIsolated)), "the page is not cross-origin isolated");
    await context.setOffline(true);
    const batches = 20;
    const out = await page.evaluate((n) => window.onnxDemo.infer({ batches: n, batchSize: 128 }), batches);
    assert((await srv.api(`/api/v1/runs/${out.id}`)).status === 404, "nothing reached the server while offline");
    await context.setOffline(false);
    await until("the run's rows on the server", async () => (await srv.rows(out.id)).length === batches + 1);
    const rows = await srv.rows(out.id);
    rows.slice(0, batches).forEach((r, i) => {
      assert(r._step === i && r.latency_ms >= 0 && r.batch_accuracy >= 0 && r.batch_accuracy <= 1, `batch row ${i}: ${JSON.stringify(r)}`);
      assert(r.throughput === undefined || Math.abs(r.throughput - (128 * 1000) / r.latency_ms) < 1e-6 * r.throughput, `throughput of row ${i}`);
    });
    assert(rows.slice(0, batches).some((r) => r.throughput > 0), "throughput logged");
    const last = rows[batches];
    assert(last.predictions._type === "table" && JSON.stringify(last.predictions.data) === JSON.stringify(out.rows), `the table: ${JSON.stringify(last.predictions)}`);
    assert(JSON.stringify(last.predictions.columns) === JSON.stringify(["index", "label", "predicted", "confidence"]), "table columns");
    assert(out.rows.every((r) => CLASSES.includes(r[1]) && CLASSES.includes(r[2]) && r[3] > 0 && r[3] <= 1), JSON.stringify(out.rows));
    const img = last.samples;
    assert(img._type === "image-file" && img.width === 256 && img.height === 32, JSON.stringify(img));
    const file = await srv.api(`/api/v1/runs/${out.id}/files/${img.path}`);
    assert(file.status === 200 && file.body.length === img.size, `image file: ${file.status}, ${file.body.length} bytes`);
    assert(createHash("sha256").update(file.body).digest("hex") === img.sha256, "the image's bytes differ from what the page logged");
    assert(file.body.subarray(1, 4).toString() === "PNG" && file.body.readUInt32BE(16) === 256 && file.body.readUInt32BE(20) === 32, "a 256×32 PNG");
    const { body: run } = await srv.api(`/api/v1/runs/${out.id}`);
    assert(run.state === "finished" && run.config.backend === "wasm" && run.config.threads === 1, JSON.stringify(run.config));
    // The model the project trained is a real classifier, not noise.
    assert(run.summary.accuracy > 0.9 && run.summary.throughput > 0, JSON.stringify(run.summary));
    await context.close();
  });
} finally {
  await close();
}
summary();
