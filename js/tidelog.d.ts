// Types of the tidelog npm package (every entry: browser, Node, Deno, Bun, workerd shares them).
// No DOM types are named, so a Node, Deno or Worker project without the DOM library checks too.

export type Scalar = number | boolean | string;
export type Loggable = Scalar | number[] | { [key: string]: unknown } | Media;

/** A media value built by Image, Audio, Histogram, Table or Plot. */
export interface Media { readonly __tidelogMedia?: never }

export interface InitOptions {
  /** Required: the project the run is filed under. */
  project: string;
  name?: string;
  entity?: string;
  config?: Record<string, unknown>;
  tags?: string[];
  notes?: string;
  /** Default: a fresh 8-character [a-z0-9] id. */
  id?: string;
  /** Default "auto": buffer always, sync when online. */
  mode?: "offline" | "online" | "auto";
  /** Default: TIDELOG_BASE_URL (Node) or globalThis.tidelogConfig.server (browser). */
  server?: string;
  /** Default: TIDELOG_API_KEY (Node) or globalThis.tidelogConfig.apiKey (browser). */
  apiKey?: string;
  /** Continue a run id that already exists locally. Default "allow". */
  resume?: "allow" | "must" | "never";
  /**
   * Browser: keep the run's chunks in IndexedDB after it has ended and the server acknowledged
   * them. Default false: they are deleted, so IndexedDB holds what is unsynced, not history
   * (the run can still be resumed; `logBytes` of it then returns only what is kept).
   */
  keepSynced?: boolean;
  /** "memory" for runtimes without storage; default IndexedDB (browser) or ./tidelog/ (Node). */
  storage?: "default" | "memory";
  /** Node: folder that holds tidelog/ (default TIDELOG_DIR or the current directory). */
  dir?: string;
  /** System-metric sampling; 0 disables. Default 10000. */
  systemIntervalMs?: number;
  /** Browser: how often pending records are offered to the server while online. Default 3000. */
  syncIntervalMs?: number;
}

export interface LogOptions {
  /** Log at this step; a step lower than the current one is dropped with a warning. */
  step?: number;
  /** false joins the current step; default true without step, false with it. */
  commit?: boolean;
}

export interface FileRef { path: string; sha256: string; size: number }

export interface Run {
  readonly id: string;
  readonly step: number;
  log(data: Record<string, Loggable>, opts?: LogOptions): boolean;
  config: { update(values: Record<string, unknown>): void };
  summary: { set(key: string, value: Loggable): void };
  save(name: string, bytes: Uint8Array | ArrayBuffer | string): FileRef;
  flush(): Promise<void>;
  finish(opts?: { exitCode?: number }): Promise<void>;
}

export interface SyncReport {
  id: string;
  state: "running" | "finished" | "failed" | "crashed" | "";
  rows_added: number;
  duplicates_skipped: number;
  acked_records: number;
  total_records: number;
  bytes_sent: number;
  error?: string;
  /** How long the server asked to wait (429/503 Retry-After) before the next attempt. */
  retry_after_ms?: number | null;
  /** Saved files the server refused (too large), each with the reason. */
  skipped_files?: string[];
}

/** What `on("sync", cb)` passes: a sync starting, done, or failed (with each run's report). */
export type SyncEvent =
  | { phase: "start" }
  | { phase: "done"; reports: SyncReport[] }
  | {
      phase: "error";
      reports: SyncReport[];
      /** Milliseconds until the next automatic try: the core's backoff, at least the server's Retry-After. */
      retryInMs: number;
    };

export interface Pending {
  run: string | null;
  /** Records logged but not yet in IndexedDB / on disk. */
  buffered: number;
  /** Records of the current run the server has not acknowledged. */
  unsynced: number;
  syncing: boolean;
  online: boolean;
  lastError: string | null;
  lastSync: number | null;
  nextAttemptInMs: number;
}

export function init(opts: InitOptions): Promise<Run>;
export function log(data: Record<string, Loggable>, opts?: LogOptions): boolean;
export function finish(opts?: { exitCode?: number }): Promise<void>;
export function save(name: string, bytes: Uint8Array | ArrayBuffer | string): FileRef;
export function sync(): Promise<SyncReport[]>;
export function pending(): Pending;
/** Subscribes to sync progress; returns the function that unsubscribes. */
export function on(event: "sync", cb: (detail: SyncEvent) => void): () => void;
/** A store or sync failure (`quota`: the storage quota ran out); the error as thrown. */
export function on(event: "error" | "quota", cb: (error: unknown) => void): () => void;

/** Pixels as ImageData has them: 8-bit RGBA, row by row. */
export interface Pixels { data: Uint8Array | Uint8ClampedArray; width: number; height: number }
/** A canvas (HTMLCanvasElement, OffscreenCanvas) whose 2D context gives its pixels. */
export interface CanvasLike {
  width: number;
  height: number;
  getContext(contextId: "2d"): { getImageData(sx: number, sy: number, sw: number, sh: number): Pixels } | null;
}

export function Image(source: CanvasLike | Pixels | Uint8Array | ArrayBuffer, opts?: { caption?: string }): Media;
export function Audio(samples: Float32Array | ArrayLike<number>, opts?: { sampleRate?: number; caption?: string }): Media;
export function Histogram(values: ArrayLike<number>, opts?: { bins?: number }): Media;
export function Table(opts: { columns: string[]; data: unknown[][] }): Media;
export function Plot(spec: Record<string, unknown>, data?: unknown): Media;
/** Charts like `wandb.plot.line` / `scatter` / `bar`: field `x` against field `y` of `rows`. */
export namespace Plot {
  type Rows = Record<string, unknown>[] | { columns: string[]; data: unknown[][] };
  interface ChartOptions { title?: string; color?: string }
  function line(rows: Rows, x: string, y: string, opts?: ChartOptions): Media;
  function scatter(rows: Rows, x: string, y: string, opts?: ChartOptions): Media;
  function bar(rows: Rows, x: string, y: string, opts?: ChartOptions): Media;
}
/**
 * Browser entry only: registers the package's Service Worker (`sw.js` in the package, or
 * `scriptURL`: a module script served elsewhere, e.g. one that imports the package's `sw.js`),
 * which uploads pending runs with no page open (Background Sync tag `tidelog-sync`, and at
 * each start); resolves once the worker is active.
 */
export function registerServiceWorker(scriptURL?: string | { readonly href: string }): Promise<WorkerRegistration>;
/** The ServiceWorkerRegistration registerServiceWorker resolves to (the DOM type, by shape). */
export interface WorkerRegistration {
  readonly scope: string;
  readonly active: { readonly scriptURL: string; readonly state: string } | null;
  unregister(): Promise<boolean>;
}
