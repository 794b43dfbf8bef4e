// The one global whole-api.ts uses that the ES library lacks (Node, Deno and Workers all have it).
declare const console: { log(...args: unknown[]): void };
