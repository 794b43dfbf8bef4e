// Browser end to end: the npm package in real headless Chromium (playwright-core + Debian's
// /usr/bin/chromium) against a real `tidelog serve` on 127.0.0.1. Offline logging across a
// reload, a flapping network, two tabs, bad values and media; the server must end with every
// row exactly once. Prints one line per check and "N passed, N failed".
import { assert, check, e2e, summary, until } from "./lib/harness.mjs";

const { web, srv, browser, open: openPage, close } = await e2e();
const origin = web.origin;
const api = srv.api;
const rows = (id) => srv.rows(id);
const open = (context) => openPage(context, "/offline.html");

/** Syncs `page` until its run `id` has nothing unsynced and the server holds `want` rows. */
async function settle(page, id, want) {
  try {
    await until(`run ${id} to settle`, async () => {
      const r = await page.evaluate(() => t.sync());
      const p = await page.evaluate(() => t.pending());
      return !r.error && p.unsynced === 0 && (await rows(id)).length >= want;
    });
  } catch (e) {
    throw new Error(`${e.message}: ${JSON.stringify(await page.evaluate(() => t.pending()))}`);
  }
}
function exactlyOnce(got, n, valueOf = (i) => i * 0.5) {
  assert(got.length === n, `expected ${n} rows, the server has ${got.length}`);
  got.forEach((r, i) => {
    assert(r._step === i && r.i === i && r.v === valueOf(i), `row ${i} is ${JSON.stringify(r)}`);
  });
}

try {
  await check("offline: 1,000 steps, reload, more steps, online → every row exactly once", async () => {
    const context = await browser.newContext();
    // Offline emulation also blocks the page's own server, so a reload cannot happen while
    // offline; the tidelog server stays unreachable by route instead, the whole time.
    await context.route(`${srv.url}/**`, (r) => r.abort("internetdisconnected"));
    const page = await open(context);
    await context.setOffline(true);
    const id = "offline1";
    await page.evaluate(([id, s, k]) => t.start(id, s, k), [id, srv.url, srv.key]);
    await page.evaluate(() => t.logSteps(0, 1000));
    await page.evaluate(() => t.flush());
    assert((await page.evaluate(() => t.pending())).buffered === 0, "records reached IndexedDB");
    assert((await api(`/api/v1/runs/${id}`)).status === 404, "nothing reached the server while offline");
    await context.setOffline(false);
    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    const step = await page.evaluate(([id, s, k]) => t.start(id, s, k), [id, srv.url, srv.key]);
    assert(step === 1000, `resumed at step ${step}`);
    await page.evaluate(() => t.logSteps(1000, 500));
    await page.evaluate(() => t.flush());
    assert((await api(`/api/v1/runs/${id}`)).status === 404, "still nothing on the server");
    await context.unroute(`${srv.url}/**`);
    await settle(page, id, 1500);
    exactlyOnce(await rows(id), 1500);
    await context.close();
  });

  await check("a reload or a navigation right after log() loses nothing: pagehide stores the batch and the open row", async () => {
    const context = await browser.newContext();
    await context.route(`${srv.url}/**`, (r) => r.abort("internetdisconnected"));
    const page = await open(context);
    const id = "pagehide";
    await page.evaluate(([id, s, k]) => t.start(id, s, k), [id, srv.url, srv.key]);
    await page.evaluate(() => t.logSteps(0, 300));
    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    const step = await page.evaluate(([id, s, k]) => t.start(id, s, k), [id, srv.url, srv.key]);
    assert(step === 300, `after the reload the run resumes at step ${step}, not 300`);
    // Explicit steps leave the last row open until a later step; leaving the page commits it.
    await page.evaluate(() => { for (let i = 300; i < 500; i++) t.log({ i, v: i * 0.5 }, { step: i }); });
    await page.goto("about:blank");
    await page.goto(`${origin}/offline.html`);
    await page.waitForFunction(() => window.ready === true);
    await page.evaluate(([id, s, k]) => t.start(id, s, k), [id, srv.url, srv.key]);
    await context.unroute(`${srv.url}/**`);
    await settle(page, id, 500);
    exactlyOnce(await rows(id), 500);
    await context.close();
  });

  await check("a run synced while its tab was open is marked crashed by the next tab's sync", async () => {
    const context = await browser.newContext();
    const first = await open(context);
    await first.evaluate(([id, s, k]) => t.start(id, s, k), ["tabgone", srv.url, srv.key]);
    await first.evaluate(() => t.logSteps(0, 20));
    await settle(first, "tabgone", 20);
    assert((await api("/api/v1/runs/tabgone")).body.state === "running", "synced as running while its tab lives");
    await first.close();
    const next = await open(context);
    await next.evaluate(([id, s, k]) => t.start(id, s, k), ["tabnext", srv.url, srv.key]);
    await until("the closed tab's run marked crashed", async () => {
      await next.evaluate(() => t.sync());
      return (await api("/api/v1/runs/tabgone")).body.state === "crashed";
    });
    exactlyOnce(await rows("tabgone"), 20);
    await context.close();
  });

  await check("flapping network every 200 ms while logging 2,000 steps → exactly once", async () => {
    const context = await browser.newContext();
    const page = await open(context);
    const id = "flapping";
    await page.evaluate(([id, s, k]) => t.start(id, s, k), [id, srv.url, srv.key]);
    let offline = false;
    const flap = setInterval(() => { offline = !offline; context.setOffline(offline).catch(() => {}); }, 200);
    for (let from = 0; from < 2000; from += 100) {
      await page.evaluate((from) => t.logSteps(from, 100), from);
      // Pacing, not waiting for anything: logging spans many flaps of the network.
      await new Promise((r) => setTimeout(r, 60));
    }
    clearInterval(flap);
    await context.setOffline(false);
    await settle(page, id, 2000);
    exactlyOnce(await rows(id), 2000);
    await context.close();
  });

  await check("two tabs log at once: both runs whole and unmixed; one run id per tab", async () => {
    const context = await browser.newContext();
    const [a, b] = [await open(context), await open(context)];
    await a.evaluate(([s, k]) => t.start("tab-a", s, k), [srv.url, srv.key]);
    await b.evaluate(([s, k]) => t.start("tab-b", s, k), [srv.url, srv.key]);
    for (let from = 0; from < 300; from += 50) {
      await Promise.all([a.evaluate((f) => t.logSteps(f, 50, { tab: 1 }), from), b.evaluate((f) => t.logSteps(f, 50, { tab: 2 }), from)]);
    }
    const c = await open(context);
    const err = await c.evaluate(([s, k]) => t.start("tab-a", s, k).then(() => null, (e) => e.message), [srv.url, srv.key]);
    assert(err?.includes("open in another tab"), `a second tab opened tab-a: ${err}`);
    await settle(a, "tab-a", 300);
    await settle(b, "tab-b", 300);
    for (const [id, tab] of [["tab-a", 1], ["tab-b", 2]]) {
      const got = await rows(id);
      exactlyOnce(got, 300);
      assert(got.every((r) => r.tab === tab), `${id} has rows of the other tab`);
    }
    await context.close();
  });

  await check("bad values are a TypeError naming the key; NaN and ±Infinity round-trip", async () => {
    const context = await browser.newContext();
    const page = await open(context);
    await page.evaluate(([s, k]) => t.start("values1", s, k), [srv.url, srv.key]);
    await page.evaluate(() => t.log({ x: NaN }));
    const err = await page.evaluate(() => t.tryLog({ ok: 1, f: () => 1 }));
    assert(err?.type === "TypeError" && err.message.includes('"f"'), JSON.stringify(err));
    const sym = await page.evaluate(() => t.tryLog({ s: Symbol("x") }));
    assert(sym?.type === "TypeError" && sym.message.includes('"s"'), JSON.stringify(sym));
    await page.evaluate(() => t.log({ x: Infinity, y: -Infinity }));
    await settle(page, "values1", 2);
    const got = await rows("values1");
    assert(got.length === 2, `${got.length} rows: the refused calls left nothing behind`);
    assert(got[0].x === "NaN" && got[1].x === "Infinity" && got[1].y === "-Infinity", JSON.stringify(got));
    assert(!("ok" in got[0]) && !("ok" in got[1]), "a refused call is refused whole");
    await context.close();
  });

  await check("an image and a saved file logged offline arrive identical; a file saved twice is stored once", async () => {
    const context = await browser.newContext();
    await context.route(`${srv.url}/**`, (r) => r.abort("internetdisconnected"));
    const page = await open(context);
    await context.setOffline(true);
    await page.evaluate(([s, k]) => t.start("media01", s, k), [srv.url, srv.key]);
    const pixels = await page.evaluate(() => t.image("sample", 12, 7));
    const bytes = Array.from({ length: 5000 }, (_, i) => (i * 131) % 256);
    await page.evaluate((b) => { t.save("model.bin", b); t.save("model.bin", b); }, bytes);
    await page.evaluate(() => t.flush());
    await context.setOffline(false);
    await context.unroute(`${srv.url}/**`);
    await settle(page, "media01", 1);
    const [row] = await rows("media01");
    assert(row.sample._type === "image-file" && row.sample.width === 12 && row.sample.caption === "pattern", JSON.stringify(row.sample));
    const back = await page.evaluate(([u, k]) => t.pixels(u, k), [`${srv.url}/api/v1/runs/media01/files/${row.sample.path}`, srv.key]);
    assert(back.length === pixels.length && back.every((v, i) => v === pixels[i]), "the image's pixels differ");
    const file = await api("/api/v1/runs/media01/files/model.bin");
    assert(Buffer.from(file.body).equals(Buffer.from(bytes)), "model.bin differs");
    const { body } = await api("/api/v1/runs/media01/files");
    assert(body.files.filter((f) => f.path === "model.bin").length === 1, JSON.stringify(body.files));
    await context.close();
  });
  for (const [how, id] of [["put", "quota01"], ["commit", "quota02"]]) {
    await check(`a full storage quota (${how} fails) is reported to the page (event + error) and nothing is lost`, async () => {
      const context = await browser.newContext();
      const page = await open(context);
      await page.evaluate(([i, s, k]) => t.start(i, s, k), [id, srv.url, srv.key]);
      await page.evaluate(() => t.logSteps(0, 100));
      await page.evaluate(() => t.flush());
      await page.evaluate((h) => t.quota(h), how);
      await page.evaluate(() => t.logSteps(100, 100));
      await page.evaluate(() => t.flush());
      const events = await page.evaluate(() => window.quotaEvents);
      assert(events.length >= 1 && /quota/i.test(events[0]) && /kept in memory/.test(events[0]), `quota events: ${JSON.stringify(events)} pending: ${JSON.stringify(await page.evaluate(() => t.pending()))}`);
      const p = await page.evaluate(() => t.pending());
      assert(p.buffered >= 100 && /quota/i.test(p.lastError ?? ""), `kept in memory: ${JSON.stringify(p)}`);
      await page.evaluate(() => t.quota(false));
      await settle(page, id, 200);
      exactlyOnce(await rows(id), 200);
      await context.close();
    });
  }

  await check("www/ demo trains a tfjs model offline; its steps reach the server once online", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("pageerror", (e) => console.log(`  page error: ${e.message}`));
    await page.goto(`${origin}/www/index.html`);
    await page.fill("#server", srv.url);
    await page.fill("#apikey", srv.key);
    await page.waitForFunction(() => window.demo && window.tf);
    await context.setOffline(true);
    const id = await page.evaluate(() => window.demo.train(60));
    assert((await api(`/api/v1/runs/${id}`)).status === 404, "nothing reached the server while offline");
    await context.setOffline(false);
    await until("the demo's 61 rows on the server", async () => (await rows(id)).length >= 61);
    const got = await rows(id);
    assert(got.length === 61, `${got.length} rows`);
    assert(got.slice(0, 60).every((r, i) => r._step === i && typeof r.loss === "number" && typeof r.acc === "number"), "loss/acc per step");
    assert(got[60].data._type === "image-file" && got[60].confusion._type === "table", JSON.stringify(got[60]));
    const { body } = await api(`/api/v1/runs/${id}`);
    assert(body.state === "finished" && body.config.hidden === 16, JSON.stringify(body));
    await context.close();
  });
} finally {
  await close();
}
summary();
