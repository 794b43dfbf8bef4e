// The tidelog dashboard: runs of the signed-in account, run pages with charts, media and
// files, comparison of runs, live updates. Plain ES module over the JSON API; charts by uPlot.

const $main = document.getElementById("main");
const COLORS = ["#e8a33d", "#1d5fa8", "#1c7a36", "#a8281d", "#7b3fa8", "#138a8a", "#8a5a12", "#d6457a"];
const state = { runs: [], sort: { key: "created", asc: false }, project: "", selected: new Set(), timer: null };

// Tests read chart data from here: key → { x: [...], series: [[...], ...] }.
window.tidelogDashboard = { charts: new Map() };

const key = () => localStorage.getItem("tidelog.apiKey");

async function api(path, raw = false) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${key()}` } });
  if (res.status === 401) {
    localStorage.removeItem("tidelog.apiKey");
    login("That API key was not accepted. Enter a valid key.");
    throw new Error("unauthorized");
  }
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return raw ? res : res.json();
}

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  e.append(...kids.flat().filter((k) => k !== null && k !== undefined));
  return e;
};

function fmt(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(5)));
  if (v && typeof v === "object" && v._type) return `[${v._type.replace(/-file$/, "")}]`;
  if (v && typeof v === "object") return JSON.stringify(v);
  return String(v ?? "");
}
const stateBadge = (s) => el("span", { class: `state ${s}` }, s);
// Flattens nested config/summary objects to dotted keys, leaving media values whole.
function flatten(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj ?? {})) {
    if (v && typeof v === "object" && !Array.isArray(v) && !v._type) flatten(v, `${prefix}${k}.`, out);
    else out[`${prefix}${k}`] = v;
  }
  return out;
}
const num = (v) => (typeof v === "number" ? v : v === "Infinity" || v === "-Infinity" || v === "NaN" ? null : undefined);

function login(message = "") {
  clearInterval(state.timer);
  document.getElementById("signout").hidden = true;
  document.getElementById("account").textContent = "";
  const input = el("input", { type: "password", placeholder: "tlk_…", id: "apikey", autocomplete: "off" });
  const submit = async (e) => {
    e.preventDefault();
    localStorage.setItem("tidelog.apiKey", input.value.trim());
    route();
  };
  $main.replaceChildren(el("form", { class: "card login", onsubmit: submit },
    el("h2", {}, "Sign in with an API key"),
    el("div", { class: "muted" }, "Created with: tidelog admin create-key --account NAME. Kept in this browser only."),
    input, el("button", { class: "primary", type: "submit" }, "Sign in"),
    message ? el("p", { class: "error" }, message) : null));
  input.focus();
}

function chart(container, title, x, series, opts = {}) {
  const points = x.length;
  container.dataset.key = title;
  container.dataset.points = String(points);
  container.dataset.series = String(series.length);
  window.tidelogDashboard.charts.set(opts.id ?? title, { x, series: series.map((s) => s.data) });
  const width = Math.max(320, container.clientWidth - 20 || 400);
  const data = [x, ...series.map((s) => s.data)];
  if (container._plot) {
    container._plot.setData(data);
    return;
  }
  const cfg = {
    width, height: 220, legend: { show: series.length > 1 },
    scales: { x: { time: Boolean(opts.time) } },
    series: [{ label: opts.xLabel ?? "step" }, ...series.map((s, i) => ({
      label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
      ...(opts.bars ? { paths: uPlot.paths.bars({ size: [0.9] }), fill: COLORS[i % COLORS.length] + "99" } : {}),
      ...(opts.points ? { paths: () => null, points: { show: true, size: 5 } } : {}),
    }))],
    axes: [{ stroke: "#6b7280" }, { stroke: "#6b7280" }],
  };
  container._plot = new uPlot(cfg, data, container);
}

function chartCard(title, id) {
  const card = el("div", { class: "chart" }, el("h3", {}, title));
  card.dataset.chart = id ?? title;
  return card;
}

async function listPage() {
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "Runs"));
  const { runs } = await api("/api/v1/runs");
  state.runs = runs;
  const projects = [...new Set(runs.map((r) => r.project))].sort();
  const filter = el("select", { id: "project", onchange: (e) => { state.project = e.target.value; render(); } },
    el("option", { value: "" }, `All projects (${projects.length})`), projects.map((p) => el("option", { value: p }, p)));
  filter.value = state.project;
  const compare = el("button", { class: "primary", id: "compare", onclick: () => { location.hash = `#/compare/${[...state.selected].join(",")}`; } }, "Compare");
  const table = el("table", { id: "runs" });
  const body = el("div", { class: "card" }, el("div", { class: "toolbar" }, filter, compare, el("span", { class: "muted", id: "count" })), el("div", { class: "scroll" }, table));
  $main.replaceChildren(body);

  function render() {
    const shown = runs.filter((r) => !state.project || r.project === state.project);
    const summaryKeys = [...new Set(shown.flatMap((r) => Object.keys(flatten(r.summary))))].filter((k) => !k.startsWith("_")).slice(0, 8);
    const configKeys = [...new Set(shown.flatMap((r) => Object.keys(flatten(r.config))))].filter((k) => !k.startsWith("_")).slice(0, 6);
    const cols = [
      ["name", "Name", (r) => r.name || r.id], ["project", "Project", (r) => r.project], ["state", "State", (r) => r.state],
      ["created", "Created", (r) => r.created_ms],
      ...configKeys.map((k) => [`config.${k}`, `config.${k}`, (r) => flatten(r.config)[k]]),
      ...summaryKeys.map((k) => [`summary.${k}`, k, (r) => flatten(r.summary)[k]]),
    ];
    const col = cols.find((c) => c[0] === state.sort.key) ?? cols[3];
    shown.sort((a, b) => {
      const [x, y] = [col[2](a), col[2](b)];
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
      return state.sort.asc ? c : -c;
    });
    const head = el("tr", {}, el("th", {}, ""), cols.map(([k, label]) => el("th", {
      class: k === col[0] ? `sorted ${state.sort.asc ? "asc" : ""}` : "", "data-col": k,
      onclick: () => { state.sort = { key: k, asc: state.sort.key === k ? !state.sort.asc : true }; render(); },
    }, label)));
    const rows = shown.map((r) => el("tr", { "data-run": r.id },
      el("td", {}, el("input", { type: "checkbox", ...(state.selected.has(r.id) ? { checked: "" } : {}), onchange: (e) => { e.target.checked ? state.selected.add(r.id) : state.selected.delete(r.id); compare.disabled = state.selected.size < 2; } })),
      el("td", {}, el("a", { href: `#/runs/${r.id}` }, r.name || r.id), r.name ? el("span", { class: "muted" }, ` ${r.id}`) : null),
      el("td", {}, r.project), el("td", {}, stateBadge(r.state)), el("td", {}, r.created.replace("T", " ").slice(0, 19)),
      cols.slice(4).map((c) => el("td", {}, fmt(c[2](r))))));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
    document.getElementById("count").textContent = `${shown.length} runs`;
    compare.disabled = state.selected.size < 2;
  }
  render();
  state.timer = setInterval(async () => {
    const fresh = await api("/api/v1/runs").catch(() => null);
    if (fresh && JSON.stringify(fresh.runs.map((r) => [r.id, r.updated_ms])) !== JSON.stringify(runs.map((r) => [r.id, r.updated_ms]))) {
      runs.splice(0, runs.length, ...fresh.runs);
      render();
    }
  }, 2000);
}

function kvTable(obj) {
  const flat = flatten(obj);
  const keys = Object.keys(flat).sort();
  if (!keys.length) return el("p", { class: "muted" }, "none");
  return el("table", { class: "kv" }, keys.map((k) => el("tr", {}, el("td", {}, k), el("td", {}, fmt(flat[k])))));
}

async function blobUrl(run, path) {
  const res = await api(`/api/v1/runs/${run}/files/${path}`, true);
  return URL.createObjectURL(await res.blob());
}

function mediaView(run, key, v, step) {
  const caption = el("figcaption", { class: "muted" }, `${key} · step ${step}${v.caption ? ` · ${v.caption}` : ""}`);
  if (v._type === "image-file") {
    const img = el("img", { alt: key, width: Math.max(96, Math.min(256, v.width * 8)) });
    blobUrl(run, v.path).then((u) => { img.src = u; });
    return el("figure", { "data-media": "image" }, img, caption);
  }
  if (v._type === "audio-file") {
    const audio = el("audio", { controls: "" });
    blobUrl(run, v.path).then((u) => { audio.src = u; });
    return el("figure", { "data-media": "audio" }, audio, caption);
  }
  if (v._type === "table") {
    return el("figure", { "data-media": "table" }, el("table", {}, el("tr", {}, v.columns.map((c) => el("th", {}, c))), v.data.map((r) => el("tr", {}, r.map((c) => el("td", {}, fmt(c)))))), caption);
  }
  const box = el("div", { style: "width:420px" });
  const fig = el("figure", { "data-media": v._type }, box, caption);
  requestAnimationFrame(() => {
    if (v._type === "histogram") {
      chart(box, `${key} (histogram)`, v.bins.slice(0, -1), [{ label: "count", data: v.counts }], { bars: true, xLabel: "bin", id: `media:${key}` });
    } else if (v._type === "plot") {
      const values = v.data?.values ?? v.spec?.data?.values ?? (Array.isArray(v.data) ? v.data : []);
      const enc = v.spec?.encoding ?? {};
      const xf = enc.x?.field ?? "x";
      const yf = enc.y?.field ?? "y";
      const mark = typeof v.spec?.mark === "string" ? v.spec.mark : v.spec?.mark?.type;
      const sorted = [...values].sort((a, b) => a[xf] - b[xf]);
      chart(box, `${key} (plot)`, sorted.map((d) => d[xf]), [{ label: yf, data: sorted.map((d) => d[yf]) }], { bars: mark === "bar", points: mark === "point", xLabel: xf, id: `media:${key}` });
    }
  });
  return fig;
}

async function runPage(id) {
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "Runs"), el("span", {}, ` / ${id}`));
  let xTime = false;
  const header = el("div", { class: "card", id: "run-header" });
  const charts = el("div", { class: "grid", id: "history" });
  const system = el("div", { class: "grid", id: "system" });
  const media = el("div", { class: "media", id: "media" });
  const files = el("div", { id: "files" });
  const toggle = el("button", { id: "xaxis", onclick: () => { xTime = !xTime; toggle.textContent = xTime ? "x: wall time" : "x: step"; for (const c of charts.children) c._plot = (c._plot?.destroy(), null); refresh(); } }, "x: step");
  $main.replaceChildren(header, el("div", { class: "card" }, el("div", { class: "toolbar" }, el("h2", {}, "History"), toggle), charts),
    el("div", { class: "card" }, el("h2", {}, "System"), system), el("div", { class: "card" }, el("h2", {}, "Media"), media), el("div", { class: "card" }, el("h2", {}, "Files"), files));
  let lastUpdated = null;
  async function refresh() {
    const [run, hist, sys, fl] = await Promise.all([api(`/api/v1/runs/${id}`), api(`/api/v1/runs/${id}/history`), api(`/api/v1/runs/${id}/system`), api(`/api/v1/runs/${id}/files`)]);
    header.replaceChildren(el("h2", {}, run.name || run.id, " ", stateBadge(run.state)),
      el("div", { class: "muted" }, `${run.project} · id ${run.id} · created ${run.created} · updated ${run.updated}${run.exit_code !== null && run.exit_code !== undefined ? ` · exit code ${run.exit_code}` : ""}`),
      el("div", { class: "grid" }, el("div", {}, el("h3", {}, "Config"), kvTable(run.config)), el("div", {}, el("h3", {}, "Summary"), kvTable(run.summary))));
    drawRows(charts, hist.rows, xTime, "");
    drawRows(system, sys.rows, true, "system:");
    if (!system.children.length) system.replaceChildren(el("p", { class: "muted" }, "no system metrics"));
    if (lastUpdated !== run.updated_ms) {
      const items = [];
      for (const row of hist.rows) for (const [k, v] of Object.entries(row)) if (v && typeof v === "object" && v._type) items.push(mediaView(id, k, v, row._step));
      media.replaceChildren(...(items.length ? items.slice(-24) : [el("p", { class: "muted" }, "no media")]));
      files.replaceChildren(fl.files.length ? el("table", { id: "file-list" }, fl.files.map((f) => el("tr", {},
        el("td", {}, el("a", { href: "#", "data-path": f.path, onclick: async (e) => { e.preventDefault(); const a = el("a", { href: await blobUrl(id, f.path), download: f.path.split("/").pop() }); a.click(); } }, f.path)),
        el("td", { class: "muted" }, `${f.size} bytes`), el("td", { class: "muted" }, f.sha256.slice(0, 12))))) : el("p", { class: "muted" }, "no files"));
      lastUpdated = run.updated_ms;
    }
    return run;
  }
  const run = await refresh();
  state.timer = setInterval(async () => {
    const r = await api(`/api/v1/runs/${id}`).catch(() => null);
    if (r && (r.state === "running" || r.updated_ms !== lastUpdated)) refresh().catch(() => {});
  }, 2000);
  return run;
}

// One chart per numeric key of `rows`, updated in place when they exist already.
function drawRows(grid, rows, time, prefix) {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => !k.startsWith("_") && rows.some((r) => typeof r[k] === "number")).sort();
  const rowsFor = (k) => rows.filter((r) => r[k] !== undefined);
  for (const k of keys) {
    let card = [...grid.children].find((c) => c.dataset.chart === prefix + k);
    if (!card) { card = chartCard(k, prefix + k); grid.append(card); }
    const rs = rowsFor(k);
    const x = rs.map((r) => (time ? r._timestamp : r._step));
    chart(card, k, x, [{ label: k, data: rs.map((r) => num(r[k])) }], { time, xLabel: time ? "time" : "step", id: prefix + k });
  }
}

async function comparePage(ids) {
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "Runs"), el("span", {}, " / compare"));
  const runs = await Promise.all(ids.map((id) => api(`/api/v1/runs/${id}`)));
  const hists = await Promise.all(ids.map((id) => api(`/api/v1/runs/${id}/history`)));
  const keys = [...new Set(hists.flatMap((h) => h.rows.flatMap((r) => Object.keys(r))))].filter((k) => !k.startsWith("_") && hists.some((h) => h.rows.some((r) => typeof r[k] === "number"))).sort();
  const grid = el("div", { class: "grid", id: "compare-charts" });
  $main.replaceChildren(el("div", { class: "card" }, el("h2", {}, `Comparing ${runs.map((r) => r.name || r.id).join(", ")}`), grid));
  for (const k of keys) {
    const steps = [...new Set(hists.flatMap((h) => h.rows.filter((r) => r[k] !== undefined).map((r) => r._step)))].sort((a, b) => a - b);
    const series = hists.map((h, i) => {
      const byStep = new Map(h.rows.filter((r) => r[k] !== undefined).map((r) => [r._step, num(r[k])]));
      return { label: runs[i].name || runs[i].id, data: steps.map((s) => byStep.get(s) ?? null) };
    });
    const card = chartCard(k, `compare:${k}`);
    grid.append(card);
    chart(card, k, steps, series, { id: `compare:${k}` });
  }
}

async function route() {
  clearInterval(state.timer);
  window.tidelogDashboard.charts.clear();
  if (!key()) return login();
  try {
    const who = await api("/api/v1/whoami");
    document.getElementById("account").textContent = who.account;
    document.getElementById("signout").hidden = false;
    const [, page, arg] = location.hash.split("/");
    if (page === "runs" && arg) await runPage(decodeURIComponent(arg));
    else if (page === "compare" && arg) await comparePage(arg.split(",").map(decodeURIComponent));
    else await listPage();
  } catch (e) {
    if (e.message !== "unauthorized") $main.replaceChildren(el("div", { class: "card error" }, String(e.message)));
  }
}

document.getElementById("signout").addEventListener("click", () => { localStorage.removeItem("tidelog.apiKey"); login(); });
window.addEventListener("hashchange", route);
route();
