// init's resume rules are the core's in every home: from Node, in a folder and in memory, a
// run continued under another project is refused with the same words as natively
// (tests/init_resume.rs), and nothing is written.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import * as tidelog from "../../pkg/node.js";
import { tempDir } from "./helpers.mjs";

const REFUSED = 'tidelog.init: run resume01 belongs to project "res", not "other": resume it under its own project, or start a new id';

function snapshot(dir) {
  const out = [];
  for (const name of readdirSync(dir, { recursive: true }).sort()) {
    const p = join(dir, name);
    if (statSync(p).isFile()) out.push([name, readFileSync(p).toString("base64")]);
  }
  return out;
}

for (const storage of ["default", "memory"]) {
  test(`a run is never resumed under another project (${storage})`, async () => {
    const dir = tempDir();
    const base = { dir, storage, id: "resume01", mode: "offline", systemIntervalMs: 0 };
    await tidelog.init({ ...base, project: "res" });
    tidelog.log({ a: 1 });
    await tidelog.finish();
    const before = snapshot(dir);
    for (const resume of ["allow", "must"]) {
      await assert.rejects(tidelog.init({ ...base, project: "other", resume }), (e) => {
        assert.equal(e.message, REFUSED);
        return true;
      });
    }
    assert.deepEqual(snapshot(dir), before, "nothing written, cut or locked");
    const again = await tidelog.init({ ...base, project: "res", resume: "must" });
    assert.equal(again.step, 1);
    await tidelog.finish();
  });
}
