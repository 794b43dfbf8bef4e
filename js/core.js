// The platform-neutral half of the tidelog npm package: the fast log() path, flush and sync
// scheduling, media helpers. Each entry (tidelog.js for browsers, node.js for Node) hands it
// the wasm module and a small platform object.

const COMMIT = { false: 0, true: 1, undefined: 2 };
// What WasmRun.logStaged returns (LOGGED, DROPPED, REFUSED in src/wasm/run.rs).
const LOGGED = 1;
const REFUSED = 2;
// log() calls between stores while the loop runs faster than the 100 ms timer: about 1 MB of
// log at ten scalars a call.
const FLUSH_CALLS = 8192;

export function createTidelog(wasm, memory, platform) {
  const stores = new Map();
  let current = null;
  let lastOpts = {};
  const runs = new Set();
  const listeners = new Map();
  const acked = new Map();
  const status = { online: platform.online(), syncing: false, lastError: null, lastSync: null, unsyncedRuns: [] };
  let loop = null;
  // Failed syncs in a row; how long to wait after them is the core's (wasm.syncDelayMs).
  let failures = 0;
  let nextAttempt = 0;
  let syncChain = Promise.resolve();

  function emit(event, detail) {
    for (const cb of listeners.get(event) ?? []) {
      try { cb(detail); } catch (e) { platform.warn(e); }
    }
  }

  function on(event, cb) {
    if (!listeners.has(event)) listeners.set(event, new Set());
    listeners.get(event).add(cb);
    return () => listeners.get(event).delete(cb);
  }

  function openStore(opts) {
    const key = JSON.stringify([opts.storage ?? "default", opts.dir ?? null]);
    if (!stores.has(key)) stores.set(key, platform.openStore(opts));
    return stores.get(key);
  }

  class Run {
    constructor(w, opts, release) {
      this._w = w;
      this._opts = opts;
      this._release = release;
      this._ids = new Map();
      this._cap = 0;
      this._ptr = 0;
      this._view = null;
      this._timer = null;
      this._chain = Promise.resolve();
      this._calls = 0;
      this._finished = false;
      this.id = w.id;
      this.config = { update: (obj) => { this._live(); w.configUpdate(obj); this._schedule(); } };
      this.summary = { set: (key, value) => { this._live(); w.summarySet(key, value); this._schedule(); } };
      this._grow(64);
    }

    get step() { return this._w.step; }

    _live() {
      if (this._finished) throw new Error(`tidelog: run ${this.id} has finished`);
    }

    _grow(cap) {
      this._cap = cap;
      this._ptr = this._w.staging(cap);
      this._view = new Float64Array(memory.buffer, this._ptr, cap * 2);
    }

    _fresh() {
      if (this._view.buffer !== memory.buffer) this._view = new Float64Array(memory.buffer, this._ptr, this._cap * 2);
      return this._view;
    }

    log(data, opts) {
      this._live();
      if (data === null || typeof data !== "object" || Array.isArray(data)) {
        throw new TypeError("tidelog.log: expected an object of key → value");
      }
      const w = this._w;
      let view = this._fresh();
      let n = 0;
      try {
        for (const key in data) {
          const v = data[key];
          if (typeof v === "number") {
            let id = this._ids.get(key);
            if (id === undefined) {
              id = w.intern(key);
              this._ids.set(key, id);
              view = this._fresh();
            }
            if (n === this._cap) {
              this._grow(this._cap * 2);
              view = this._view;
            }
            view[2 * n] = id;
            view[2 * n + 1] = v;
            n++;
          } else {
            w.stageValue(key, toLoggable(key, v, this));
            view = this._fresh();
          }
        }
      } catch (e) {
        w.discardStaged();
        throw e;
      }
      const step = opts?.step;
      // Beyond 2^53 a JS number is no longer an exact integer: the step would silently merge
      // with its neighbours, so it is refused.
      if (step !== undefined && (!Number.isSafeInteger(step) || step < 0)) {
        w.discardStaged();
        throw new TypeError(`tidelog.log: step must be a non-negative integer below 2^53 (got ${step})`);
      }
      const outcome = w.logStaged(n, step ?? -1, COMMIT[opts?.commit]);
      if (outcome === REFUSED) throw new TypeError(w.takeRefusal());
      const kept = outcome === LOGGED;
      if (!kept) platform.warn(`tidelog: dropped values logged at step ${step}: the run is at step ${w.step}; steps must not decrease`);
      // A fast loop stores every FLUSH_CALLS calls, not only every 100 ms, so the batch held
      // in memory stays near a megabyte whatever the logging rate.
      if (++this._calls >= FLUSH_CALLS) this.flush();
      else this._schedule();
      return kept;
    }

    save(name, bytes) {
      this._live();
      const file = this._w.save(name, toBytes(bytes, "tidelog.save"));
      this._schedule();
      return file;
    }

    // A system-metrics row from the platform's sampler; stored like log()'s rows.
    _logSystem(row) {
      if (this._finished) return;
      this._w.logSystem(Object.keys(row), Float64Array.from(Object.values(row)));
      this._schedule();
    }

    _schedule() {
      if (this._timer === null) this._timer = setTimeout(() => { this._timer = null; this.flush(); }, 100);
    }

    // Flushes are chained so chunks reach the store in record order; a refused flush keeps
    // its batch in wasm, reports it, and is retried a second later.
    flush() {
      this._calls = 0;
      if (this._timer !== null) { clearTimeout(this._timer); this._timer = null; }
      const attempt = this._chain.then(() => this._w.flush());
      this._chain = attempt.catch((err) => {
        status.lastError = String(err?.message ?? err);
        emit("error", err);
        if (err?.quota) emit("quota", err);
        if (!this._finished && this._timer === null) {
          this._timer = setTimeout(() => { this._timer = null; this.flush(); }, 1000);
        }
      });
      return this._chain;
    }

    async finish(opts = {}) {
      if (this._finished) return;
      this._finished = true;
      const exitCode = opts.exitCode ?? 0;
      await this.flush();
      await this._w.finish(exitCode);
      runs.delete(this);
      if (current === this) current = null;
      this._release?.();
      const mode = this._opts.mode ?? "auto";
      const creds = credentials(this._opts);
      if (mode !== "offline" && creds) {
        try {
          await sync();
        } catch (e) {
          if (mode === "online") throw e;
        }
      } else if (mode === "online") {
        throw new Error("tidelog: mode \"online\" needs a server and apiKey (or TIDELOG_BASE_URL / TIDELOG_API_KEY)");
      }
    }
  }

  function credentials(opts = current?._opts ?? lastOpts) {
    const server = opts.server ?? platform.config("server");
    const apiKey = opts.apiKey ?? platform.config("apiKey");
    return server && apiKey ? { server, apiKey } : null;
  }

  async function init(opts = {}) {
    opts ??= {};
    oneOf("mode", opts.mode, ["offline", "online", "auto"]);
    if (opts.server !== undefined) checkServer(opts.server);
    const store = await openStore(opts);
    const runOpts = {
      project: typeof opts.project === "string" ? opts.project : "", name: opts.name, entity: opts.entity, id: opts.id,
      config: opts.config ?? {}, tags: opts.tags ?? [], notes: opts.notes, resume: opts.resume,
      keepSynced: opts.keepSynced === true,
      // Kept with a new run (IndexedDB), so the Service Worker can sync it with no page open.
      ...((opts.mode ?? "auto") !== "offline" ? credentials(opts) : null),
    };
    // The core's rules (project, id, resume) and the config, checked before the module's
    // current run is ended: like wandb.init, a new run ends the current one.
    await store.openRun({ ...runOpts, checkOnly: true });
    if (current && !current._finished) await current.finish();
    lastOpts = opts;
    // A named run is locked before it is opened: opening a stored run reads its log and may
    // append to it (config), which must not race the tab that is writing it.
    const early = typeof opts.id === "string" ? await platform.hold(opts.id) : null;
    let w;
    try {
      w = await store.openRun(runOpts);
    } catch (e) {
      early?.();
      throw e;
    }
    const release = early ?? await platform.hold(w.id);
    const run = new Run(w, opts, release);
    runs.add(run);
    current = run;
    platform.startSystemMetrics?.(run, opts.systemIntervalMs ?? 10_000);
    if (platform.autoSync && (opts.mode ?? "auto") !== "offline") startLoop(opts);
    return run;
  }

  function need() {
    if (!current) throw new Error("tidelog: call tidelog.init() first");
    return current;
  }

  function startLoop(opts) {
    if (loop) return;
    const every = opts.syncIntervalMs ?? 3_000;
    loop = setInterval(() => attempt(false), every);
    platform.onOnline(() => { status.online = true; attempt(true); });
    platform.onOffline(() => { status.online = false; });
  }

  async function attempt(now) {
    status.online = platform.online();
    if (!status.online || status.syncing || !credentials()) return;
    if (!now && Date.now() < nextAttempt) return;
    try {
      await sync();
    } catch {
      // sync() already recorded the error and the backoff.
    }
  }

  function sync() {
    syncChain = syncChain.catch(() => {}).then(syncOnce);
    return syncChain;
  }

  async function syncOnce() {
    const creds = credentials();
    if (!creds) throw new Error("tidelog.sync: no server/apiKey (pass them to init, or set TIDELOG_BASE_URL and TIDELOG_API_KEY)");
    checkServer(creds.server, "tidelog.sync: the server");
    const store = await openStore(current?._opts ?? lastOpts);
    status.syncing = true;
    emit("sync", { phase: "start" });
    try {
      await Promise.all([...runs].map((r) => r.flush()));
      const live = [...runs].map((r) => r.id).concat(await platform.liveElsewhere());
      const reports = await store.syncAll(creds.server, creds.apiKey, live);
      for (const r of reports) if (!r.error) acked.set(r.id, r.acked_records);
      const failed = reports.filter((r) => r.error);
      status.unsyncedRuns = failed.map((r) => r.id);
      status.lastSync = Date.now();
      if (failed.length) {
        status.lastError = failed.map((r) => `${r.id}: ${r.error}`).join("; ");
        failures++;
        // A server that said Retry-After (429/503) is not asked again sooner.
        const retryInMs = wasm.syncDelayMs(failures, Math.max(0, ...failed.map((r) => r.retry_after_ms ?? 0)));
        nextAttempt = Date.now() + retryInMs;
        emit("sync", { phase: "error", reports, retryInMs });
        throw new Error(`tidelog.sync: ${status.lastError}`);
      }
      status.lastError = null;
      failures = 0;
      nextAttempt = 0;
      emit("sync", { phase: "done", reports });
      return reports;
    } catch (e) {
      if (!status.lastError) status.lastError = String(e?.message ?? e);
      if (!failures) { failures = 1; nextAttempt = Date.now() + wasm.syncDelayMs(failures, 0); }
      throw e;
    } finally {
      status.syncing = false;
    }
  }

  function pending() {
    const run = current;
    const buffered = run ? run._w.buffered : 0;
    const records = run ? run._w.records : 0;
    return {
      run: run?.id ?? null,
      buffered,
      unsynced: run ? Math.max(0, records - (acked.get(run.id) ?? 0)) : 0,
      syncing: status.syncing,
      online: platform.online(),
      lastError: status.lastError,
      lastSync: status.lastSync,
      nextAttemptInMs: Math.max(0, nextAttempt - Date.now()),
    };
  }

  // `final`: the page or process is going away for good (not a hidden tab, not bfcache), so
  // an open row is committed rather than left for a step that never comes.
  platform.onHide((final) => {
    for (const r of runs) {
      if (final && !r._finished) r._w.commitOpenRow();
      platform.storeNow?.(r._w);
      r.flush();
    }
  });

  const media = createMedia(wasm);
  return {
    init,
    log: (data, opts) => need().log(data, opts),
    // A second finish() (or one with no run) has nothing left to do, as in wandb.
    finish: async (opts) => current?.finish(opts),
    save: (name, bytes) => need().save(name, bytes),
    sync,
    pending,
    on,
    ...media,
  };
}

function toBytes(bytes, what) {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (typeof bytes === "string") return new TextEncoder().encode(bytes);
  throw new TypeError(`${what}: expected bytes (Uint8Array, ArrayBuffer or string)`);
}

function oneOf(name, value, allowed) {
  if (value !== undefined && !allowed.includes(value)) {
    throw new TypeError(`tidelog.init: ${name} must be ${allowed.map((a) => `"${a}"`).join(", ")} (got ${JSON.stringify(value)})`);
  }
}

// The server URL is checked up front: a relative one would send the API key to whatever
// serves the page.
function checkServer(server, what = "tidelog.init: server") {
  let url = null;
  try { url = new URL(server); } catch { /* reported below */ }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new TypeError(`${what} must be an http:// or https:// URL (got ${JSON.stringify(server)})`);
  }
}

const MEDIA = Symbol("tidelog.media");

function toLoggable(key, v, run) {
  if (v !== null && typeof v === "object" && v[MEDIA]) return v[MEDIA](key, run);
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "object":
      if (v === null) throw new TypeError(`tidelog.log: value of key "${key}" is null`);
      return v;
    default:
      throw new TypeError(`tidelog.log: value of key "${key}" is a ${typeof v}, which cannot be logged`);
  }
}

function createMedia(wasm) {
  function fileMedia(kind, bytes, ext, meta) {
    return {
      [MEDIA](key, run) {
        const step = run._w.step;
        const safe = key.replace(/[^A-Za-z0-9_.-]/g, "_");
        const file = run._w.save(`media/${kind}/${safe}_${step}.${ext}`, bytes);
        return { _type: `${kind.replace(/s$/, "")}-file`, path: file.path, sha256: file.sha256, size: file.size, ...meta };
      },
    };
  }

  function Image(source, opts = {}) {
    let png;
    let width;
    let height;
    if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
      png = toBytes(source, "tidelog.Image");
      ({ width, height } = wasm.pngSize(png));
    } else if (source && typeof source.getContext === "function") {
      const ctx = source.getContext("2d");
      const data = ctx.getImageData(0, 0, source.width, source.height);
      ({ width, height } = data);
      png = wasm.encodePng(new Uint8Array(data.data.buffer), width, height);
    } else if (source && source.data && source.width && source.height) {
      ({ width, height } = source);
      png = wasm.encodePng(toBytes(source.data, "tidelog.Image"), width, height);
    } else {
      throw new TypeError("tidelog.Image: expected a canvas, an ImageData ({data, width, height}) or PNG bytes");
    }
    return fileMedia("images", png, "png", { width, height, caption: opts.caption ?? null });
  }

  function Audio(samples, opts = {}) {
    const rate = opts.sampleRate ?? 44_100;
    const data = samples instanceof Float32Array ? samples : Float32Array.from(samples);
    const wav = wasm.encodeWav(data, rate);
    return fileMedia("audio", wav, "wav", { sample_rate: rate, duration: data.length / rate, caption: opts.caption ?? null });
  }

  function Histogram(values, opts = {}) {
    const h = wasm.histogram(Float64Array.from(values), opts.bins ?? 64);
    return { [MEDIA]: () => ({ _type: "histogram", ...h }) };
  }

  function Table(opts) {
    const columns = opts?.columns;
    const data = opts?.data;
    if (!Array.isArray(columns) || !Array.isArray(data) || data.some((row) => !Array.isArray(row) || row.length !== columns.length)) {
      throw new TypeError("tidelog.Table: expected { columns: [...], data: [[...], ...] } with one value per column");
    }
    return { [MEDIA]: () => ({ _type: "table", columns, data }) };
  }

  function Plot(spec, data) {
    if (!spec || typeof spec !== "object") throw new TypeError("tidelog.Plot: expected a Vega-Lite spec object");
    return { [MEDIA]: () => ({ _type: "plot", spec, data: data ?? null }) };
  }

  // wandb.plot.line / scatter / bar: rows of objects (or a Table) charted as field x against
  // field y, as a Vega-Lite spec the dashboard draws.
  function chart(mark) {
    return (rows, x, y, opts = {}) => {
      const name = `tidelog.Plot.${mark === "point" ? "scatter" : mark}`;
      const media = typeof rows?.[MEDIA] === "function" ? rows[MEDIA]() : null;
      if (media?._type === "table") rows = media;
      if (rows && Array.isArray(rows.columns) && Array.isArray(rows.data)) {
        rows = rows.data.map((r) => Object.fromEntries(rows.columns.map((c, i) => [c, r[i]])));
      }
      if (!Array.isArray(rows)) throw new TypeError(`${name}: expected an array of rows or a Table`);
      if (typeof x !== "string" || typeof y !== "string") throw new TypeError(`${name}: expected the x and y field names`);
      const encoding = { x: { field: x, type: mark === "bar" ? "nominal" : "quantitative" }, y: { field: y, type: "quantitative" } };
      if (opts.color) encoding.color = { field: opts.color, type: "nominal" };
      const spec = { mark, encoding };
      if (opts.title) spec.title = opts.title;
      return Plot(spec, { values: rows });
    };
  }
  Plot.line = chart("line");
  Plot.scatter = chart("point");
  Plot.bar = chart("bar");

  return { Image, Audio, Histogram, Table, Plot };
}

// registerServiceWorker outside a browser: the same import works everywhere, and says why
// there is nothing to register.
export async function noServiceWorker() {
  throw new Error("tidelog.registerServiceWorker: Service Workers exist only in browsers (use the browser entry)");
}
