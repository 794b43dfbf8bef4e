// Deno entry of the tidelog npm package: the Node entry's on-disk store (Deno has `node:fs`)
// where Deno may read and write ./tidelog/; without that permission (`deno run` without
// --allow-write, Deno Deploy's read-only file system) runs are kept in memory, with one
// warning, and synced at finish().
import * as path from "node:path";
import source module from "./web/tidelog_wasm_bg.wasm";
import * as wasm from "./web/tidelog_wasm.js";
import { createTidelog } from "./core.js";
import { fsPlatform, host } from "./fs-host.js";
import { sayWhatIsDropped } from "./memory-only.js";

const exports = wasm.initSync({ module });
const warn = (msg) => console.warn(String(msg));
const granted = (desc) => Deno.permissions.querySync(desc).state === "granted";
// What Deno refuses: a permission not granted, or a file system that cannot be written.
const refused = (e) =>
  e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied ||
  /Requires \w+ access|NotCapable|PermissionDenied|EROFS|EACCES|EPERM|read-only file system/i.test(String(e?.message ?? e));

const memoryRoots = new Set();
let warned = false;
function fallBack(root, why) {
  memoryRoots.add(root);
  if (!warned) warn(`tidelog: runs are kept in memory and synced at finish(): ${why} (deno run --allow-read --allow-write=${root} --allow-sys=hostname keeps them on disk)`);
  warned = true;
  return wasm.Store.memory();
}

// The folder store where Deno grants what it needs (read and write the folder; the host name,
// which the run's lock records); memory otherwise, and memory too if opening a run there is
// refused after all (a read-only file system grants writes).
function folder(root) {
  const missing = [
    [`read ${root}`, { name: "read", path: root }],
    [`write ${root}`, { name: "write", path: root }],
    ["read the host name", { name: "sys", kind: "hostname" }],
  ].filter(([, desc]) => !granted(desc)).map(([what]) => what);
  if (missing.length) return fallBack(root, `Deno does not permit it to ${missing.join(" or ")}`);
  let store = wasm.Store.folder(host, root);
  return {
    async openRun(opts) {
      try {
        return await store.openRun(opts);
      } catch (e) {
        if (!refused(e) || memoryRoots.has(root)) throw e;
        store = fallBack(root, `could not write ${root}: ${e?.message ?? e}`);
        return store.openRun(opts);
      }
    },
    syncAll: (...args) => store.syncAll(...args),
  };
}

const env = (name) => (granted({ name: "env", variable: name }) ? Deno.env.get(name) : undefined);
const platform = fsPlatform(wasm, { folder, env, systemMetrics: granted({ name: "sys" }) });

export const { init, log, finish, save, sync, pending, on, Image, Audio, Histogram, Table, Plot } =
  sayWhatIsDropped(
    createTidelog(wasm, exports.memory, platform),
    (opts) => opts.storage === "memory" || memoryRoots.has(path.resolve(opts.dir ?? env("TIDELOG_DIR") ?? ".", "tidelog")),
    warn,
  );
export { noServiceWorker as registerServiceWorker } from "./core.js";
