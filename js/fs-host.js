// The on-disk half of the Node, Bun and Deno entries: the `fs` adapter the wasm folder store
// calls (over `node:fs`, which all three provide) and the platform object around it.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";

const missing = (e) => e?.code === "ENOENT";

// Which of the three runtimes this is, for files/metadata.json.
function runtime() {
  if (globalThis.Deno) return `deno ${globalThis.Deno.version.deno}`;
  if (process.versions.bun) return `bun ${process.versions.bun}`;
  return `node ${process.version}`;
}

// Temporary names unique to this process and call: two writers never share one.
let tmpCount = 0;
const tmpName = (p) => `${p}.${process.pid}.${tmpCount++}.tmp~`;
const ownerText = (lock) => {
  try {
    const o = JSON.parse(lock);
    return `process ${o.pid} on host ${o.host}`;
  } catch {
    return "another process";
  }
};

// readAt's buffer, grown to the largest window asked for.
let scratch = Buffer.alloc(0);

// The `fs` adapter the wasm folder store calls; every method is synchronous.
export const host = {
  read(p) {
    try { return fs.readFileSync(p); } catch (e) { if (missing(e)) return null; throw e; }
  },
  // Up to `max` bytes of a file from byte `offset` (fewer at its end), null when it does not
  // exist: a sync or a resume reads the log in windows, never the whole file. The bytes come
  // back in one buffer reused from call to call (the wasm side copies them at once), so a long
  // log read window by window leaves no garbage behind.
  readAt(p, offset, max) {
    let fd;
    try { fd = fs.openSync(p, "r"); } catch (e) { if (missing(e)) return null; throw e; }
    try {
      const want = Math.max(0, Math.min(max, fs.fstatSync(fd).size - offset));
      if (scratch.length < want) scratch = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const n = fs.readSync(fd, scratch, got, want - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return scratch.subarray(0, got);
    } finally {
      fs.closeSync(fd);
    }
  },
  writeAtomic(p, data) {
    const tmp = tmpName(p);
    const fd = fs.openSync(tmp, "wx");
    try {
      try { fs.writeSync(fd, data); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
      fs.renameSync(tmp, p);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
  },
  append(p, data) { fs.appendFileSync(p, data); },
  remove(p) { fs.rmSync(p, { force: true }); },
  rename(from, to) { fs.renameSync(from, to); },
  mkdirp(p) { fs.mkdirSync(p, { recursive: true }); },
  list(p) {
    try { return fs.readdirSync(p); } catch (e) { if (missing(e)) return []; throw e; }
  },
  size(p) {
    try { return fs.statSync(p).size; } catch (e) { if (missing(e)) return -1; throw e; }
  },
  truncate(p, len) { fs.truncateSync(p, len); },
  // The run's .lock while this process writes it (core::layout::LockOwner).
  owner() {
    return JSON.stringify({ pid: process.pid, host: os.hostname() });
  },
  // Takes a run's .lock for this process, atomically: a complete file under a unique name is
  // hard-linked into place (exclusive like O_EXCL, and never seen empty by another taker), or
  // taken over from a process that no longer runs (moved aside under a unique name first, so
  // of two takers only one wins); a live holder's lock is refused naming its pid and host.
  lock(p) {
    const mine = host.owner();
    for (let attempt = 0; attempt < 8; attempt++) {
      const fresh = tmpName(p);
      fs.writeFileSync(fresh, mine, { flag: "wx" });
      try { fs.linkSync(fresh, p); return; } catch (e) { if (e.code !== "EEXIST") throw e; } finally { fs.rmSync(fresh, { force: true }); }
      const held = host.read(p)?.toString();
      if (held === undefined) continue;
      if (held === mine) return;
      if (host.ownerAlive(held)) throw new Error(`the run is being written by ${ownerText(held)}`);
      const aside = tmpName(p);
      try { fs.renameSync(p, aside); } catch (e) { if (missing(e)) continue; throw e; }
      const moved = fs.readFileSync(aside, "utf8");
      if (moved !== held && host.ownerAlive(moved)) {
        // A live taker's fresh lock was moved: put it back (link fails if one exists) and yield.
        try { fs.linkSync(aside, p); } catch { /* a newer lock is in place */ }
        fs.rmSync(aside, { force: true });
        throw new Error(`the run is being written by ${ownerText(moved)}`);
      }
      fs.rmSync(aside, { force: true });
    }
    throw new Error(`could not take ${p}: it keeps changing`);
  },
  // Whether the process a run's .lock names (owner() of some process) still runs on this
  // machine; signal 0 only checks.
  ownerAlive(lock) {
    let owner;
    try { owner = JSON.parse(lock); } catch { return false; }
    if (owner?.host !== os.hostname() || !Number.isInteger(owner.pid)) return false;
    try { process.kill(owner.pid, 0); return true; } catch (e) { return e.code === "EPERM"; }
  },
  // What files/metadata.json says about the process, as the native build writes it.
  metadata(id, started, version) {
    return JSON.stringify({
      id, started, program: process.argv[1] ?? null, args: process.argv.slice(2), cwd: process.cwd(), host: os.hostname(),
      os: process.platform, arch: process.arch, runtime: runtime(), tidelog: version,
    }, null, 2);
  },
};

// The platform for createTidelog(); a runtime that grants less than Node (Deno's permissions)
// passes how it opens a folder, reads the environment and whether it may sample the system.
export function fsPlatform(wasm, {
  folder = (root) => wasm.Store.folder(host, root),
  env = (name) => process.env[name],
  systemMetrics = true,
} = {}) {
  return {
    openStore: (opts) =>
      opts.storage === "memory"
        ? wasm.Store.memory()
        : folder(path.resolve(opts.dir ?? env("TIDELOG_DIR") ?? ".", "tidelog")),
    config: (name) => ({ server: env("TIDELOG_BASE_URL"), apiKey: env("TIDELOG_API_KEY") })[name] || undefined,
    online: () => true,
    autoSync: false,
    onOnline: () => {},
    onOffline: () => {},
    onHide: (cb) => process.once("beforeExit", () => cb(true)),
    warn: (msg) => console.warn(String(msg)),
    hold: async () => () => {},
    liveElsewhere: async () => [],
    startSystemMetrics(run, every) {
      if (!every || !systemMetrics) return;
      let last = process.cpuUsage();
      let lastAt = Date.now();
      const sample = () => {
        if (run._finished) return;
        const cpu = process.cpuUsage(last);
        const elapsed = Math.max(1, Date.now() - lastAt) * 1000;
        last = process.cpuUsage();
        lastAt = Date.now();
        const mem = process.memoryUsage();
        const row = {
          "cpu.count": os.cpus().length,
          "proc.cpu.percent": ((cpu.user + cpu.system) / elapsed) * 100,
          "memory.used_bytes": os.totalmem() - os.freemem(),
          "memory.total_bytes": os.totalmem(),
          "proc.memory.rss_bytes": mem.rss,
          "js.heap.used_bytes": mem.heapUsed,
          "js.heap.total_bytes": mem.heapTotal,
        };
        run._logSystem(row);
      };
      sample();
      const timer = setInterval(sample, every);
      timer.unref();
      const finish = run.finish.bind(run);
      run.finish = async (opts) => { clearInterval(timer); return finish(opts); };
    },
  };
}
