// caudal console: plain JS over the REST API (/api/v1). No build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("caudal-token") || "", selected: null,
  pipelines: [], source: null, tab: "graph", graphKey: null, graph: null };

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;" }[c]));
}
function human(n) {
  if (n == null) return "-";
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return a >= 10 || n === 0 ? n.toFixed(0) : n.toFixed(1);
}
function bytes(n) {
  if (n == null) return "-";
  for (const [u, s] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) if (n >= s) return (n / s).toFixed(1) + " " + u;
  return n + " B";
}
function utc(us) {
  if (us == null) return "-";
  return new Date(us / 1000).toISOString().replace("T", " ").slice(0, 19);
}
function secs(s) {
  if (s == null) return "-";
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return (s / 60).toFixed(1) + "m";
  return s < 86400 ? (s / 3600).toFixed(1) + "h" : (s / 86400).toFixed(1) + "d";
}

// a number field as typed: "" and "0" reach the server, which says what is wrong with them
// (|| 1 made them a parallelism of 1 the user had not asked for)
function intField(id) { const v = $(id).value.trim(); return v === "" ? null : Number(v); }

async function api(path, opts = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const r = await fetch("/api/v1" + path, { ...opts, headers });
  if (r.status === 401) { showLogin("the token was refused"); throw new Error("unauthorized"); }
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : {};
  if (!r.ok) { const e = new Error(body.error || r.statusText); e.body = body; e.status = r.status; throw e; }
  return body;
}

// ---- login -----------------------------------------------------------------------------
function showLogin(msg) {
  $("app").hidden = true; $("login").hidden = false;
  $("login-error").textContent = msg || "";
}
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.token = $("token").value.trim();
  sessionStorage.setItem("caudal-token", state.token);
  try { await api("/pipelines"); start(); } catch (e) { /* showLogin was called */ }
});
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem("caudal-token"); state.token = ""; location.reload();
});

// ---- pipeline list ---------------------------------------------------------------------
async function refreshList() {
  const { data } = await api("/pipelines");
  state.pipelines = data;
  $("pipelines").innerHTML = data.map((p) =>
    `<li data-id="${p.id}" class="${p.id === state.selected ? "selected" : ""}">
       <span>${esc(p.name)}</span><span class="state ${p.state}">${p.state}</span></li>`).join("")
    || `<li class="muted">none yet</li>`;
  for (const li of $("pipelines").querySelectorAll("li[data-id]"))
    li.addEventListener("click", () => select(li.dataset.id));
}

// ---- editor with inline validation -----------------------------------------------------
let validateTimer = null, validSeq = 0;
function gutter(badLine) {
  const n = Math.max(1, $("sql").value.split("\n").length);
  let out = "";
  for (let i = 1; i <= n; i++) out += (i === badLine ? `<span class="bad">${i}</span>` : i) + "\n";
  $("gutter").innerHTML = out;
}
async function validate() {
  const seq = ++validSeq;
  const query = $("sql").value;
  if (!query.trim()) { $("validation").textContent = "Type SQL: it is checked as you type.";
    $("validation").className = "muted"; $("create").disabled = true; gutter(null); return; }
  try {
    const r = await api("/pipelines/validate", { method: "POST",
      body: JSON.stringify({ query, parallelism: intField("parallelism") }) });
    if (seq !== validSeq) return;
    $("validation").textContent = `valid: ${r.graph.vertices.length} operators`;
    $("validation").className = "ok"; $("create").disabled = false; gutter(null);
  } catch (e) {
    if (seq !== validSeq) return;
    const b = e.body || {};
    $("validation").textContent = (b.line ? `line ${b.line}${b.column ? ", column " + b.column : ""}: ` : "")
      + (b.error || e.message).replace(/^line \d+(, column \d+)?: /, "");
    $("validation").className = "error"; $("create").disabled = true; gutter(b.line || null);
  }
}
$("sql").addEventListener("input", () => { gutter(null); clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 300); });
$("sql").addEventListener("scroll", () => { $("gutter").scrollTop = $("sql").scrollTop; });
$("parallelism").addEventListener("change", validate);
$("create").addEventListener("click", async () => {
  // a validation still due or in flight would overwrite why the create was refused
  clearTimeout(validateTimer); validSeq++;
  try {
    const r = await api("/pipelines", { method: "POST", body: JSON.stringify({
      name: $("name").value, query: $("sql").value, parallelism: intField("parallelism"),
      checkpoint_interval: $("interval").value || "10s", runtime: $("runtime").value,
      address: $("runtime").value === "ray" && $("address").value.trim() || null }) });
    await refreshList(); select(r.id);
  } catch (e) { $("validation").textContent = e.message; $("validation").className = "error"; }
});
$("runtime").addEventListener("change", () => {
  $("address-label").hidden = $("runtime").value !== "ray";
});
$("new-pipeline").addEventListener("click", () => {
  state.selected = null; closePreview(); $("detail").hidden = true; $("editor").hidden = false;
  refreshList();
});

// ---- pipeline detail -------------------------------------------------------------------
function select(id) {
  if (state.selected !== id) {
    closePreview(); state.graph = null; state.graphKey = null; state.previewNode = "";
    state.actionError = null;
  }
  state.selected = id;
  $("editor").hidden = true; $("detail").hidden = false;
  refreshList(); refreshDetail();
  if (state.tab === "preview") openPreview();
}
for (const b of document.querySelectorAll(".tabs button"))
  b.addEventListener("click", () => showTab(b.dataset.tab));
// why the last action on the selected pipeline was refused: shown until the next action or
// another pipeline is selected (the refresh each second would wipe it otherwise)
async function action(path, body) {
  state.actionError = null;
  try { await api(`/pipelines/${state.selected}/${path}`, { method: "POST",
    body: body ? JSON.stringify(body) : undefined }); }
  catch (e) { state.actionError = { id: state.selected, message: e.message }; }
  refreshList(); refreshDetail();
}
$("d-stop").addEventListener("click", () => action("stop"));
$("d-checkpoint").addEventListener("click", () => action("checkpoint"));
$("d-restart").addEventListener("click", () => action("restart"));
$("d-rescale").addEventListener("click", () => action("rescale", { parallelism: intField("d-par") }));
$("d-delete").addEventListener("click", async () => {
  if (!confirm("Delete this pipeline, its checkpoints and logs?")) return;
  try { await api(`/pipelines/${state.selected}`, { method: "DELETE" }); }
  catch (e) { state.actionError = { id: state.selected, message: e.message }; refreshDetail(); return; }
  state.selected = null; $("detail").hidden = true; $("editor").hidden = false; refreshList();
});

async function refreshDetail() {
  const id = state.selected;
  if (!id) return;
  let p;
  try { p = await api(`/pipelines/${id}`); } catch (e) { return; }
  if (id !== state.selected) return;
  $("d-name").textContent = p.name;
  $("d-state").textContent = p.state; $("d-state").className = "state " + p.state;
  $("d-info").textContent = `parallelism ${p.parallelism}`
    + (p.runtime === "ray" ? ` · on Ray${p.address ? " " + p.address : ""}` : "")
    + (p.restarts ? ` · ${p.restarts} restarts` : "")
    + (p.pid ? ` · pid ${p.pid}` : "");
  if (document.activeElement !== $("d-par")) $("d-par").value = p.parallelism;
  const refused = state.actionError?.id === id ? state.actionError.message : "";
  $("d-error").textContent = refused || (p.error && p.state !== "finished" ? p.error : "");
  $("d-stop").disabled = p.state !== "running";
  $("d-checkpoint").disabled = p.state !== "running";
  $("d-restart").disabled = p.state === "running";
  $("d-sql").textContent = p.query;
  if (state.tab === "graph") await drawGraph(p);
  if (state.tab === "checkpoints") await drawCheckpoints(p);
  if (state.tab === "errors") await drawErrors(p);
}

// ---- dataflow graph --------------------------------------------------------------------
function layout(g) {
  const depth = {};
  const ins = (id) => g.edges.filter((e) => e.dst === id).map((e) => e.src);
  const d = (id) => depth[id] ?? (depth[id] = Math.max(-1, ...ins(id).map(d)) + 1);
  g.vertices.forEach((v) => d(v.id));
  const cols = {};
  for (const v of g.vertices) (cols[depth[v.id]] ||= []).push(v);
  const pos = {}, W = 220, H = 92, GX = 70, GY = 26;
  for (const [c, vs] of Object.entries(cols))
    vs.forEach((v, i) => { pos[v.id] = { x: 20 + c * (W + GX), y: 20 + i * (H + GY), w: W, h: H }; });
  const width = 40 + (Object.keys(cols).length) * (W + GX) - GX;
  const height = 40 + Math.max(...Object.values(cols).map((vs) => vs.length)) * (H + GY) - GY;
  return { pos, width, height };
}
function perVertex(metrics) {
  const by = {};
  for (const s of metrics.subtasks || []) {
    const v = (by[s.vertex] ||= { inRate: 0, outRate: 0, rowsIn: 0, bp: 0, n: 0, wm: null,
      wmAll: true, lag: null, state: 0, stateBytes: null, late: 0, subtasks: [] });
    v.inRate += s.rows_in_per_s || 0; v.outRate += s.rows_out_per_s || 0; v.rowsIn += s.rows_in;
    v.bp = Math.max(v.bp, s.backpressure_ratio || 0); v.n++;
    v.state += s.state_rows || 0; v.late += s.late_rows || 0; v.subtasks.push(s);
    if (s.state_bytes != null) v.stateBytes = (v.stateBytes || 0) + s.state_bytes;
    if (s.watermark_us == null) v.wmAll = false;
    else if (v.wm == null || s.watermark_us < v.wm) { v.wm = s.watermark_us; v.lag = s.watermark_lag_s; }
  }
  return by;
}
async function drawGraph(p) {
  const key = p.id + ":" + p.parallelism;
  if (state.graphKey !== key) {
    state.graph = await api(`/pipelines/${p.id}/graph`); state.graphKey = key;
  }
  const g = state.graph;
  const metrics = await api(`/pipelines/${p.id}/metrics`);
  const by = perVertex(metrics);
  const { pos, width, height } = layout(g);
  let svg = `<svg viewBox="0 0 ${width} ${height}" height="${height}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7"
    orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#8a96a8"/></marker></defs>`;
  for (const e of g.edges) {
    const a = pos[e.src], b = pos[e.dst];
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
    svg += `<path class="edge" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`;
    svg += `<text class="edge-label" x="${mx}" y="${(y1 + y2) / 2 - 4}" text-anchor="middle">${esc(e.partitioning)}${e.keys.length ? "(" + esc(e.keys.join(",")) + ")" : ""}</text>`;
  }
  for (const v of g.vertices) {
    const q = pos[v.id], m = by[v.id] || {};
    const label = v.label.length > 30 ? v.label.slice(0, 29) + "…" : v.label;
    svg += `<g class="node${(m.bp || 0) > 0.5 ? " bp" : ""}" data-vertex="${v.id}" transform="translate(${q.x},${q.y})">
      <title>${esc(v.label)}\n${esc(v.operators.join(" → "))}</title>
      <rect width="${q.w}" height="${q.h}"/>
      <text x="10" y="18" font-weight="600">${esc(label)}</text>
      <text class="m" x="10" y="36">×${v.parallelism} · in ${human(m.inRate || 0)}/s · out ${human(m.outRate || 0)}/s</text>
      <text class="m" x="10" y="52">backpressure ${Math.round((m.bp || 0) * 100)}% · state ${human(m.state || 0)} rows${m.stateBytes ? " · " + bytes(m.stateBytes) : ""}</text>
      <text class="m" x="10" y="68">wm ${m.wm != null ? utc(m.wm).slice(11) : "-"} · lag ${secs(m.lag)}</text>
      <text class="m" x="10" y="84">late ${human(m.late || 0)}</text></g>`;
  }
  $("graph").innerHTML = svg + "</svg>";
  $("op-table").querySelector("tbody").innerHTML = g.vertices.map((v) => {
    const m = by[v.id] || {};
    return `<tr data-vertex="${v.id}"><td>${esc(v.label)}</td><td class="rate-in">${human(m.inRate || 0)}</td>
      <td>${human(m.outRate || 0)}</td><td>${human(m.rowsIn || 0)}</td>
      <td>${Math.round((m.bp || 0) * 100)}%</td><td class="wm">${utc(m.wm)}</td><td>${secs(m.lag)}</td>
      <td>${human(m.state || 0)}</td><td>${m.stateBytes != null ? bytes(m.stateBytes) : "-"}</td>
      <td>${human(m.late || 0)}</td></tr>`;
  }).join("");
  // why a window has not fired: the input subtask holding the watermark back
  const sources = (metrics.subtasks || []).filter((s) => s.source && !s.finished);
  let hint = "";
  if (sources.length) {
    const none = sources.filter((s) => s.watermark_us == null);
    const held = none.length ? none[0]
      : sources.reduce((a, b) => (b.watermark_us < a.watermark_us ? b : a));
    hint = none.length
      ? `Watermark held back: ${held.operator} subtask ${held.subtask} has no watermark yet (no rows read, or no event time)`
      : `Watermark held back by ${held.operator} subtask ${held.subtask} at ${utc(held.watermark_us)} UTC`
        + ` (lag ${secs(held.watermark_lag_s)}): windows ending after it have not fired yet.`;
  }
  $("wm-hint").textContent = hint;
}

// ---- checkpoints -----------------------------------------------------------------------
async function drawCheckpoints(p) {
  const { data } = await api(`/pipelines/${p.id}/checkpoints`);
  $("cp-table").querySelector("tbody").innerHTML = data.slice().reverse().map((c) =>
    `<tr><td>${c.epoch}</td><td>${c.time ? new Date(c.time * 1000).toISOString().slice(0, 19).replace("T", " ") : "-"}</td>
     <td>${esc(c.kind || c.damaged)}</td><td>${bytes(c.bytes)}</td>
     <td>${c.duration_s != null ? c.duration_s.toFixed(2) + "s" : "-"}</td><td>${c.parallelism ?? "-"}</td></tr>`).join("");
  const svg = $("cp-timeline");
  const w = svg.clientWidth || 800, h = 120;
  if (!data.length) { svg.innerHTML = `<text x="10" y="60" fill="#6b7585">no checkpoint yet</text>`; return; }
  const t0 = data[0].time, t1 = Math.max(data[data.length - 1].time, t0 + 1);
  const maxB = Math.max(...data.map((c) => c.bytes || 0), 1);
  svg.innerHTML = data.map((c) => {
    const x = 20 + ((c.time - t0) / (t1 - t0)) * (w - 40);
    const bh = 8 + ((c.bytes || 0) / maxB) * 70;
    const color = c.kind === "savepoint" ? "#bf8700" : c.kind === "final" ? "#0969da" : "#1a7f37";
    return `<g><title>epoch ${c.epoch} · ${c.kind} · ${bytes(c.bytes)}</title>
      <rect x="${x - 4}" y="${95 - bh}" width="8" height="${bh}" fill="${color}" rx="2"/>
      <text x="${x}" y="110" font-size="10" text-anchor="middle" fill="#6b7585">${c.epoch}</text></g>`;
  }).join("") + `<line x1="10" x2="${w - 10}" y1="96" y2="96" stroke="#dde1e7"/>`;
}

// ---- errors, logs, preview -------------------------------------------------------------
async function drawErrors(p) {
  const [{ events }, { lines }] = await Promise.all([
    api(`/pipelines/${p.id}/errors`), api(`/pipelines/${p.id}/logs?tail=200`)]);
  $("events").innerHTML = events.slice().reverse().map((e) =>
    `<li class="k-${e.kind}"><span class="muted">${new Date(e.time * 1000).toISOString().slice(11, 19)}</span>
     <b>${esc(e.kind)}</b> ${esc(e.message)}</li>`).join("");
  $("logs").textContent = lines.join("\n");
}
// the live preview: what the pipeline prints, or the rows of one node of its graph
const PREVIEW_ROWS = 200;
function openPreview() {
  closePreview();
  if (!state.selected) return;
  fillPreviewNodes();
  const node = state.previewNode ?? "";
  $("preview-node").value = node;
  const params = new URLSearchParams();
  if (state.token) params.set("token", state.token);
  if (node !== "") params.set("node", node);
  $("preview").hidden = node !== ""; $("preview-rows").hidden = node === "";
  $("preview").textContent = "";
  $("preview-table").querySelector("thead").innerHTML = "";
  $("preview-table").querySelector("tbody").innerHTML = "";
  $("preview-dropped").textContent = "";
  const url = `/api/v1/pipelines/${state.selected}/preview?${params}`;
  const es = new EventSource(url);
  state.source = es;
  if (node === "") {
    $("preview-note").textContent = "Rows the pipeline prints (its SELECT statements), live.";
    const lines = [];
    es.onmessage = (ev) => {
      lines.push(ev.data);
      if (lines.length > 500) lines.splice(0, lines.length - 500);
      $("preview").textContent = lines.join("\n");
      $("preview").scrollTop = $("preview").scrollHeight;
    };
    return;
  }
  let rows = [], columns = null, shown = 0, dropped = 0;
  es.addEventListener("node", (ev) => {
    const d = JSON.parse(ev.data);
    const v = (state.graph?.vertices || []).find((x) => x.id === d.node);
    $("preview-note").textContent = `Rows ${d.name} ${v?.sink ? "writes to " + v.sink : "emits"}, newest first.`;
  });
  es.addEventListener("status", (ev) => { $("preview-dropped").textContent = JSON.parse(ev.data).waiting; });
  es.addEventListener("rows", (ev) => {
    const d = JSON.parse(ev.data);
    shown += d.rows.length; dropped += d.dropped;
    if (!columns && d.rows.length) {
      columns = Object.keys(d.rows[0]);
      $("preview-table").querySelector("thead").innerHTML =
        "<tr>" + columns.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr>";
    }
    rows = d.rows.slice().reverse().concat(rows).slice(0, PREVIEW_ROWS);
    $("preview-table").querySelector("tbody").innerHTML = rows.map((r) =>
      "<tr>" + (columns || []).map((c) => `<td>${esc(r[c] === null ? "NULL" : r[c])}</td>`).join("") + "</tr>").join("");
    $("preview-dropped").textContent = `${human(shown)} rows shown` + (dropped
      ? `, ${human(dropped)} not shown: the node emits more than the preview keeps (500 rows each half second) or this page fell behind; the pipeline is never slowed by it.` : ".");
  });
  const stop = (ev) => {
    if (ev.data) $("preview-dropped").textContent = JSON.parse(ev.data).error || JSON.parse(ev.data).reason || "";
    es.close();
  };
  es.addEventListener("error", (ev) => {
    if (ev.data) { stop(ev); return; }
    // refused before the stream began (409: not running, 404: no such node): EventSource
    // only closes, so ask again with fetch for the server's one line
    if (es.readyState === EventSource.CLOSED && state.source === es) refusedBecause(url);
  });
  es.addEventListener("end", stop);
}
async function refusedBecause(url) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  try {
    const r = await fetch(url, { headers });
    if (r.ok) { r.body?.cancel(); return; }
    const body = r.headers.get("content-type")?.includes("json") ? await r.json() : {};
    $("preview-dropped").textContent = body.error || r.statusText;
  } catch (e) { $("preview-dropped").textContent = "the server is unreachable"; }
}
function closePreview() { if (state.source) { state.source.close(); state.source = null; } }
function fillPreviewNodes() {
  const sel = $("preview-node"), g = state.graph;
  if (!g && state.selected) {  // the preview opened before the graph tab loaded the graph
    const id = state.selected;
    api(`/pipelines/${id}/graph`).then((graph) => {
      if (id === state.selected && !state.graph) { state.graph = graph; fillPreviewNodes(); }
    }).catch(() => {});
  }
  const want = [""].concat(g ? g.vertices.map((v) => String(v.id)) : []);
  const have = [...sel.options].map((o) => o.value);
  if (want.join() === have.join()) return;
  sel.innerHTML = `<option value="">printed output (SELECTs)</option>` + (g ? g.vertices.map((v) =>
    `<option value="${v.id}">node ${esc(v.label)}</option>`).join("") : "");
}
$("preview-node").addEventListener("change", () => {
  state.previewNode = $("preview-node").value; openPreview();
});
function showTab(tab) {
  state.tab = tab;
  for (const x of document.querySelectorAll(".tabs button")) x.classList.toggle("active", x.dataset.tab === tab);
  for (const t of document.querySelectorAll(".tab")) t.hidden = t.id !== "tab-" + tab;
  if (tab === "preview") openPreview(); else closePreview();
  refreshDetail();
}
$("graph").addEventListener("click", (ev) => {
  const node = ev.target.closest("g.node");
  if (!node) return;
  state.previewNode = node.dataset.vertex;
  showTab("preview");
});

// ---- start -----------------------------------------------------------------------------
let timer = null;
async function start() {
  $("login").hidden = true; $("app").hidden = false;
  $("logout").hidden = !state.token;
  await refreshList(); gutter(null);
  clearInterval(timer);
  timer = setInterval(async () => {
    try { await refreshList(); await refreshDetail(); $("server-status").textContent = "connected"; }
    catch (e) { $("server-status").textContent = "server unreachable"; }
  }, 1000);
}
(async function boot() {
  const health = await (await fetch("/api/v1/health")).json();
  if (health.auth && !state.token) { showLogin(); return; }
  try { await api("/pipelines"); start(); } catch (e) { /* login shown */ }
})();
