// Browser (and worker) entry of the tidelog npm package: loads its own wasm, stores runs in
// IndexedDB, syncs over fetch while online.
import initWasm, * as wasm from "./web/tidelog_wasm.js";
import { createTidelog } from "./core.js";

const exports = await initWasm({ module_or_path: new URL("./web/tidelog_wasm_bg.wasm", import.meta.url) });

const g = globalThis;
const heldLocks = new Map();
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
  online: () => g.navigator?.onLine ?? true,
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

export const { init, log, finish, save, sync, pending, on, Image, Audio, Histogram, Table, Plot } =
  createTidelog(wasm, exports.memory, platform);
