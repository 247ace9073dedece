// vramplan web page: every view is drawn from a JSON endpoint under /api/.
"use strict";

const COLORS = {
  weights: "#2f6fdf", master_weights: "#6f9cf0", gradients: "#e08a1e", optimizer: "#c23a2b",
  adapters: "#8e5bd6", activations: "#1f8a4c", logits: "#52b788", kv_cache: "#0f9bb5",
  buffers: "#b08a3e", overhead: "#7b8494",
};
const $ = (sel) => document.querySelector(sel);
let tab = "infer";
let lastResult = null;

function units() { return $("#units").value; }

function formatBytes(bytes) {
  const binary = units() === "GiB";
  const steps = binary
    ? [["TiB", 1024 ** 4], ["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]]
    : [["TB", 1e12], ["GB", 1e9], ["MB", 1e6], ["KB", 1e3]];
  const sign = bytes < 0 ? "-" : "";
  const m = Math.abs(bytes);
  for (const [label, size] of steps) if (m >= size) return `${sign}${(m / size).toFixed(2)} ${label}`;
  return `${sign}${m} B`;
}

function esc(text) {
  return String(text ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

function queryFor(command) {
  const params = new URLSearchParams();
  const fields = document.querySelectorAll(`fieldset.common [name], fieldset[data-for="${command}"] [name]`);
  for (const el of fields) {
    if (command === "params" && el.name !== "model") continue;
    if (el.type === "checkbox") { if (el.checked) params.set(el.name, "true"); continue; }
    if (el.value !== "") params.set(el.name, el.value);
  }
  if (command === "plan") {
    params.set(params.get("job") === "infer" ? "infer" : "train", "true");
    params.delete("job");
  }
  return params;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok || body.ok === false) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function clearResult() {
  for (const id of ["#verdict", "#bar", "#components", "#curves", "#messages", "#json-link"]) $(id).innerHTML = "";
}

function drawVerdict(result) {
  const v = result.verdict;
  const total = `${formatBytes(result.total_bytes)} per GPU at the peak (${esc(result.phase)})`;
  if (!v) { $("#verdict").innerHTML = `<div class="verdict">${total}</div>`; return; }
  const cls = v.fits ? "fits" : "nofit";
  const head = v.fits
    ? `Fits on ${esc(v.gpu)}: ${formatBytes(v.headroom_bytes)} headroom`
    : `Does not fit on ${esc(v.gpu)}: ${formatBytes(-v.headroom_bytes)} over`;
  $("#verdict").innerHTML = `<div class="verdict ${cls}">${head}<small>${total} of ${formatBytes(v.capacity_bytes)}
    (${(100 * v.utilization).toFixed(1)}%)</small></div>`;
}

function drawBar(result) {
  const cats = Object.entries(result.by_category || {}).filter(([, b]) => b > 0);
  const capacity = result.verdict ? result.verdict.capacity_bytes : 0;
  const scale = Math.max(result.total_bytes, capacity) || 1;
  const width = 720, height = 54;
  let x = 0;
  let rects = "";
  for (const [cat, bytes] of cats) {
    const w = (bytes / scale) * width;
    rects += `<rect x="${x}" y="8" width="${Math.max(w, 0.5)}" height="26" fill="${COLORS[cat] || "#999"}">
      <title>${esc(cat)}: ${formatBytes(bytes)}</title></rect>`;
    x += w;
  }
  if (capacity) {
    const cx = (capacity / scale) * width;
    rects += `<line x1="${cx}" x2="${cx}" y1="2" y2="40" stroke="#1d2430" stroke-width="2" stroke-dasharray="4 3"/>
      <text x="${Math.min(cx + 4, width - 90)}" y="52">GPU capacity</text>`;
  }
  const legend = cats.map(([cat, bytes]) =>
    `<span><span class="swatch" style="background:${COLORS[cat] || "#999"}"></span>${esc(cat)} ${formatBytes(bytes)}</span>`).join(" &nbsp; ");
  $("#bar").innerHTML = `<svg id="stack" viewBox="0 0 ${width} ${height}" width="100%" role="img"
    aria-label="memory by category">${rects}</svg><div>${legend}</div>`;
}

function drawComponents(result) {
  const rows = (result.components || []).map((c) => `<tr><td><span class="swatch"
      style="background:${COLORS[c.category] || "#999"}"></span>${esc(c.name)}</td>
      <td class="num">${formatBytes(c.bytes)}</td><td class="note">${esc(c.note)}</td></tr>`).join("");
  const host = (result.host_components || []).map((c) => `<tr><td>host: ${esc(c.name)}</td>
      <td class="num">${formatBytes(c.bytes)}</td><td class="note">${esc(c.note)}</td></tr>`).join("");
  $("#components").innerHTML = `<thead><tr><th>component</th><th class="num">per GPU</th><th>where it comes from</th></tr></thead>
    <tbody>${rows}${host}<tr><th>total</th><th class="num">${formatBytes(result.total_bytes)}</th><th></th></tr></tbody>`;
}

function drawMessages(result) {
  const items = [...(result.warnings || []).map((w) => `warning: ${w}`), ...(result.assumptions || [])];
  const details = Object.entries(result.details || {}).map(([k, v]) =>
    `${k}: ${v === null ? "n/a" : /_per_param$/.test(k) ? `${v} B/param` : typeof v === "number" && /bytes/.test(k) ? formatBytes(v) : v}`);
  $("#messages").innerHTML = [...items, ...details].map((m) => `<li>${esc(m)}</li>`).join("");
}

function lineChart(points, label, capacity) {
  const width = 420, height = 220, pad = 46, right = 24;
  const xs = points.map((p) => Number(p.value));
  const ys = points.map((p) => p.total_bytes);
  const maxY = Math.max(...ys, capacity || 0) * 1.05 || 1;
  const minX = Math.min(...xs), maxX = Math.max(...xs);
  const px = (x) => pad + ((Math.log2(x) - Math.log2(minX)) / (Math.log2(maxX) - Math.log2(minX) || 1)) * (width - pad - right);
  const py = (y) => height - 28 - (y / maxY) * (height - 40);
  const path = points.map((p, i) => `${i ? "L" : "M"}${px(Number(p.value)).toFixed(1)},${py(p.total_bytes).toFixed(1)}`).join(" ");
  const dots = points.map((p) => `<circle cx="${px(Number(p.value))}" cy="${py(p.total_bytes)}" r="3" fill="#2f6fdf">
    <title>${esc(label)} ${p.value}: ${formatBytes(p.total_bytes)}</title></circle>`).join("");
  const xt = points.map((p) => `<text x="${px(Number(p.value))}" y="${height - 10}" text-anchor="middle">${p.value}</text>`).join("");
  const cap = capacity ? `<line x1="${pad}" x2="${width - 10}" y1="${py(capacity)}" y2="${py(capacity)}" stroke="#c23a2b"
      stroke-dasharray="5 4"/><text x="${width - 12}" y="${py(capacity) - 4}" text-anchor="end">GPU ${formatBytes(capacity)}</text>` : "";
  return `<svg viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="memory against ${esc(label)}">
    <text x="4" y="14">${formatBytes(maxY)}</text><text x="4" y="${height - 28}">0</text><line x1="${pad}" x2="${pad}" y1="10" y2="${height - 28}" stroke="#d9dee7"/>
    <line x1="${pad}" x2="${width - 10}" y1="${height - 28}" y2="${height - 28}" stroke="#d9dee7"/>
    ${cap}<path d="${path}" fill="none" stroke="#2f6fdf" stroke-width="2"/>${dots}${xt}</svg>`;
}

async function drawCurves(command, result) {
  const capacity = result.verdict ? result.verdict.capacity_bytes : 0;
  const lengthKey = command === "infer" ? "context" : "seq";
  const sweeps = [["batch", [1, 2, 4, 8, 16, 32, 64]], [lengthKey, [512, 1024, 2048, 4096, 8192, 16384, 32768]]];
  const figures = [];
  for (const [vary, values] of sweeps) {
    const q = queryFor(command);
    q.delete(vary);
    q.set("command", command); q.set("vary", vary); q.set("values", values.join(","));
    try {
      const data = await getJSON(`/api/sweep?${q}`);
      figures.push(`<figure><figcaption>Memory per GPU against ${vary}</figcaption>${lineChart(data.points, vary, capacity)}</figure>`);
    } catch (err) {
      figures.push(`<figure><figcaption>${esc(vary)}: ${esc(err.message)}</figcaption></figure>`);
    }
  }
  $("#curves").innerHTML = figures.join("");
}

function drawGenericTable(rows, title) {
  if (!rows.length) return "";
  const keys = Object.keys(rows[0]).filter((k) => typeof rows[0][k] !== "object" || rows[0][k] === null);
  const head = keys.map((k) => `<th>${esc(k)}</th>`).join("");
  const body = rows.map((r) => `<tr>${keys.map((k) => {
    const v = r[k];
    const shown = typeof v === "number" && /bytes/.test(k) ? formatBytes(v) : typeof v === "number" ? v.toLocaleString() : v;
    return `<td>${esc(shown)}</td>`;
  }).join("")}</tr>`).join("");
  return `<caption>${esc(title)}</caption><thead><tr>${head}</tr></thead><tbody>${body}</tbody>`;
}

function planRow(c) {
  // Training candidates nest their layout; inference candidates are flat.
  if (c.layout) {
    return { layout: c.describe, gpus: c.layout.num_gpus, engine: c.layout.engine, micro_batch: c.micro_batch_size,
      recompute: c.recompute, peak_bytes: c.peak_bytes, host_bytes_per_node: c.host_bytes_per_node,
      step_s: Number(c.step_s.toFixed(2)), tokens_per_s: Math.round(c.tokens_per_s) };
  }
  const row = {};
  for (const [k, v] of Object.entries(c)) row[k] = typeof v === "number" && !Number.isInteger(v) ? Number(v.toFixed(2)) : v;
  return row;
}

function drawPlan(result) {
  const rows = (result.candidates || []).map(planRow);
  const head = rows.length
    ? `Fits from ${result.min_gpus} x ${esc(result.gpu)}; ${rows.length} best layouts below`
    : `Nothing fits on up to ${Math.max(...(result.gpu_counts || [0]))} x ${esc(result.gpu)}`;
  $("#verdict").innerHTML = `<div class="verdict ${rows.length ? "fits" : "nofit"}">${head}
    <small>${Number(result.evaluated || 0).toLocaleString()} layouts evaluated</small></div>`;
  $("#components").innerHTML = drawGenericTable(rows, "layouts that fit, best first");
  const changes = (result.changes || []).map((c) => `${c.change}: needs ${formatBytes(c.min_peak_bytes)} per GPU`
    + (c.fits ? ` (fits on ${c.min_gpus} GPUs)` : " (still does not fit)"));
  $("#messages").innerHTML = [...changes, ...(result.assumptions || [])].map((m) => `<li>${esc(m)}</li>`).join("");
}

function drawParams(result) {
  $("#verdict").innerHTML = `<div class="verdict">${Number(result.total_params).toLocaleString()} parameters
    <small>${Number(result.active_params).toLocaleString()} active per token</small></div>`;
  $("#components").innerHTML = drawGenericTable(result.components, result.model);
}

async function run(event) {
  if (event) event.preventDefault();
  showError("");
  clearResult();
  const command = tab;
  const query = queryFor(command);
  const url = `/api/${command}?${query}`;
  try {
    const result = await getJSON(url);
    lastResult = result;
    $("#json-link").innerHTML = `<a href="${url}">this result as JSON</a>`;
    if (command === "params") return drawParams(result);
    if (command === "plan") return drawPlan(result);
    drawVerdict(result); drawBar(result); drawComponents(result); drawMessages(result);
    await drawCurves(command, result);
  } catch (err) {
    showError(err.message);
  }
}

function switchTab(name) {
  tab = name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const fs of document.querySelectorAll("fieldset[data-for]")) fs.hidden = fs.dataset.for !== name;
  for (const el of document.querySelectorAll(".not-params")) el.hidden = name === "params";
  $("#go").textContent = name === "plan" ? "Plan" : name === "params" ? "Count" : "Estimate";
}

async function fillLists() {
  try {
    const models = await getJSON("/api/models");
    $("#models").innerHTML = models.models.map((m) => `<option value="${esc(m.slug)}">${esc(m.name)}</option>`).join("");
  } catch (err) { /* the form still works with typed names */ }
  try {
    const gpus = await getJSON("/api/gpus");
    const list = gpus.gpus || [];
    $("#gpus").innerHTML = list.map((g) => `<option value="${esc(g.slug)}">${esc(g.name)}</option>`).join("");
  } catch (err) { /* idem */ }
}

document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => switchTab(b.dataset.tab)));
$("#form").addEventListener("submit", run);
$("#units").addEventListener("change", () => { if (lastResult) run(); });
fillLists();
