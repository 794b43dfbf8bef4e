// tidelog's Service Worker (registered by tidelog.registerServiceWorker): uploads the runs
// pending in IndexedDB with no page open, through the same wasm sync engine as a page
// (Store.syncAll), each run to the server and key it was started with. It syncs whenever it
// starts and on every Background Sync event tagged `tidelog-sync`, which pages register when
// their own sync fails or they go offline.
//
// A module Service Worker allows neither top-level await nor import(), so the wasm is loaded
// by a promise every handler waits on.
import initWasm, * as wasm from "./web/tidelog_wasm.js";

const TAG = "tidelog-sync";
const ready = initWasm({ module_or_path: new URL("./web/tidelog_wasm_bg.wasm", import.meta.url) });
let chain = Promise.resolve();
let opened = null;

// One connection to the `tidelog` database for the worker's life (opened again after a failure).
function store() {
  opened ??= ready.then(() => wasm.Store.indexedDb()).catch((e) => {
    opened = null;
    throw e;
  });
  return opened;
}

// Runs a page or worker still writes hold a Web Lock (see `hold` in tidelog.js): they go up as
// running; every other unfinished run has lost its writer and goes up as crashed.
async function liveRuns() {
  const { held = [] } = (await self.navigator.locks?.query()) ?? {};
  return held
    .map((l) => l.name)
    .filter((n) => n?.startsWith("tidelog:run:"))
    .map((n) => n.slice("tidelog:run:".length));
}

// One sync at a time: a start-up sync and a sync event never upload the same run at once.
// Rejects when a run could not be sent, so the browser retries the sync event later.
function syncPending() {
  chain = chain.catch(() => {}).then(async () => {
    const reports = await (await store()).syncAll(undefined, undefined, await liveRuns());
    const failed = reports.filter((r) => r.error);
    if (failed.length) throw new Error(`tidelog: ${failed.map((r) => `${r.id}: ${r.error}`).join("; ")}`);
    return reports;
  });
  // Handled here so a failure is not reported as uncaught; callers still see it reject.
  chain.catch(() => {});
  return chain;
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("sync", (event) => {
  if (event.tag === TAG) event.waitUntil(syncPending());
});
syncPending().catch((e) => console.warn(`tidelog: the Service Worker's start-up sync failed: ${e?.message ?? e}`));
