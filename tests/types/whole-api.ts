// Every part of the tidelog API, as a TypeScript user writes it: `tsc --noEmit` with `strict`
// on must accept it (tsconfig.json: with the DOM library; tsconfig.nodom.json: without it, as
// in a Node, Deno or Worker project, where canvas types do not exist).
import * as tidelog from "tidelog";
import type { FileRef, InitOptions, Pending, Run, SyncEvent, SyncReport } from "tidelog";

export async function wholeApi(png: Uint8Array): Promise<SyncReport[]> {
  const opts: InitOptions = {
    project: "mnist-demo",
    name: "baseline",
    entity: "team",
    config: { lr: 1e-3, layers: [64, 64], optimizer: { name: "adam" } },
    tags: ["typescript"],
    notes: "whole API",
    id: "abcd1234",
    mode: "auto",
    server: "http://127.0.0.1:8080",
    apiKey: "tlk_example",
    resume: "allow",
    storage: "memory",
    dir: ".",
    systemIntervalMs: 0,
    syncIntervalMs: 3000,
  };
  const run: Run = await tidelog.init(opts);
  const id: string = run.id;
  const kept: boolean = tidelog.log({ loss: 0.3, acc: 0.91, nan: NaN, ok: true, phase: "train" });
  tidelog.log({ lr: 1e-3 }, { commit: false });
  tidelog.log({ val_loss: 0.2, nested: { a: 1, b: [1, 2] }, weights: [0.1, 0.2] }, { step: 10 });
  run.log({ direct: 1 }, { step: 11, commit: true });
  const step: number = run.step;
  run.config.update({ batch: 64 });
  run.summary.set("best_acc", 0.93);
  const file: FileRef = run.save("model.onnx", new Uint8Array([1, 2, 3]));
  const other: FileRef = tidelog.save("notes.txt", "text");
  tidelog.save("raw.bin", new ArrayBuffer(4));
  const rows = [{ epoch: 1, loss: 0.5, split: "train" }, { epoch: 2, loss: 0.4, split: "val" }];
  const table = tidelog.Table({ columns: ["epoch", "loss"], data: [[1, 0.5], [2, 0.4]] });
  tidelog.log({
    image: tidelog.Image(png, { caption: "input" }),
    pixels: tidelog.Image({ data: new Uint8ClampedArray(4), width: 1, height: 1 }),
    pixelsBytes: tidelog.Image(new Uint8Array(4).buffer),
    audio: tidelog.Audio(new Float32Array(441), { sampleRate: 44_100, caption: "tone" }),
    audioArray: tidelog.Audio([0, 0.5, -0.5]),
    hist: tidelog.Histogram([1, 2, 2, 3], { bins: 8 }),
    table,
    spec: tidelog.Plot({ mark: "line" }, { values: rows }),
    line: tidelog.Plot.line(rows, "epoch", "loss", { title: "loss", color: "split" }),
    scatter: tidelog.Plot.scatter({ columns: ["epoch", "loss"], data: [[1, 0.5], [2, 0.4]] }, "epoch", "loss"),
    bar: tidelog.Plot.bar(rows, "split", "loss"),
  });
  const off = tidelog.on("sync", (e: SyncEvent) => {
    if (e.phase === "done" || e.phase === "error") console.log(e.reports.length);
  });
  tidelog.on("error", (e: unknown) => console.log(e));
  tidelog.on("quota", (e: unknown) => console.log(e));
  off();
  const p: Pending = tidelog.pending();
  const waiting: number = p.unsynced + p.buffered + p.nextAttemptInMs;
  const reports = await tidelog.sync();
  for (const r of reports) {
    const left: number = r.total_records - r.acked_records;
    console.log(r.id, r.state, left, r.error ?? "", r.retry_after_ms ?? 0, r.skipped_files ?? []);
  }
  await run.flush();
  await tidelog.finish({ exitCode: 0 });
  await run.finish();
  console.log(id, kept, step, file.sha256, other.size, waiting);
  return reports;
}
