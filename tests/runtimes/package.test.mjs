// The published package (what `npm pack` ships from pkg/) holds one wasm module, and every
// entry its export conditions name loads that same file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, normalize } from "node:path";
import { PKG, reach, run } from "./project.mjs";

test("the package ships one wasm module and every entry loads it", async () => {
  const out = await run("npm", ["pack", "--dry-run", "--json"], { cwd: PKG });
  assert.equal(out.code, 0, out.stderr);
  const [{ files }] = JSON.parse(out.stdout);
  const wasm = files.map((f) => f.path).filter((p) => p.endsWith(".wasm"));
  assert.deepEqual(wasm, ["web/tidelog_wasm_bg.wasm"]);
  const exp = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8")).exports["."];
  const shipped = new Set(files.map((f) => f.path));
  for (const [condition, entry] of Object.entries(exp)) {
    if (condition === "types") continue;
    const reached = reach(PKG, normalize(entry));
    for (const f of reached) assert.ok(shipped.has(f), `${condition}: ${entry} imports ${f}, which the package does not ship`);
    assert.ok(reached.has("web/tidelog_wasm_bg.wasm"), `${condition}: ${entry} does not load the wasm`);
  }
});
