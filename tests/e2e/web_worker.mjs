// Browser end to end: the package in a dedicated Web Worker (headless Chromium, a real
// `tidelog serve`). A training loop in the worker logs into IndexedDB next to the page's own
// run without the two mixing, and a worker terminated mid-run leaves a run that syncs as
// `crashed` with every step it had flushed. Prints one line per check and "N passed, N failed".
import { assert, check, contiguous, e2e, summary, until } from "./lib/harness.mjs";

const { srv, browser, open: load, close } = await e2e();

async function open(context) {
  const page = await load(context, "/worker.html");
  await page.evaluate(() => t.spawn());
  return page;
}

async function state(id) {
  const { status, body } = await srv.api(`/api/v1/runs/${id}`);
  return status === 200 ? body.state : null;
}

try {
  await check("a worker's training loop and the page log at once: both runs whole, unmixed, synced; the worker has system metrics", async () => {
    const context = await browser.newContext();
    const page = await open(context);
    const where = await page.evaluate(() => t.call("global"));
    assert(where.isWorker && !where.hasWindow, `the loop runs in a worker: ${JSON.stringify(where)}`);
    await page.evaluate(([s, k]) => t.start("page-w1", s, k), [srv.url, srv.key]);
    const taken = await page.evaluate(([s, k]) => t.call("start", { id: "page-w1", server: s, apiKey: k }).then(() => null, (e) => e.message), [srv.url, srv.key]);
    assert(taken?.includes("open in another tab"), `the worker opened the page's run: ${taken}`);
    const wid = await page.evaluate(([s, k]) => t.call("start", { id: "work-w1", server: s, apiKey: k }), [srv.url, srv.key]);
    assert(wid === "work-w1", `worker run id ${wid}`);
    const training = page.evaluate(() => t.call("train", { steps: 1000, flushEvery: 100 }));
    for (let from = 0; from < 300; from += 50) await page.evaluate((f) => t.logSteps(f, 50), from);
    assert((await training) === 1000, "the worker trained 1,000 steps");
    assert((await page.evaluate(() => t.pending())).run === "page-w1", "the page's pending() is the page's run");
    await page.evaluate(() => t.call("finish"));
    const p = await page.evaluate(() => t.call("pending"));
    assert(p.unsynced === 0 && p.buffered === 0 && !p.lastError, `the worker synced itself: ${JSON.stringify(p)}`);
    await page.evaluate(() => t.flush());
    let seen;
    await until("the page's run on the server", async () => {
      seen = { sync: await page.evaluate(() => t.sync()), rows: (await srv.rows("page-w1")).length };
      return seen.sync.ok && seen.rows === 300;
    }).catch((e) => { throw new Error(`${e.message}; last seen ${JSON.stringify(seen).slice(0, 500)}`); });
    contiguous(await srv.rows("page-w1"), 300, { src: "page" });
    const work = await srv.rows("work-w1");
    contiguous(work, 1000, { src: "worker" });
    assert(work.every((r) => typeof r.loss === "number" && typeof r.acc === "number"), "tfjs loss and accuracy per step");
    assert(work.at(-1).loss < work[0].loss, `the worker's tfjs model learned: loss ${work[0].loss} → ${work.at(-1).loss}`);
    assert((await state("work-w1")) === "finished", "the worker's run finished");
    assert((await state("page-w1")) === "running", "the page's run is still running");
    const sys = await srv.rows("work-w1", "system");
    assert(sys.length >= 1 && sys.every((r) => r["cpu.count"] > 0), `system rows from the worker: ${JSON.stringify(sys.slice(0, 2))}`);
    await context.close();
  });

  await check("worker.terminate() mid-run: the run syncs as crashed, every step up to the last flush exactly once", async () => {
    const context = await browser.newContext();
    // The server stays unreachable while the worker trains: what reaches it later came from IndexedDB.
    await context.route(`${srv.url}/**`, (r) => r.abort("internetdisconnected"));
    const page = await open(context);
    await page.evaluate(([s, k]) => t.start("page-w2", s, k), [srv.url, srv.key]);
    await page.evaluate(([s, k]) => t.call("start", { id: "work-w2", server: s, apiKey: k }), [srv.url, srv.key]);
    const flushed = await page.evaluate(() => t.trainAndTerminate(1000, 100));
    assert(flushed >= 1000, `flushed at step ${flushed}`);
    await context.unroute(`${srv.url}/**`);
    await until("the terminated worker's run to be crashed on the server", async () => {
      await page.evaluate(() => t.sync());
      return (await state("work-w2")) === "crashed";
    });
    const rows = await srv.rows("work-w2");
    assert(rows.length >= flushed, `${rows.length} rows on the server, ${flushed} were flushed`);
    contiguous(rows, rows.length, { src: "worker" });
    const again = await page.evaluate(() => t.sync());
    assert(again.ok && (await srv.rows("work-w2")).length === rows.length, `a second sync adds nothing: ${JSON.stringify(again)}`);
    await context.close();
  });
} finally {
  await close();
}
summary();
