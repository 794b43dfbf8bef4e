// Serves the demos on 127.0.0.1: www/, the built pkg/, tfjs and onnxruntime-web from node_modules (no CDN).
// `node www/serve.mjs [port]` after ./scripts/build-pkg and npm install.
import { createServer } from "node:http";
import { readFileSync, statSync } from "node:fs";
import { extname, join, normalize } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;
const ALLOWED = ["www/", "pkg/", "node_modules/@tensorflow/", "node_modules/onnxruntime-web/"].map((p) => join(ROOT, p));
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".map": "application/json" };

const server = createServer((req, res) => {
  let path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  if (path === "/") path = "/www/index.html";
  const file = normalize(join(ROOT, path));
  if (!ALLOWED.some((a) => file.startsWith(a)) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
    res.writeHead(404).end("not found");
    return;
  }
  res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
  res.end(readFileSync(file));
});
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`tidelog demo on http://127.0.0.1:${server.address().port}/`);
});
