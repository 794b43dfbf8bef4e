// Node entry of the tidelog npm package: the same wasm core, storing runs in the on-disk
// layout under ./tidelog/ (so the native `tidelog sync` can upload them too). Bun loads it too.
import * as fs from "node:fs";
import * as wasm from "./web/tidelog_wasm.js";
import { createTidelog } from "./core.js";
import { fsPlatform } from "./fs-host.js";

const exports = wasm.initSync({ module: fs.readFileSync(new URL("./web/tidelog_wasm_bg.wasm", import.meta.url)) });

export const { init, log, finish, save, sync, pending, on, Image, Audio, Histogram, Table, Plot } =
  createTidelog(wasm, exports.memory, fsPlatform(wasm));
export { noServiceWorker as registerServiceWorker } from "./core.js";
