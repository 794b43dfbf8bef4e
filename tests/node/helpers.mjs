// Shared helpers for the Node tests: a real `tidelog serve` on 127.0.0.1 and the CLI.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const BIN = join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug/tidelog");

export function tempDir(prefix = "tidelog-node-") {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startServer(extra = []) {
  const data = tempDir("tidelog-server-");
  const key = execFileSync(BIN, ["admin", "create-key", "--account", "node", "--data", data]).toString().trim();
  const child = spawn(BIN, ["serve", "--addr", "127.0.0.1:0", "--data", data, ...extra], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once("line", (line) => resolve(line.replace("tidelog server listening on ", "").trim()));
    child.once("exit", (code) => reject(new Error(`tidelog serve exited ${code}`)));
  });
  return { url, key, data, stop: () => child.kill() };
}

export async function api(server, path) {
  const res = await fetch(`${server.url}${path}`, { headers: { Authorization: `Bearer ${server.key}` } });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Holds the only ingest slot of a server started with `--max-ingests 1`: a POST whose body
 * is announced and never sent. Resolves once the server asked for the body; destroy it to
 * free the slot. */
export async function holdIngestSlot(server) {
  const held = connect(Number(new URL(server.url).port), "127.0.0.1");
  const continued = new Promise((resolve) => held.once("data", (d) => resolve(String(d))));
  held.write(`POST /api/v1/bundles HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.key}\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n`);
  const answer = await continued;
  if (!/^HTTP\/1\.1 100 Continue/.test(answer)) throw new Error(`the server did not ask for the body: ${answer}`);
  return held;
}
