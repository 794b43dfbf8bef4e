// Shared helpers for the Node tests: a real `tidelog serve` on 127.0.0.1 and the CLI.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
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
