// Browser end to end: what a sync reads from IndexedDB and what IndexedDB keeps (headless
// Chromium, a real `tidelog serve`). A re-sync after one new step reads the chunks from the
// acknowledged record on (a key range on [run, seq]), not the run's history; an ended run the
// server acknowledged leaves one small chunk behind, and resumes and syncs on from there;
// `keepSynced: true` keeps every chunk. Prints one line per check and "N passed, N failed".
import { assert, check, contiguous, e2e, summary, until } from "./lib/harness.mjs";

const { srv, browser, open, close } = await e2e();
const CHUNKS = 50;
const PER = 20;

try {
  await check("a re-sync after one new step reads at most 2 of 52 chunks; a synced finish leaves 1 small chunk; the run resumes from it", async () => {
    const context = await browser.newContext();
    const page = await open(context, "/chunks.html");
    await page.evaluate(([s, k]) => t.start("chunky1", s, k), [srv.url, srv.key]);
    await page.evaluate(([n, per]) => t.logChunks(0, n, per), [CHUNKS, PER]);
    const first = await page.evaluate(() => t.sync());
    assert(first.ok, `first sync: ${JSON.stringify(first)}`);
    assert(first.read >= CHUNKS, `the first sync reads every chunk: ${first.read}`);
    await page.evaluate(([from]) => t.logChunks(from, 1, 1), [CHUNKS * PER]);
    const total = (await page.evaluate(() => t.stored("chunky1"))).chunks;
    assert(total > CHUNKS, `${total} chunks stored`);
    const again = await page.evaluate(() => t.sync());
    assert(again.ok, `re-sync: ${JSON.stringify(again)}`);
    assert(again.read <= 2, `a re-sync after one new step read ${again.read} of ${total} chunks`);
    const n = CHUNKS * PER + 1;
    contiguous(await srv.rows("chunky1"), n);

    await page.evaluate(() => t.finish());
    await until("the finished run synced", async () => {
      const r = await page.evaluate(() => t.sync());
      const { body } = await srv.api("/api/v1/runs/chunky1");
      return r.ok && body.state === "finished";
    });
    const kept = await page.evaluate(() => t.stored("chunky1"));
    assert(kept.chunks === 1 && kept.bytes < 256, `after a synced finish IndexedDB keeps ${JSON.stringify(kept)}`);

    const step = await page.evaluate(([s, k]) => t.start("chunky1", s, k, { resume: "must" }), [srv.url, srv.key]);
    assert(step === n, `the resumed run continues at step ${step}, expected ${n}`);
    await page.evaluate(([from]) => t.logChunks(from, 2, 3), [n]);
    await page.evaluate(() => t.finish());
    await until("the resumed run synced", async () => (await page.evaluate(() => t.sync())).ok && (await srv.rows("chunky1")).length === n + 6);
    contiguous(await srv.rows("chunky1"), n + 6);
    const after = await page.evaluate(() => t.stored("chunky1"));
    assert(after.chunks === 1, `after the resumed run's synced finish IndexedDB keeps ${JSON.stringify(after)}`);
    await context.close();
  });

  await check("keepSynced: true keeps every chunk of a synced, finished run", async () => {
    const context = await browser.newContext();
    const page = await open(context, "/chunks.html");
    await page.evaluate(([s, k]) => t.start("keeper1", s, k, { keepSynced: true }), [srv.url, srv.key]);
    await page.evaluate(() => t.logChunks(0, 5, 4));
    await page.evaluate(() => t.finish());
    await until("the kept run synced", async () => (await page.evaluate(() => t.sync())).ok && (await srv.rows("keeper1")).length === 20);
    const kept = await page.evaluate(() => t.stored("keeper1"));
    assert(kept.chunks >= 6, `keepSynced kept ${JSON.stringify(kept)}`);
    await context.close();
  });
} finally {
  await close();
}
summary();
