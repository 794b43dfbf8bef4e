// Node keeps resume points as the native writer does (docs/ON-DISK.md): `.resume` every
// 16 MiB of log while the run is live, `run.spec`'s `resume` once it has ended, so a resume
// replays only the log after the point; a resume continues from it and leaves a newer one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as tidelog from "../../pkg/node.js";
import { tempDir } from "./helpers.mjs";

const row = (i) => ({ a: i, b: i * 2, c: i / 3, d: 1, e: 2, f: 3, g: 4, h: 5, k: 6, m: Math.sin(i) });
// Floats the wasm build's JSON reader reads a ulp off (0.9092974268256816, 0.09090909090909093):
// a point whose checksum covered them as logged failed its check there.
const ODD = { m: Math.sin(2), c: 1 / 11 };

test("a Node run leaves resume points and a resume continues from its end", async () => {
  const dir = tempDir();
  const base = { dir, id: "points01", project: "pts", mode: "offline", systemIntervalMs: 0 };
  const run = await tidelog.init(base);
  const root = join(dir, "tidelog");
  const folder = join(root, readdirSync(root).find((n) => n.endsWith("points01")));
  const log = join(folder, "records.tlog");
  const size = () => statSync(log).size;
  let steps = 0;
  while (size() < 17 << 20) {
    for (let k = 0; k < 10_000; k++) tidelog.log(row(steps++));
    await run.flush();
  }
  run.log({ ...row(steps++), ...ODD });
  await run.flush();
  const live = JSON.parse(readFileSync(join(folder, ".resume"), "utf8"));
  assert.ok(live.offset >= 16 << 20 && live.offset <= size(), `live point at ${live.offset} of ${size()}`);
  assert.ok(live.step > 0 && live.step <= steps, `live point at step ${live.step} of ${steps}`);
  assert.equal(live.values.a, live.step - 1, "the last value of a at the point's step");
  assert.equal(live.run.id, "points01");

  await tidelog.finish();
  assert.equal(existsSync(join(folder, ".resume")), false, "an ended run keeps its point in run.spec");
  const ended = JSON.parse(readFileSync(join(folder, "run.spec"), "utf8")).resume;
  assert.equal(ended.offset, size(), "the ended run's point covers the whole log");
  assert.equal(ended.step, steps);
  assert.equal(ended.values.a, steps - 1);
  assert.ok(Math.abs(ended.values.m - ODD.m) < 1e-15 && Math.abs(ended.values.c - ODD.c) < 1e-16, JSON.stringify(ended.values));

  // The resume takes the point and reads none of the log before it: damage there (a bit
  // flipped 8 MiB in, which a replay would refuse as corruption) goes unseen, as documented.
  const bytes = readFileSync(log);
  bytes[8 << 20] ^= 0x10;
  writeFileSync(log, bytes);
  const again = await tidelog.init({ ...base, resume: "must" });
  assert.equal(again.step, steps);
  tidelog.log(row(steps));
  await tidelog.finish();
  const next = JSON.parse(readFileSync(join(folder, "run.spec"), "utf8")).resume;
  assert.equal(next.offset, size());
  assert.equal(next.step, steps + 1);
  assert.equal(next.values.a, steps);
  assert.ok(next.records > ended.records);
});
