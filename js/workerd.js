// Cloudflare Workers (workerd) entry of the tidelog npm package: workerd compiles no wasm from
// bytes or URLs, so the module is imported as one (wrangler and workerd both do that for a
// `.wasm` import). Runs are kept in memory and synced at finish(): in a Worker,
// `ctx.waitUntil(tidelog.finish())`.
import module from "./web/tidelog_wasm_bg.wasm";
import * as wasm from "./web/tidelog_wasm.js";
import { createTidelog } from "./core.js";
import { sayWhatIsDropped } from "./memory-only.js";

const exports = wasm.initSync({ module });
const warn = (msg) => console.warn(String(msg));

const platform = {
  openStore: () => wasm.Store.memory(),
  config: (name) => globalThis.tidelogConfig?.[name],
  online: () => true,
  autoSync: false,
  onOnline: () => {},
  onOffline: () => {},
  onHide: () => {},
  warn,
  hold: async () => () => {},
  liveElsewhere: async () => [],
};

export const { init, log, finish, save, sync, pending, on, Image, Audio, Histogram, Table, Plot } =
  sayWhatIsDropped(createTidelog(wasm, exports.memory, platform), () => true, warn);
export { noServiceWorker as registerServiceWorker } from "./core.js";
