// Browser (and Web Worker) entry of the tidelog npm package: loads its own wasm, stores runs
// in IndexedDB, syncs over fetch while online, and hands what it could not sync to the
// package's Service Worker (sw.js) through Background Sync.
import initWasm, * as wasm from "./web/tidelog_wasm.js";
import { createTidelog } from "./core.js";

const exports = await initWasm({ module_or_path: new URL("./web/tidelog_wasm_bg.wasm", import.meta.url) });

const g = globalThis;
const heldLocks = new Map();
const SYNC_TAG = "tidelog-sync";
const SW_URL = new URL("./sw.js", import.meta.url);
let swRegistration = null;
// Whether a Background Sync was asked for since the page last saw itself online.
let askedOffline = false;
// A plain connection to the `tidelog` database for storeNow(): the wasm store's requests
// are awaited, and an unloading page never delivers the events they wait for.
let rawDb = null;

function openRaw() {
  return new Promise((resolve) => {
    const req = g.indexedDB.open("tidelog");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null);
  });
}

const platform = {
  async openStore(opts) {
    if (opts.storage === "memory" || typeof g.indexedDB === "undefined") return wasm.Store.memory();
    const store = await wasm.Store.indexedDb();
    rawDb ??= await openRaw();
    return store;
  },
  // pagehide: what the run has not stored yet goes into IndexedDB in one transaction whose
  // requests are all issued, and committed, before this returns (see WasmRun.unflushed).
  storeNow(w) {
    const u = rawDb && w.unflushed();
    if (!u) return;
    try {
      const tx = rawDb.transaction(["runs", "chunks", "blobs"], "readwrite");
      for (const b of u.blobs) tx.objectStore("blobs").put(b);
      for (const c of u.chunks) tx.objectStore("chunks").put({ run: u.run, seq: c.seq, bytes: c.bytes });
      tx.objectStore("runs").put({ id: `~late:${u.run}`, log_bytes: u.logBytes });
      tx.commit?.();
    } catch (e) {
      console.warn(`tidelog: could not store records on pagehide: ${e?.message ?? e}`);
    }
  },
  config: (name) => g.tidelogConfig?.[name],
  // A page found offline (also one that never saw an `offline` event) asks once for a
  // Background Sync, so the Service Worker uploads its runs when the network returns.
  online() {
    const online = g.navigator?.onLine ?? true;
    if (online) askedOffline = false;
    else if (!askedOffline) { askedOffline = true; askBackgroundSync(); }
    return online;
  },
  autoSync: true,
  onOnline: (cb) => g.addEventListener?.("online", cb),
  onOffline: (cb) => g.addEventListener?.("offline", cb),
  onHide: (cb) => {
    g.addEventListener?.("pagehide", (e) => cb(!e.persisted));
    g.document?.addEventListener("visibilitychange", () => g.document.visibilityState === "hidden" && cb(false));
  },
  warn: (msg) => console.warn(msg),
  // A Web Lock per live run: another tab sees it as running, never as crashed.
  async hold(id) {
    const locks = g.navigator?.locks;
    if (!locks) return () => {};
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    const got = await new Promise((resolve) => {
      locks.request(`tidelog:run:${id}`, { ifAvailable: true }, (lock) => {
        resolve(Boolean(lock));
        return lock ? held : undefined;
      });
    });
    if (!got) throw new Error(`tidelog.init: run ${id} is open in another tab`);
    heldLocks.set(id, release);
    return () => { heldLocks.delete(id); release(); };
  },
  async liveElsewhere() {
    const locks = g.navigator?.locks;
    if (!locks) return [];
    const { held = [] } = await locks.query();
    return held
      .map((l) => l.name)
      .filter((n) => n?.startsWith("tidelog:run:"))
      .map((n) => n.slice("tidelog:run:".length))
      .filter((id) => !heldLocks.has(id));
  },
  startSystemMetrics(run, every) {
    if (!every) return;
    const sample = async () => {
      if (run._finished) return;
      const row = { "cpu.count": g.navigator?.hardwareConcurrency ?? 0 };
      if (g.navigator?.deviceMemory) row["memory.device_gb"] = g.navigator.deviceMemory;
      const mem = g.performance?.memory;
      if (mem) {
        row["js.heap.used_bytes"] = mem.usedJSHeapSize;
        row["js.heap.total_bytes"] = mem.totalJSHeapSize;
        row["js.heap.limit_bytes"] = mem.jsHeapSizeLimit;
      }
      try {
        const est = await g.navigator?.storage?.estimate?.();
        if (est) { row["storage.usage_bytes"] = est.usage ?? 0; row["storage.quota_bytes"] = est.quota ?? 0; }
      } catch { /* storage estimate is optional */ }
      row["gpu.webgpu"] = g.navigator?.gpu ? 1 : 0;
      run._logSystem(row);
    };
    sample();
    const timer = setInterval(sample, every);
    const finish = run.finish.bind(run);
    run.finish = async (opts) => { clearInterval(timer); return finish(opts); };
    g.navigator?.gpu?.requestAdapter?.().then(async (adapter) => {
      const info = adapter?.info ?? (await adapter?.requestAdapterInfo?.());
      if (info && !run._finished) {
        run.config.update({ _webgpu: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description } });
      }
    }).catch(() => {});
  },
};

// The Service Worker registration to ask for a Background Sync: the one this page registered,
// else the one whose scope covers the package (registered by an earlier page load).
async function registration() {
  const sw = g.navigator?.serviceWorker;
  if (!sw) return null;
  return swRegistration ?? (await sw.getRegistration(new URL(".", SW_URL)).catch(() => null)) ?? null;
}

// Where the browser has Background Sync (Chromium), the Service Worker gets a `tidelog-sync`
// event once the network is back, with or without this page; elsewhere it syncs on its next start.
async function askBackgroundSync() {
  try {
    const reg = await registration();
    // Asked once: registering a tag again while its event runs makes the browser fire it twice.
    if (reg?.active && reg.sync && !(await reg.sync.getTags()).includes(SYNC_TAG)) await reg.sync.register(SYNC_TAG);
  } catch (e) {
    console.warn(`tidelog: could not ask for a background sync: ${e?.message ?? e}`);
  }
}

const api = createTidelog(wasm, exports.memory, platform);
api.on("sync", (e) => e.phase === "error" && askBackgroundSync());
g.addEventListener?.("offline", () => { askedOffline = true; askBackgroundSync(); });

/**
 * Registers the package's Service Worker (`sw.js` next to this file, or `scriptURL`: a module
 * script served elsewhere, e.g. one that imports the package's `sw.js`), which uploads pending
 * runs with no page open; resolves to its ServiceWorkerRegistration once the worker is active.
 */
export async function registerServiceWorker(scriptURL = SW_URL) {
  const sw = g.navigator?.serviceWorker;
  if (!sw) {
    throw new Error("tidelog.registerServiceWorker: no Service Workers here (they need a page in a secure context: https:// or http://localhost)");
  }
  const reg = await sw.register(scriptURL, { type: "module" });
  const worker = reg.installing ?? reg.waiting ?? reg.active;
  if (worker && worker.state !== "activated") {
    await new Promise((resolve, reject) => {
      const seen = () => {
        if (worker.state === "activated") resolve();
        else if (worker.state === "redundant") reject(new Error(`tidelog.registerServiceWorker: ${scriptURL} failed to install`));
      };
      worker.addEventListener("statechange", seen);
      seen();
    });
  }
  swRegistration = reg;
  return reg;
}

export const { init, log, finish, save, sync, pending, on, Image, Audio, Histogram, Table, Plot } = api;
