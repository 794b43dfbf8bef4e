// The tidelog dashboard: the signed-in account's runs, a page per run (charts, system metrics,
// media, files), a comparison of runs, and live updates by polling. A plain ES module over the
// JSON API (CONTRACT §7); charts are drawn by uPlot, loaded before this module as a global.
/* global uPlot */

const KEY_STORAGE = "tidelog.apiKey";
const POLL_MS = 2000;
const PALETTE = ["#2f6fdf", "#e5484d", "#30a46c", "#f5a524", "#8e4ec6", "#12a594", "#d6409f", "#8d6e63"];
const AXIS = "#6b7280";
const GRID = "#eef0f3";
const MEDIA_TYPES = new Set(["image-file", "audio-file", "histogram", "table", "plot"]);

const $main = document.getElementById("main");

// Navigation state. `page` is bumped on every navigation: async work started for an older page
// checks it and stops drawing.
const app = {
  page: 0,
  timer: null,
  xAxis: "step",
  list: { project: "", search: "", sort: { col: "created", asc: false }, selected: new Set() },
};

// Every chart on the page by id (a history key, "system:<key>", "compare:<key>", "media:<key>"):
// { x: [...], series: [[...], ...] }. Tests read the plotted data here rather than pixels.
const charts = new Map();
window.tidelogDashboard = { charts };
// At most this many rows per key are charted: the server thins longer runs by M4 (each bucket's
// first, last, minimum and maximum row), so a million-step run loads in a moment and keeps
// every spike.
const CHART_POINTS = 2000;

// ---------------------------------------------------------------------------------------------
// API

class AuthError extends Error {}

const apiKey = () => localStorage.getItem(KEY_STORAGE);

async function api(path, { raw = false } = {}) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${apiKey()}` }, cache: "no-store" });
  if (res.status === 401) throw new AuthError("The server did not accept this API key (401).");
  if (!res.ok) throw new Error(`${path}: ${res.status} ${(await res.text()).slice(0, 300)}`);
  return raw ? res : res.json();
}

const runPath = (id, rest = "") => `/api/v1/runs/${encodeURIComponent(id)}${rest}`;
const filePath = (id, path) => runPath(id, `/files/${path.split("/").map(encodeURIComponent).join("/")}`);

// Saved files need the Authorization header, so images and audio are fetched and shown through
// blob: URLs, one per file content, released when the page changes. A blob: URL runs on this
// page's origin if opened in a tab, so each blob is re-typed from an allow-list of passive types
// by the file's extension: SVG, HTML, XML or anything unknown is never shown inline (it could run
// script with the API key in reach), and downloads are always application/octet-stream.
const PASSIVE_TYPES = {
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp",
  wav: "audio/wav", mp3: "audio/mpeg", ogg: "audio/ogg", oga: "audio/ogg", flac: "audio/flac",
};

// The passive type of a saved file of `kind` ("image" or "audio"), or undefined.
function passiveType(path, kind) {
  const type = PASSIVE_TYPES[(path ?? "").split(".").pop().toLowerCase()];
  return type?.startsWith(`${kind}/`) ? type : undefined;
}

const blobs = new Map();

function blobUrl(runId, file, kind) {
  const type = passiveType(file.path, kind);
  if (!type) return Promise.reject(new Error(`${file.path}: not a ${kind} type shown inline`));
  const id = `${runId}/${file.sha256 ?? file.path}`;
  if (!blobs.has(id)) {
    const bytes = api(filePath(runId, file.path), { raw: true }).then((r) => r.arrayBuffer());
    blobs.set(id, bytes.then((b) => URL.createObjectURL(new Blob([b], { type }))));
  }
  return blobs.get(id);
}

function releaseBlobs() {
  for (const url of blobs.values()) url.then(URL.revokeObjectURL, () => {});
  blobs.clear();
}

async function download(runId, path) {
  const res = await api(filePath(runId, path), { raw: true });
  const url = URL.createObjectURL(new Blob([await res.arrayBuffer()], { type: "application/octet-stream" }));
  h("a", { href: url, download: path.split("/").pop() }).click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---------------------------------------------------------------------------------------------
// DOM and formatting helpers

// h("a", { href, class, onclick, "data-x": 1 }, child, [children], "text"): an element.
// Attributes that are false, null or undefined are left out; true sets an empty attribute.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) el.setAttribute(name, value);
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function fmtNum(n) {
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return String(n);
  const a = Math.abs(n);
  if (a === 0 || (a >= 1e-3 && a < 1e9)) return String(Number(n.toPrecision(5)));
  return n.toExponential(3);
}

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 2 });

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB"];

// The power of 1024 to show `n` bytes in: 0 for B, 1 for KB...
const bytePower = (n) => (Math.abs(n) >= 1 ? Math.min(BYTE_UNITS.length - 1, Math.floor(Math.log(Math.abs(n)) / Math.log(1024))) : 0);

function fmtBytes(n) {
  const i = bytePower(n);
  return `${Number((n / 1024 ** i).toPrecision(3))} ${BYTE_UNITS[i]}`;
}

// The unit a metric's name implies, for axes and legends: bytes, percent or none.
const unitOf = (key) => (/_bytes$/.test(key) ? "bytes" : /(percent|utilization)$/.test(key) ? "%" : "");

function fmtUnit(v, unit) {
  if (v === null || v === undefined) return "—";
  if (unit === "bytes") return fmtBytes(v);
  return unit === "%" ? `${fmtNum(v)}%` : fmtNum(v);
}

// The decimals a tick spacing is written with: 0.25 → 2, 20 → 0.
function decimalsOf(x) {
  let d = 0;
  while (d < 12 && Math.abs(Math.round(x * 10 ** d) - x * 10 ** d) > 1e-6) d++;
  return d;
}

// Tick labels for a y axis (uPlot `axes[].values`): as many decimals as the tick spacing
// `incr` needs, bytes in one unit for the whole axis (one significant digit of the spacing),
// large plain numbers compact.
function axisValues(unit) {
  return (u, splits, axisIdx, space, incr) => {
    const power = unit === "bytes" ? bytePower(Math.max(...splits.map(Math.abs))) : 0;
    const scale = 1024 ** power;
    const decimals = unit === "bytes" ? Math.min(3, Math.max(0, -Math.floor(Math.log10(incr / scale)))) : decimalsOf(incr);
    const suffix = unit === "bytes" ? ` ${BYTE_UNITS[power]}` : unit;
    return splits.map((v) => (!unit && Math.abs(v) >= 1e6 ? compact.format(v) : `${(v / scale).toFixed(decimals)}${suffix}`));
  };
}

function fmtValue(v) {
  if (typeof v === "number") return fmtNum(v);
  if (v && typeof v === "object" && v._type) return `[${v._type.replace(/-file$/, "")}]`;
  if (v && typeof v === "object") return JSON.stringify(v);
  return String(v ?? "");
}

const pad2 = (n) => String(n).padStart(2, "0");

// A local date and time, "2024-05-01 13:04:05".
function fmtDate(when) {
  const d = new Date(when);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function fmtDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

// Wall-clock tick labels (uPlot `axes[].values`, seconds) on one line, as precise as the tick
// spacing `incr` needs: a date, "13:04", "13:04:05" or "04:05.25".
function timeValues(u, splits, axisIdx, space, incr) {
  return splits.map((t) => {
    const d = new Date(t * 1000);
    const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
    if (incr >= 86400) return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    if (incr >= 60) return hm;
    if (incr >= 1) return `${hm}:${pad2(d.getSeconds())}`;
    const decimals = decimalsOf(incr);
    const seconds = (d.getSeconds() + d.getMilliseconds() / 1000).toFixed(decimals).padStart(3 + decimals, "0");
    return `${pad2(d.getMinutes())}:${seconds}`;
  });
}

const stateBadge = (state) => h("span", { class: `state state-${state}` }, state);

// Nested config/summary objects as dotted keys; media values and arrays stay whole.
function flatten(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj ?? {})) {
    if (v && typeof v === "object" && !Array.isArray(v) && !v._type) flatten(v, `${prefix}${k}.`, out);
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

// A history value as a chart point: a number; null for "NaN"/"Infinity"/"-Infinity" (a gap in
// the line); undefined when it is not a number at all (the key is not charted for that row).
function numeric(v) {
  if (typeof v === "number") return v;
  if (v === "NaN" || v === "Infinity" || v === "-Infinity") return null;
  return undefined;
}

// The keys of `rows` to chart: not internal (`_step`...) and a number in at least one row.
function numericKeys(rows) {
  const keys = new Set();
  for (const row of rows) for (const [k, v] of Object.entries(row)) if (typeof v === "number" && !k.startsWith("_")) keys.add(k);
  return [...keys].sort();
}

const runLabel = (run) => run.name || run.id;

function setCrumbs(...parts) {
  document.getElementById("crumbs").replaceChildren(
    ...parts.map(([label, href]) => (href ? h("a", { href }, label) : h("span", { class: "current" }, label))),
  );
}

// ---------------------------------------------------------------------------------------------
// Charts

// One chart card: a title over a uPlot that later data updates in place (no flicker, hover and
// size kept). `kind` is "line", "bar" or "point"; `categories` names the x positions 0, 1, ...
class Chart {
  constructor(id, key, { title = key, kind = "line", xLabel = "step", unit = unitOf(key), sync = null, height = 200 } = {}) {
    this.id = id;
    this.opts = { kind, xLabel, unit, sync, height };
    this.plot = null;
    this.shape = "";
    this.body = h("div", { class: "chart-body" });
    this.el = h("div", { class: "chart", "data-key": key, "data-chart": id },
      title ? h("div", { class: "chart-title", title: key }, title) : null, this.body);
    // Follow the card's width (the grid decides it), including when the window resizes.
    new ResizeObserver(() => {
      if (this.plot && this.body.clientWidth && this.body.clientWidth !== this.plot.width) this.plot.setSize(this.size());
    }).observe(this.body);
  }

  size() {
    return { width: this.body.clientWidth || 400, height: this.opts.height };
  }

  // `x`: numbers; `series`: [{ label, data, color? }] aligned with x, where null is a gap in a
  // line and undefined a missing point the line passes over.
  set(x, series, { time = false, categories = null } = {}) {
    const lines = series.filter((s) => !s.band).length;
    this.el.dataset.points = String(x.length);
    this.el.dataset.series = String(lines);
    // A single series needs no key: its legend only shows the values under the cursor.
    this.el.classList.toggle("single", lines === 1);
    charts.set(this.id, { x, series: series.map((s) => s.data) });
    const data = [x, ...series.map((s) => s.data)];
    const shape = JSON.stringify([time, categories, series.map((s) => [s.label, s.color, s.band])]);
    if (this.plot && shape === this.shape) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.shape = shape;
    this.plot = new uPlot(this.config(series, time, categories), data, this.body);
  }

  config(series, time, categories) {
    const { kind, xLabel, unit, sync } = this.opts;
    const half = (u, min, max) => (max - min) / Math.max(1, u.data[0].length - 1) / 2 || 0.5;
    const xAxis = { stroke: AXIS, grid: { stroke: GRID }, ticks: { show: false } };
    if (time) xAxis.values = timeValues;
    if (categories) {
      xAxis.splits = () => categories.map((_, i) => i);
      xAxis.values = (u, splits) => splits.map((i) => categories[i] ?? "");
    }
    // A line's min/max envelope: the band between its two band series (uPlot counts x as 0).
    const bands = [];
    series.forEach((s, i) => {
      if (s.band === "lo") bands.push({ series: [i + 2, i + 1], fill: `${series[s.of].color ?? PALETTE[s.of % PALETTE.length]}33` });
    });
    return {
      ...this.size(),
      bands,
      cursor: sync ? { sync: { key: sync } } : {},
      legend: { live: true },
      // Bars need room for the first and last bar's halves.
      scales: { x: kind === "bar" ? { time: false, range: (u, min, max) => [min - half(u, min, max), max + half(u, min, max)] } : { time } },
      axes: [
        xAxis,
        // Wide enough for the longest tick label.
        { stroke: AXIS, grid: { stroke: GRID }, ticks: { show: false }, values: axisValues(unit),
          size: (u, values) => 14 + 7 * Math.max(3, ...(values ?? []).map((v) => v.length)) },
      ],
      series: [
        {
          label: xLabel,
          value: (u, v) => (v === null || v === undefined ? "—" : time ? fmtDate(v * 1000) : categories ? categories[v] : fmtNum(v)),
        },
        ...series.map((s, i) => {
          if (s.band) return { label: s.label, stroke: "transparent", width: 0, points: { show: false }, value: (u, v) => fmtUnit(v, unit) };
          const color = s.color ?? PALETTE[i % PALETTE.length];
          const common = { label: s.label, stroke: color, width: 1.5, value: (u, v) => fmtUnit(v, unit) };
          if (kind === "bar") return { ...common, fill: `${color}88`, paths: uPlot.paths.bars({ size: [0.85, 64] }), points: { show: false } };
          if (kind === "point") return { ...common, paths: () => null, points: { show: true, size: 7, fill: color } };
          return { ...common, points: { size: 4 } };
        }),
      ],
    };
  }
}

// Keeps one Chart per key in `grid`, in key order, made on first sight and updated afterwards.
class ChartGrid {
  constructor(grid, idPrefix, opts) {
    this.grid = grid;
    this.idPrefix = idPrefix;
    this.opts = opts;
    this.byKey = new Map();
  }

  // `draw(key)` gives { x, series, time? } for each key of `keys`.
  update(keys, draw, titleOf = (k) => k) {
    let added = false;
    for (const key of keys) {
      if (!this.byKey.has(key)) {
        this.byKey.set(key, new Chart(this.idPrefix + key, key, { title: titleOf(key), ...this.opts }));
        added = true;
      }
      const { x, series, time } = draw(key);
      this.byKey.get(key).set(x, series, { time });
    }
    // A key that appears later takes its place in key order (moving a node keeps its canvas).
    if (added) this.grid.replaceChildren(...[...this.byKey.keys()].sort().map((k) => this.byKey.get(k).el));
  }
}

// One key of history rows as points over `_step` or `_timestamp`.
// Buckets of a chart's x range for its min/max band: as many as M4 samples `CHART_POINTS` rows
// into, at up to 4 rows (first, last, min, max) each.
const BAND_BUCKETS = CHART_POINTS / 4;

// The lowest and highest value of each bucket, given for every point of it, or null where the
// line has no more points than buckets (no bucket then holds rows a line could hide).
function envelope(x, y) {
  if (x.length <= BAND_BUCKETS) return null;
  const [x0, span] = [x[0], x[x.length - 1] - x[0] || 1];
  const bucket = (v) => Math.min(BAND_BUCKETS - 1, Math.floor(((v - x0) / span) * BAND_BUCKETS));
  const lo = new Map();
  const hi = new Map();
  x.forEach((v, i) => {
    const b = bucket(v);
    lo.set(b, Math.min(lo.get(b) ?? Infinity, y[i]));
    hi.set(b, Math.max(hi.get(b) ?? -Infinity, y[i]));
  });
  return { lo: x.map((v) => lo.get(bucket(v))), hi: x.map((v) => hi.get(bucket(v))) };
}

// One key's line, and its min/max band where the chart shows M4 samples.
function lineWithBand(x, y, key, color) {
  const line = { label: key, data: y, color };
  const band = envelope(x, y);
  if (!band) return [line];
  return [line, { label: `${key} (min)`, data: band.lo, band: "lo", of: 0 }, { label: `${key} (max)`, data: band.hi, band: "hi", of: 0 }];
}

function keySeries(rows, key, time) {
  const x = [];
  const y = [];
  for (const row of rows) {
    const v = numeric(row[key]);
    if (v === undefined) continue;
    x.push(time ? row._timestamp : row._step);
    y.push(v);
  }
  return { x, y };
}

// ---------------------------------------------------------------------------------------------
// Sign-in

function showLogin(message = "") {
  stopPolling();
  document.getElementById("signout").hidden = true;
  document.getElementById("account").textContent = "";
  setCrumbs();
  const input = h("input", { id: "apikey", type: "password", placeholder: "tlk_…", autocomplete: "off", required: true, spellcheck: "false" });
  const submit = (e) => {
    e.preventDefault();
    localStorage.setItem(KEY_STORAGE, input.value.trim());
    route();
  };
  $main.replaceChildren(h("form", { class: "card login", onsubmit: submit },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key of your account. It is kept in this browser only and sent to this server alone."),
    h("label", { for: "apikey" }, "API key"),
    input,
    message && h("p", { class: "error", role: "alert" }, message),
    h("button", { class: "primary", type: "submit" }, "Sign in"),
    h("p", { class: "hint" }, "No key yet? On the server run ", h("code", {}, "tidelog admin create-key --account NAME"), ".")));
  input.focus();
}

function signOut() {
  localStorage.removeItem(KEY_STORAGE);
  showLogin();
}

// ---------------------------------------------------------------------------------------------
// Runs list

async function listPage(page) {
  setCrumbs(["Runs"]);
  let runs = (await api("/api/v1/runs")).runs;
  if (page !== app.page) return;
  const opts = app.list;
  const project = h("select", { id: "project", "aria-label": "Project", onchange: (e) => { opts.project = e.target.value; render(); } });
  const search = h("input", { id: "search", type: "search", placeholder: "Filter by name or id", value: opts.search,
    oninput: (e) => { opts.search = e.target.value; render(); } });
  const compare = h("button", { id: "compare", class: "primary", type: "button",
    onclick: () => { location.hash = `#/compare/${[...opts.selected].map(encodeURIComponent).join(",")}`; } });
  const count = h("span", { id: "count", class: "muted" });
  const table = h("table", { id: "runs", class: "runs" });
  $main.replaceChildren(h("section", { class: "card" },
    h("div", { class: "toolbar" }, h("h1", {}, "Runs"), project, search, h("span", { class: "spacer" }), count, compare),
    h("div", { class: "table-scroll" }, table)));

  const updateCompare = () => {
    compare.disabled = opts.selected.size < 2;
    compare.textContent = opts.selected.size ? `Compare ${opts.selected.size} runs` : "Compare";
  };

  // The columns: fixed ones, then every flattened config key, then every summary key.
  function columns(shown) {
    const keysOf = (field) => [...new Set(shown.flatMap((r) => Object.keys(flatten(r[field]))))].filter((k) => !k.startsWith("_")).sort();
    return [
      {
        id: "name", label: "Name", get: runLabel,
        cell: (r) => [h("a", { href: `#/runs/${encodeURIComponent(r.id)}` }, runLabel(r)), r.name && h("div", { class: "run-id" }, r.id)],
      },
      { id: "project", label: "Project", get: (r) => r.project },
      { id: "state", label: "State", get: (r) => r.state, cell: (r) => stateBadge(r.state) },
      { id: "created", label: "Created", get: (r) => r.created_ms, cell: (r) => fmtDate(r.created_ms) },
      { id: "runtime", label: "Runtime", get: (r) => r.updated_ms - r.created_ms, cell: (r) => fmtDuration(r.updated_ms - r.created_ms) },
      ...keysOf("config").map((k) => ({ id: `config.${k}`, group: "Config", label: k, get: (r) => flatten(r.config)[k] })),
      ...keysOf("summary").map((k) => ({ id: `summary.${k}`, group: "Summary", label: k, get: (r) => flatten(r.summary)[k] })),
    ];
  }

  // Numbers by value, the rest as text; runs without a value go last in either direction.
  function compareBy(col, asc) {
    return (a, b) => {
      const [x, y] = [col.get(a), col.get(b)];
      if (x === undefined || x === null) return y === undefined || y === null ? 0 : 1;
      if (y === undefined || y === null) return -1;
      const c = typeof x === "number" && typeof y === "number" ? x - y : fmtValue(x).localeCompare(fmtValue(y), undefined, { numeric: true });
      return asc ? c : -c;
    };
  }

  function render() {
    const projects = [...new Set(runs.map((r) => r.project))].sort();
    if (opts.project && !projects.includes(opts.project)) opts.project = "";
    project.replaceChildren(h("option", { value: "" }, `All projects (${runs.length})`),
      ...projects.map((p) => h("option", { value: p }, `${p} (${runs.filter((r) => r.project === p).length})`)));
    project.value = opts.project;

    const needle = opts.search.trim().toLowerCase();
    const shown = runs.filter((r) => (!opts.project || r.project === opts.project)
      && (!needle || r.id.toLowerCase().includes(needle) || (r.name ?? "").toLowerCase().includes(needle)));
    const cols = columns(shown);
    const sortCol = cols.find((c) => c.id === opts.sort.col) ?? cols[3];
    shown.sort(compareBy(sortCol, opts.sort.asc));

    const groups = cols.filter((c) => c.group);
    const groupRow = groups.length ? h("tr", { class: "groups" }, h("th", { colspan: 1 + cols.length - groups.length }),
      ["Config", "Summary"].map((g) => {
        const n = groups.filter((c) => c.group === g).length;
        return n ? h("th", { colspan: n, class: "group" }, g) : null;
      })) : null;
    const sortBy = (col) => {
      opts.sort = { col: col.id, asc: opts.sort.col === col.id ? !opts.sort.asc : true };
      render();
    };
    const headRow = h("tr", {}, h("th", { class: "select" }), cols.map((c) => h("th", {
      "data-col": c.id, class: `${c.id === "name" ? "col-name " : ""}sortable${c === sortCol ? (opts.sort.asc ? " asc" : " desc") : ""}`,
      "aria-sort": c === sortCol ? (opts.sort.asc ? "ascending" : "descending") : "none", title: c.id, onclick: () => sortBy(c),
    }, c.label)));
    const toggle = (id) => (e) => {
      if (e.target.checked) opts.selected.add(id);
      else opts.selected.delete(id);
      updateCompare();
    };
    const rows = shown.map((r) => h("tr", { "data-run": r.id, class: opts.selected.has(r.id) ? "selected" : "" },
      h("td", { class: "select" },
        h("input", { type: "checkbox", "aria-label": `select ${r.id}`, checked: opts.selected.has(r.id), onchange: toggle(r.id) })),
      cols.map((c) => {
        const value = c.get(r);
        return h("td", { class: c.group ? (typeof value === "number" ? "num" : null) : `col-${c.id}` }, c.cell ? c.cell(r) : fmtValue(value));
      })));
    table.replaceChildren(h("thead", {}, groupRow, headRow),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: cols.length + 1, class: "empty" },
        runs.length ? "No run matches the filter." : "No runs yet. Log one and run `tidelog sync`."))));
    count.textContent = `${shown.length} of ${runs.length} runs`;
    updateCompare();
  }

  render();
  // New runs and changed ones show up without a reload; unchanged lists are not redrawn.
  const signature = (list) => JSON.stringify(list.map((r) => [r.id, r.updated_ms, r.state]));
  poll(page, async () => {
    const fresh = (await api("/api/v1/runs")).runs;
    if (signature(fresh) !== signature(runs)) {
      runs = fresh;
      render();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Run page

// System metric groups by key prefix: "cpu.percent" → "cpu", "gpu.0.power_w" → "gpu.0".
function systemGroup(key) {
  const [first, second] = key.split(".");
  return first === "gpu" && /^\d+$/.test(second) ? `gpu.${second}` : first;
}

const GROUP_NAMES = { cpu: "CPU", memory: "Memory", proc: "Process", disk: "Disk", network: "Network", js: "JavaScript" };
const groupName = (g) => (g.startsWith("gpu.") ? `GPU ${g.slice(4)}` : GROUP_NAMES[g] ?? g);
const GROUP_ORDER = ["cpu", "memory", "proc", "disk", "network"];
const groupRank = (g) => (GROUP_ORDER.includes(g) ? GROUP_ORDER.indexOf(g) : g.startsWith("gpu.") ? 10 : 20);

function panel(id, title, ...tools) {
  const body = h("div", { id });
  const head = h("div", { class: "panel-head" }, h("h2", {}, title), h("span", { class: "spacer" }), tools);
  return { el: h("section", { class: "card panel" }, head, body), body, head };
}

function kvTable(obj) {
  const flat = flatten(obj);
  const keys = Object.keys(flat).filter((k) => !k.startsWith("_")).sort();
  if (!keys.length) return h("p", { class: "muted" }, "none");
  return h("table", { class: "kv" }, h("tbody", {}, keys.map((k) => h("tr", {}, h("th", {}, k), h("td", {}, fmtValue(flat[k]))))));
}

function runHeader(run) {
  const ended = run.state !== "running";
  const facts = [
    ["Project", run.project],
    ["Run id", h("code", {}, run.id)],
    ["Exit code", run.exit_code ?? "—"],
    ["Created", fmtDate(run.created_ms)],
    ["Updated", fmtDate(run.updated_ms)],
    [ended ? "Runtime" : "Running for", fmtDuration((ended ? run.updated_ms : Date.now()) - run.created_ms)],
  ];
  return [
    h("div", { class: "run-title" }, h("h1", {}, runLabel(run)), stateBadge(run.state)),
    h("dl", { class: "facts" }, facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
    h("div", { class: "columns" },
      h("div", {}, h("h3", {}, "Config"), kvTable(run.config)),
      h("div", {}, h("h3", {}, "Summary"), kvTable(run.summary))),
  ];
}

async function runPage(page, id) {
  // Performance marks: how long the run page takes to its first chart (bench/dashboard.mjs
  // and the e2e read "tidelog:first-chart", measured from "tidelog:run-page").
  performance.clearMarks("tidelog:run-page");
  performance.clearMarks("tidelog:first-chart");
  performance.clearMeasures("tidelog:first-chart");
  performance.mark("tidelog:run-page", { detail: id });
  let charted = false;
  setCrumbs(["Runs", "#/"], [id]);
  const header = h("section", { class: "card", id: "run-header" });
  const xAxis = h("select", { id: "xaxis", "aria-label": "x axis", onchange: (e) => { app.xAxis = e.target.value; drawHistory(); } },
    h("option", { value: "step" }, "X axis: Step"), h("option", { value: "time" }, "X axis: Wall time"));
  xAxis.value = app.xAxis;
  const history = panel("history", "Charts", xAxis);
  const system = panel("system", "System");
  const media = panel("media", "Media");
  const files = panel("files", "Files");
  $main.replaceChildren(header, history.el, system.el, media.el, files.el);

  const historyCharts = new ChartGrid(h("div", { class: "grid" }), "", { sync: "history" });
  const noHistory = h("p", { class: "muted" }, "No numeric history yet.");
  history.body.append(noHistory, historyCharts.grid);
  media.body.className = "media-grid";
  const systemGroups = new Map();
  const mediaCards = new Map();
  let rows = [];
  let sysRows = [];
  let mediaRows = [];
  let shown = null;

  function drawHistory() {
    const time = app.xAxis === "time";
    const keys = numericKeys(rows);
    historyCharts.update(keys, (key) => {
      const { x, y } = keySeries(rows, key, time);
      return { x, series: lineWithBand(x, y, key), time };
    });
    history.head.querySelector("h2").textContent = `Charts (${keys.length})`;
    noHistory.hidden = keys.length > 0;
    if (keys.length && !charted) {
      charted = true;
      // The frame after the charts were made is the one that shows them.
      requestAnimationFrame(() => {
        if (page !== app.page) return;
        performance.mark("tidelog:first-chart", { detail: { id, points: rows.length } });
        performance.measure("tidelog:first-chart", "tidelog:run-page", "tidelog:first-chart");
      });
    }
  }

  function drawSystem(sysRows) {
    const keys = numericKeys(sysRows);
    const byGroup = new Map();
    for (const key of keys) byGroup.set(systemGroup(key), [...(byGroup.get(systemGroup(key)) ?? []), key]);
    for (const [group, groupKeys] of byGroup) {
      if (!systemGroups.has(group)) {
        const grid = new ChartGrid(h("div", { class: "grid" }), "system:", { xLabel: "time", sync: "system", height: 160 });
        systemGroups.set(group, { grid, el: h("div", { class: "group", "data-group": group }, h("h3", {}, groupName(group)), grid.grid) });
      }
      // Within a group the title drops the group's prefix: "gpu.0.power_w" → "power_w".
      systemGroups.get(group).grid.update(groupKeys, (key) => {
        const { x, y } = keySeries(sysRows, key, true);
        return { x, series: [{ label: key, data: y, color: PALETTE[5] }], time: true };
      }, (key) => key.slice(group.length + 1));
    }
    const ordered = [...systemGroups.keys()].sort((a, b) => groupRank(a) - groupRank(b) || a.localeCompare(b, undefined, { numeric: true }));
    if (ordered.join() !== [...system.body.children].map((e) => e.dataset.group).join()) {
      system.body.replaceChildren(...ordered.map((g) => systemGroups.get(g).el));
    }
    system.el.hidden = !keys.length;
  }

  function drawMedia() {
    // Every media value of the history, per key, in step order.
    const byKey = new Map();
    for (const row of mediaRows) {
      for (const [k, v] of Object.entries(row)) {
        if (v && typeof v === "object" && MEDIA_TYPES.has(v._type)) {
          if (!byKey.has(k)) byKey.set(k, []);
          byKey.get(k).push({ step: row._step, value: v });
        }
      }
    }
    for (const [key, entries] of byKey) {
      if (!mediaCards.has(key)) mediaCards.set(key, new MediaCard(id, key));
      mediaCards.get(key).update(entries);
    }
    const keys = [...mediaCards.keys()].sort();
    if (keys.join() !== [...media.body.children].map((e) => e.dataset.mediaKey).join()) {
      media.body.replaceChildren(...keys.map((k) => mediaCards.get(k).el));
    }
    media.el.hidden = !keys.length;
  }

  function drawFiles(list) {
    files.body.replaceChildren(list.length
      ? h("table", { id: "file-list", class: "files" },
        h("thead", {}, h("tr", {}, h("th", {}, "Path"), h("th", {}, "Size"), h("th", {}, "SHA-256"))),
        h("tbody", {}, list.map((f) => h("tr", {},
          h("td", {}, h("a", { href: filePath(id, f.path), "data-path": f.path, title: "Download",
            onclick: (e) => { e.preventDefault(); download(id, f.path).catch(fail); } }, f.path)),
          h("td", { class: "num" }, fmtBytes(f.size)),
          h("td", {}, h("code", { title: f.sha256 }, f.sha256.slice(0, 12)))))))
      : h("p", { class: "muted" }, "No files saved."));
  }

  // `path`'s rows (with `query`): all of them thinned, or, when `have` is a live run's rows, only
  // the steps from its last one on (rows at that step may have grown). Re-thinned from scratch
  // once the rows appended since outnumber the chart's points.
  const appended = new Map();
  async function fetchRows(path, query, have) {
    const url = `${path}?${query}`;
    const last = have?.length ? have[have.length - 1]._step : null;
    if (last === null || (appended.get(url) ?? 0) > CHART_POINTS) {
      appended.set(url, 0);
      return (await api(runPath(id, url))).rows;
    }
    const tail = (await api(runPath(id, `${url}&min_step=${last}`))).rows;
    appended.set(url, appended.get(url) + tail.length);
    return [...have.filter((row) => row._step < last), ...tail];
  }

  // Fetches the run and what it logged (a live run: only what is new), then updates each part
  // in place.
  async function load(run) {
    const live = shown?.state === "running";
    const r = run ?? await api(runPath(id));
    const [hist, sys, fl] = await Promise.all([
      fetchRows("/history", `samples=${CHART_POINTS}`, live && rows),
      fetchRows("/system", `samples=${CHART_POINTS}`, live && sysRows),
      api(runPath(id, "/files")),
    ]);
    // Thinned rows may skip media steps: every row of the media keys (the summary names them)
    // is fetched on its own.
    const mediaKeys = Object.entries(r.summary ?? {}).filter(([, v]) => v && MEDIA_TYPES.has(v._type)).map(([k]) => k);
    mediaRows = mediaKeys.length
      ? await fetchRows("/history", `keys=${mediaKeys.map(encodeURIComponent).join(",")}`, live && mediaRows)
      : [];
    if (page !== app.page) return r;
    if (!shown || shown.updated_ms !== r.updated_ms || r.state === "running") header.replaceChildren(...runHeader(r));
    rows = hist;
    sysRows = sys;
    drawHistory();
    drawSystem(sysRows);
    drawMedia();
    drawFiles(fl.files);
    shown = r;
    return r;
  }

  await load();
  // While the run is running, or whenever it changed, fetch and redraw in place.
  poll(page, async () => {
    const run = await api(runPath(id));
    if (run.state === "running" || run.updated_ms !== shown.updated_ms) await load(run);
  });
}

// A media key of a run: the value at one step, a slider over the steps it was logged at. The
// slider follows the latest step until moved.
class MediaCard {
  constructor(runId, key) {
    this.runId = runId;
    this.key = key;
    this.entries = [];
    this.index = -1;
    this.follow = true;
    this.chart = null;
    this.content = h("div", { class: "media-content" });
    this.caption = h("span", { class: "media-step" });
    this.slider = h("input", { type: "range", min: 0, value: 0, "aria-label": `${key} step`, "data-media-slider": key,
      oninput: () => this.show(Number(this.slider.value)) });
    this.el = h("div", { class: "media-card", "data-media-key": key },
      h("div", { class: "media-head" }, h("span", { class: "chart-title" }, key), this.caption), this.content, this.slider);
  }

  update(entries) {
    const changed = JSON.stringify(entries) !== JSON.stringify(this.entries);
    this.entries = entries;
    this.slider.max = String(entries.length - 1);
    this.slider.hidden = entries.length < 2;
    const index = this.follow ? entries.length - 1 : Math.min(this.index, entries.length - 1);
    if (changed || index !== this.index) this.show(index);
  }

  show(index) {
    this.follow = index === this.entries.length - 1;
    this.index = index;
    this.slider.value = String(index);
    const { step, value } = this.entries[index];
    this.caption.textContent = `step ${step}${this.entries.length > 1 ? ` · ${index + 1}/${this.entries.length}` : ""}`;
    this.el.dataset.step = String(step);
    const view = this.render(value);
    if (view) this.content.replaceChildren(view);
  }

  // The element showing `v` (one of MEDIA_TYPES); null when a chart was updated in place.
  render(v) {
    switch (v._type) {
      case "image-file": {
        const img = h("img", { alt: v.caption ?? this.key, width: v.width, height: v.height });
        // Small images are scaled up with crisp pixels.
        if (v.width && v.width < 128) img.classList.add("pixelated");
        blobUrl(this.runId, v, "image").then((url) => { img.src = url; }, () => img.replaceWith(h("p", { class: "error" },
          passiveType(v.path, "image") ? "could not load image" : `${v.path} is not shown here (it could run script): download it from Files`)));
        return h("figure", { "data-media": "image" }, img, v.caption ? h("figcaption", {}, v.caption) : null);
      }
      case "audio-file": {
        const audio = h("audio", { controls: true, preload: "metadata" });
        blobUrl(this.runId, v, "audio").then((url) => { audio.src = url; }, () => {});
        const about = [v.duration !== undefined && `${fmtNum(v.duration)} s`, v.sample_rate && `${v.sample_rate} Hz`, v.caption]
          .filter(Boolean).join(" · ");
        return h("figure", { "data-media": "audio" }, audio, about ? h("figcaption", {}, about) : null);
      }
      case "table":
        return h("figure", { "data-media": "table" }, h("div", { class: "table-scroll" }, h("table", { class: "data" },
          h("thead", {}, h("tr", {}, v.columns.map((c) => h("th", {}, c)))),
          h("tbody", {}, v.data.map((row) => h("tr", {}, row.map((c) => h("td", {}, fmtValue(c)))))))));
      case "histogram": {
        // Bars at bin centres; `bins` are the n + 1 edges of n `counts`.
        const x = v.counts.map((_, i) => (v.bins[i] + v.bins[i + 1]) / 2);
        return this.drawChart("histogram", "bar", x, [{ label: "count", data: v.counts }], { xLabel: "value" });
      }
      case "plot":
        return this.drawPlot(v);
    }
  }

  // The histogram or plot chart, made once and updated in place as the step changes.
  drawChart(type, kind, x, series, { xLabel, categories = null }) {
    const shape = `${type}/${kind}/${xLabel}`;
    const fresh = !this.chart || this.chartShape !== shape;
    if (fresh) {
      this.chart = new Chart(`media:${this.key}`, this.key, { kind, xLabel, title: "", unit: "", height: 220 });
      this.chartShape = shape;
    }
    this.chart.set(x, series, { categories });
    return fresh ? h("figure", { "data-media": type }, this.chart.el) : null;
  }

  // A minimal Vega-Lite: `mark` line (or area), point/circle/square (scatter) or bar, fields
  // from `encoding.x` / `encoding.y`, one series per value of `encoding.color.field` if any,
  // rows from `data.values` (or `data` as an array, or the spec's own `data.values`).
  drawPlot(v) {
    const spec = v.spec ?? {};
    const values = (Array.isArray(v.data) ? v.data : v.data?.values) ?? spec.data?.values ?? [];
    const enc = spec.encoding ?? {};
    const xf = enc.x?.field ?? "x";
    const yf = enc.y?.field ?? "y";
    const cf = enc.color?.field;
    const mark = typeof spec.mark === "string" ? spec.mark : spec.mark?.type ?? "line";
    const kind = mark === "bar" ? "bar" : ["point", "circle", "square"].includes(mark) ? "point" : "line";
    // Non-numeric x values are categories at positions 0, 1, ... in order of appearance.
    const categories = values.some((d) => typeof d[xf] !== "number") ? [...new Set(values.map((d) => String(d[xf])))] : null;
    const xOf = (d) => (categories ? categories.indexOf(String(d[xf])) : d[xf]);
    const x = [...new Set(values.map(xOf))].sort((a, b) => a - b);
    const groups = cf ? [...new Set(values.map((d) => String(d[cf])))] : [yf];
    const series = groups.map((g) => {
      const at = new Map(values.filter((d) => !cf || String(d[cf]) === g).map((d) => [xOf(d), numeric(d[yf])]));
      return { label: g, data: x.map((xv) => at.get(xv)) };
    });
    if (spec.title) {
      const title = typeof spec.title === "string" ? spec.title : spec.title.text;
      this.el.querySelector(".chart-title").textContent = `${this.key} · ${title}`;
    }
    return this.drawChart("plot", kind, x, series, { xLabel: enc.x?.title ?? xf, categories });
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison

function swatch(color) {
  const el = h("span", { class: "swatch" });
  el.style.background = color;
  return el;
}

async function comparePage(page, ids) {
  setCrumbs(["Runs", "#/"], ["Compare"]);
  const head = h("section", { class: "card", id: "compare-head" });
  const body = panel("compare-charts", "Shared metrics");
  const grid = new ChartGrid(h("div", { class: "grid" }), "compare:", { sync: "compare" });
  const noneShared = h("p", { class: "muted" }, "These runs share no numeric history key.");
  body.body.append(noneShared, grid.grid);
  $main.replaceChildren(head, body.el);
  let runs = [];

  async function load() {
    const fresh = await Promise.all(ids.map((id) => api(runPath(id))));
    const hists = await Promise.all(ids.map((id) => api(runPath(id, `/history?samples=${CHART_POINTS}`))));
    if (page !== app.page) return;
    runs = fresh;
    // Names label the series; a name that two runs share gets its run's id too.
    const labels = runs.map((r) => (r.name && runs.filter((o) => o.name === r.name).length === 1 ? r.name : r.name ? `${r.name} · ${r.id}` : r.id));
    head.replaceChildren(h("h1", {}, `Comparing ${runs.length} runs`), h("div", { class: "legend-chips" }, runs.map((r, i) =>
      h("a", { class: "chip", href: `#/runs/${encodeURIComponent(r.id)}` }, swatch(PALETTE[i % PALETTE.length]), labels[i], stateBadge(r.state)))));
    // Keys every run charted; one chart each, one series per run over the union of steps.
    const perRun = hists.map((hist) => new Set(numericKeys(hist.rows)));
    const shared = [...perRun[0] ?? []].filter((k) => perRun.every((s) => s.has(k)));
    grid.update(shared, (key) => {
      const points = hists.map((hist) => new Map(hist.rows.filter((r) => numeric(r[key]) !== undefined).map((r) => [r._step, numeric(r[key])])));
      const x = [...new Set(points.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
      return { x, series: points.map((m, i) => ({ label: labels[i], data: x.map((s) => m.get(s)), color: PALETTE[i % PALETTE.length] })) };
    });
    body.head.querySelector("h2").textContent = `Shared metrics (${shared.length})`;
    noneShared.hidden = shared.length > 0;
  }

  await load();
  poll(page, async () => {
    const fresh = await Promise.all(ids.map((id) => api(runPath(id))));
    if (fresh.some((r, i) => r.state === "running" || r.updated_ms !== runs[i]?.updated_ms)) await load();
  });
}

// ---------------------------------------------------------------------------------------------
// Routing and polling

// Calls `tick` every POLL_MS while `page` is shown; ticks never overlap. A failed tick is
// retried on the next one, except a 401 which signs out.
function poll(page, tick) {
  if (page !== app.page) return;
  let busy = false;
  const timer = setInterval(async () => {
    if (page !== app.page) return clearInterval(timer);
    if (busy) return;
    busy = true;
    try {
      await tick();
      document.body.classList.remove("offline");
    } catch (e) {
      if (e instanceof AuthError) fail(e);
      else document.body.classList.add("offline");
    } finally {
      busy = false;
    }
  }, POLL_MS);
  app.timer = timer;
}

function stopPolling() {
  clearInterval(app.timer);
  app.timer = null;
}

function fail(e) {
  if (e instanceof AuthError) {
    localStorage.removeItem(KEY_STORAGE);
    showLogin(`${e.message} Enter a valid key.`);
  } else {
    $main.replaceChildren(h("section", { class: "card error", role: "alert" },
      h("h2", {}, "Something went wrong"), h("p", {}, String(e.message ?? e))));
  }
}

async function route() {
  const page = ++app.page;
  stopPolling();
  charts.clear();
  releaseBlobs();
  if (!apiKey()) return showLogin();
  try {
    const who = await api("/api/v1/whoami");
    if (page !== app.page) return;
    document.getElementById("account").textContent = who.account;
    document.getElementById("signout").hidden = false;
    // "#/runs/<id>", "#/compare/<id>,<id>", anything else: the list.
    const [, view, arg] = location.hash.split("/");
    if (view === "runs" && arg) await runPage(page, decodeURIComponent(arg));
    else if (view === "compare" && arg) await comparePage(page, arg.split(",").map(decodeURIComponent));
    else await listPage(page);
  } catch (e) {
    if (page === app.page) fail(e);
  }
}

document.getElementById("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
