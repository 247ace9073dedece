// vramplan web page: every view is drawn from a JSON endpoint under /api/.
// The form is the state: every input is mirrored in the URL, results follow the
// inputs ~150 ms after they change, and only the newest answer is ever shown.
"use strict";

// Okabe & Ito's colour-blind-safe palette (plus two greys), one colour per category.
const COLORS = {
  weights: "#0072B2", master_weights: "#56B4E9", gradients: "#E69F00", optimizer: "#D55E00",
  adapters: "#CC79A7", activations: "#009E73", logits: "#F0E442", kv_cache: "#7FC8A9",
  buffers: "#8C6D31", overhead: "#777777",
};
const LINE = "#0072B2", CAP = "#D55E00", MARK = "#000000";
const DEBOUNCE_MS = { text: 40, select: 0 };
const CHARTS_AFTER_MS = 200;  // charts and limits wait for the inputs to rest
const SWEEP_CHUNK = 2;
const TABS = ["infer", "train", "plan", "params"];
const PAGE_KEYS = ["tab", "lang", "units"];
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

const state = { tab: "infer", lang: "en", result: null, command: null, query: null };
const catalog = { models: new Map(), gpus: new Map() };
let runSeq = 0, runController = null, curveSeq = 0, curveController = null;
let debounceTimer = null, curveTimer = null, statusTimer = null;

// ------------------------------------------------------------------ words and numbers

function t(key, vars = {}) {
  const table = I18N[state.lang] || I18N.en;
  const text = table[key] ?? I18N.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? ""));
}

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function units() { return $("#units").value; }

function unitScale() {
  return units() === "GiB"
    ? [["TiB", 1024 ** 4], ["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]]
    : [["TB", 1e12], ["GB", 1e9], ["MB", 1e6], ["KB", 1e3]];
}

function formatBytes(bytes) {
  const sign = bytes < 0 ? "-" : "";
  const m = Math.abs(bytes);
  for (const [label, size] of unitScale()) if (m >= size) return `${sign}${(m / size).toFixed(2)} ${label}`;
  return `${sign}${m} B`;
}

function formatCount(n) {
  const v = Number(n);
  if (!Number.isFinite(v)) return String(n);
  if (state.lang === "zh") {
    if (v >= 1e8) return `${(v / 1e8).toFixed(2)} 亿`;
    if (v >= 1e4) return `${(v / 1e4).toFixed(1)} 万`;
    return v.toLocaleString("zh-CN");
  }
  for (const [s, d] of [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]]) if (v >= d) return `${(v / d).toFixed(v >= 10 * d ? 1 : 2)}${s}`;
  return v.toLocaleString("en");
}

function formatTokens(n) {
  const v = Number(n);
  if (v >= 1024 && v % 1024 === 0) return `${v / 1024}K`;
  return v.toLocaleString("en");
}

function phaseName(p) {
  const base = String(p || "").split(" ")[0];
  const key = `phase_${base}`;
  const word = I18N.en[key] ? t(key) : base;
  return String(p || "").replace(base, word);
}

function plural(n) { return Number(n) === 1 ? "" : "s"; }

function catName(c) { return I18N.en[`cat_${c}`] ? t(`cat_${c}`) : c; }

// ------------------------------------------------------------------ the form and the URL

function fieldsFor(command) {
  const common = $$("fieldset.common [name]");
  if (command === "params") return common.filter((el) => el.name === "model");
  return [...common, ...$$("[name]", $(`fieldset[data-for="${command}"]`))];
}

// A field inside a group that does not apply (another engine's, the other job's,
// LoRA rank under full training) is not sent.
function inactive(el) { return !!el.closest(".engine-only[hidden], [data-job][hidden], [data-when][hidden]"); }

function defaultOf(el) { return el.type === "checkbox" ? el.defaultChecked : (el.tagName === "SELECT" ? selectDefault(el) : el.defaultValue); }
function selectDefault(sel) { const o = [...sel.options].find((x) => x.defaultSelected) || sel.options[0]; return o ? o.value : ""; }
function valueOf(el) { return el.type === "checkbox" ? el.checked : el.value.trim(); }

function queryFor(command) {
  const params = new URLSearchParams();
  for (const el of fieldsFor(command)) {
    if (inactive(el)) continue;
    if (el.type === "checkbox") { if (el.checked) params.set(el.name, "true"); continue; }
    const v = el.value.trim();
    if (v !== "") params.set(el.name, v);
  }
  if (command === "plan") {
    if (params.get("gpus")) params.delete("max-gpus");  // an exact count replaces the search
    const job = params.get("job") || "train";
    params.delete("job");
    params.set(job, "true");
  }
  return params;
}

function writeURL() {
  const params = new URLSearchParams();
  params.set("tab", state.tab);
  for (const el of fieldsFor(state.tab)) {
    if (inactive(el)) continue;
    // A value is left out when it is the page's default and the command line's too;
    // data-always marks the few defaults the page chooses differently (max GPUs).
    const v = valueOf(el), d = defaultOf(el);
    const always = el.name === "model" || el.name === "gpu" || "always" in el.dataset;
    if (v !== d || (always && v !== "")) params.set(el.name, el.type === "checkbox" ? String(v) : v);
  }
  if (units() !== "GiB") params.set("units", units());
  if (state.lang !== "en") params.set("lang", state.lang);
  const url = `${location.pathname}?${params}`;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

function readURL() {
  const params = new URLSearchParams(location.search);
  const tab = params.get("tab");
  if (TABS.includes(tab)) selectTab(tab, false);
  if (params.get("units") === "GB" || params.get("units") === "GiB") $("#units").value = params.get("units");
  if (params.get("lang") === "zh" || params.get("lang") === "en") state.lang = params.get("lang");
  const fields = fieldsFor(state.tab);
  for (const [key, value] of params) {
    if (PAGE_KEYS.includes(key)) continue;
    for (const el of fields.filter((f) => f.name === key)) {
      if (el.type === "checkbox") el.checked = value === "true";
      else el.value = value;
      const more = el.closest("details.more");
      if (more) more.open = true;  // a shared setting is never hidden
    }
  }
  syncVisibility();
}

function syncVisibility() {
  const engine = $("[name=engine]", $('fieldset[data-for="infer"]')).value;
  for (const box of $$(".engine-only")) box.hidden = box.dataset.engine !== engine;
  const job = $("[name=job]").value;
  for (const box of $$("[data-job]")) box.hidden = box.dataset.job !== job;
  // data-when="name=a,b": shown while the field `name` of the same tab is a or b
  for (const fs of $$("fieldset[data-for]")) {
    for (const box of $$("[data-when]", fs)) {
      const [name, values] = box.dataset.when.split("=");
      const field = $(`[name="${name}"]`, fs);
      box.hidden = !!field && !values.split(",").includes(field.value);
    }
  }
  for (const el of $$(".not-params")) el.hidden = state.tab === "params";
}

// ------------------------------------------------------------------ requests in order

async function getJSON(url, signal) {
  let response;
  try {
    response = await fetch(url, { signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error(t("network_error", { m: err.message }));
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || body.ok === false) {
    const e = new Error(body.error ? body.error.message : response.statusText);
    e.status = response.status;
    throw e;
  }
  return body;
}

function schedule(delay) {
  clearTimeout(debounceTimer);
  markStale();
  writeURL();
  debounceTimer = setTimeout(run, delay);
}

function markStale() {
  $("#result").classList.add("stale");
  $("#result").setAttribute("aria-busy", "true");
}

function showStatus(command) {
  clearInterval(statusTimer);
  const box = $("#status");
  const started = performance.now();
  const tick = () => {
    const s = ((performance.now() - started) / 1000).toFixed(1);
    box.textContent = command === "plan" ? t("planning", { s }) : t("loading");
  };
  tick();
  box.hidden = false;
  statusTimer = setInterval(tick, 250);
}

function hideStatus() { clearInterval(statusTimer); $("#status").hidden = true; }

async function run() {
  clearTimeout(debounceTimer);
  const my = ++runSeq;
  if (runController) runController.abort();
  if (curveController) curveController.abort();
  clearTimeout(curveTimer);
  runController = new AbortController();
  const command = state.tab;
  const query = queryFor(command);
  markStale();
  showStatus(command);
  try {
    if (command === "plan" && query.get("infer") && !query.get("weights")) {
      const own = await checkpointFormat(query.get("model"), runController.signal);
      if (own) query.set("weights", own);
    }
    const url = `/api/${command}?${query}`;
    let result;
    try {
      result = await getJSON(url, runController.signal);
    } catch (err) {
      if (err.status === 400 && await repostPasted(query.get("model"), err)) result = await getJSON(url, runController.signal);
      else throw err;
    }
    if (my !== runSeq) return;
    state.result = result; state.command = command; state.query = query;
    showError("");
    render();
    $("#json-link").innerHTML = `<a href="${esc(url)}">${esc(t("json"))}</a>`;
    if (command === "infer" || command === "train") curveTimer = setTimeout(() => drawExtras(command, query, result, my), CHARTS_AFTER_MS);
  } catch (err) {
    if (err.name === "AbortError" || my !== runSeq) return;
    state.result = null;
    clearResult();
    showError(err.message);
  } finally {
    if (my === runSeq) {
      hideStatus();
      $("#result").classList.remove("stale");
      $("#result").removeAttribute("aria-busy");
      updatePeek();
    }
  }
}

// The plan's serving weights default to the checkpoint's own format (fp8 for
// DeepSeek-V3, mxfp4 for gpt-oss), as the Serve tab's do: ask the infer endpoint once.
const ownFormats = new Map();
async function checkpointFormat(model, signal) {
  if (!model) return null;
  if (!ownFormats.has(model)) {
    try {
      const r = await getJSON(`/api/infer?${new URLSearchParams({ model, context: "1" })}`, signal);
      ownFormats.set(model, r.details && r.details.weights_format);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      return null;
    }
  }
  return ownFormats.get(model);
}

// The server's most common errors in Chinese; others are shown as they come.
const ERROR_WORDS = [
  [/^unknown (model|GPU|weight format|optimizer|dtype|precision|method) '([^']*)'(?:; did you mean (.+?)\?)?/, (m) =>
    t("err_unknown", { kind: t(`kind_${m[1].replace(" ", "_")}`), name: m[2] })
    + (m[3] ? t("err_did_you_mean", { names: m[3].replace(/ or /g, t("or")) }) : "")],
  [/^Invalid value for '([^']+)': (.+) is not in the range (.+)$/, (m) => t("err_range", { flag: m[1], value: m[2], range: m[3] })],
  [/^No such option '([^']+)'/, (m) => t("err_option", { flag: m[1] })],
];

function errorText(message) {
  if (state.lang !== "zh") return message;
  for (const [re, f] of ERROR_WORDS) {
    const m = re.exec(message);
    if (m) return f(m);
  }
  return message;
}

function showError(message) {
  state.error = message;
  const box = $("#error");
  box.innerHTML = message ? `<strong>${esc(t("error"))}:</strong> ${esc(errorText(message))}` : "";
  box.title = message || "";
  box.hidden = !message;
}

function clearResult() {
  for (const id of ["#verdict", "#limits", "#bar", "#actions", "#components", "#timeline", "#curves", "#notes", "#json-link"]) $(id).innerHTML = "";
  $("#glossary").hidden = true;
}

// ------------------------------------------------------------------ rendering

function render() {
  const link = $("#json-link").innerHTML;
  clearResult();
  const r = state.result;
  if (r) $("#json-link").innerHTML = link;
  if (!r) return;
  if (state.command === "params") return drawParams(r);
  if (state.command === "plan") return drawPlan(r);
  drawVerdict(r); drawLimits(r); drawBar(r); drawChanges(r); drawComponents(r); drawTimeline(r); drawNotes(r);
  $("#glossary").hidden = false;
  drawGlossary();
  if (state.curves && state.curves.seq === runSeq) drawCurves(state.curves.data);
}

function drawVerdict(r) {
  const v = r.verdict;
  const total = t("per_gpu_peak", { total: formatBytes(r.total_bytes), phase: phaseName(r.phase) });
  const gpus = r.num_gpus > 1 ? ` · ${t("num_gpus", { n: r.num_gpus, s: plural(r.num_gpus) })}` : "";
  const host = r.host_bytes ? ` · ${t("host_ram_needed", { bytes: formatBytes(r.host_bytes) })}` : "";
  if (!v) {
    $("#verdict").innerHTML = `<div class="verdict"><span class="head">${esc(total)}</span><small>${esc(t("no_gpu") + gpus + host)}</small></div>`;
    return;
  }
  const head = v.fits ? t("fits", { gpu: v.gpu, headroom: formatBytes(v.headroom_bytes) })
    : t("nofit", { gpu: v.gpu, over: formatBytes(-v.headroom_bytes) });
  // the fit rule: required = peak + the overheads beside it + the reserve kept free
  const overheads = (v.overheads || []).map((c) => `${c.name.replace(/^overhead\//, "").replace(/_/g, " ")} ${formatBytes(c.bytes)}`).join(", ");
  const extra = v.overhead_bytes ? ` · ${t("overheads", { bytes: formatBytes(v.overhead_bytes), terms: overheads })}` : "";
  const detail = t("of_capacity", { total: formatBytes(v.required_bytes), capacity: formatBytes(v.capacity_bytes), pct: (100 * v.utilization).toFixed(1) });
  const reserve = extra + (v.reserve_bytes ? ` · ${t("reserve", { reserve: formatBytes(v.reserve_bytes) })}` : "");
  $("#verdict").innerHTML = `<div class="verdict ${v.fits ? "fits" : "nofit"}"><span class="mark" aria-hidden="true">${v.fits ? "✓" : "✗"}</span><span class="head">${esc(head)}</span>
    <small>${esc(total)} · ${esc(detail + reserve + gpus + host)}</small></div>`;
}

function limitCard(label, value, unit, apply) {
  const button = apply ? `<button type="button" class="apply" data-set='${esc(JSON.stringify(apply))}'>${esc(t("apply"))}</button>` : "";
  return `<div class="limit"><span class="label">${esc(label)}</span><span class="value">${esc(value)} <small>${esc(unit)}</small></span>${button}</div>`;
}

function drawLimits(r) {
  const cards = [];
  if (r.fits && state.command === "train") {
    const f = r.fits;
    if (f.largest_micro_batch != null) cards.push(f.largest_micro_batch > 0
      ? limitCard(t("largest_mb"), f.largest_micro_batch, t("sequences"), { batch: f.largest_micro_batch })
      : limitCard(t("largest_mb"), t("none_fits"), "", null));
    if (f.largest_seq != null) cards.push(f.largest_seq > 0
      ? limitCard(t("largest_seq"), Number(f.largest_seq).toLocaleString("en"), t("tokens"), { seq: f.largest_seq })
      : limitCard(t("largest_seq"), t("none_fits"), "", null));
  }
  if (state.command === "infer" && r.details && r.details.max_concurrent_sequences != null) {
    cards.push(limitCard(t("vllm_conc"), r.details.max_concurrent_sequences,
      t("vllm_pool", { pool: Number(r.details.kv_pool_tokens).toLocaleString("en") })));
  }
  cards.push('<span id="solved"></span><span id="fewest"></span>');
  const plan = (state.command === "train" || state.command === "infer")
    ? `<button type="button" id="plan-this" class="secondary">${esc(t("plan_this"))}</button>` : "";
  $("#limits").innerHTML = `<div class="limits">${cards.join("")}</div>${plan}`;
  if (state.solved && state.solved.seq === runSeq) drawSolved(state.solved.data);
  if (state.fewest && state.fewest.seq === runSeq) drawFewest(state.fewest.data);
}

function drawSolved(solved) {
  const box = $("#solved");
  if (!box) return;
  const cards = [];
  // zero: not even one token or sequence fits; nothing to apply
  const card = (label, v, unit, set) => (v > 0 ? limitCard(label, Number(v).toLocaleString("en"), unit, set)
    : limitCard(label, t("none_fits"), "", null));
  if (solved.max_context != null) cards.push(card(t("max_context"), solved.max_context, t("tokens"), { context: solved.max_context }));
  if (solved.max_batch != null) cards.push(card(t("max_batch"), solved.max_batch, t("sequences"), { batch: solved.max_batch }));
  box.outerHTML = cards.join("") || '<span id="solved"></span>';
}

function drawBar(r) {
  const cats = Object.entries(r.by_category || {}).filter(([, b]) => b > 0);
  const capacity = r.verdict ? r.verdict.capacity_bytes : 0;
  const scale = Math.max(r.total_bytes, capacity) || 1;
  const width = chartWidth($("#bar"), 1), height = 44;
  let x = 0, rects = "";
  for (const [cat, bytes] of cats) {
    const w = (bytes / scale) * width;
    rects += `<rect x="${x.toFixed(1)}" y="8" width="${Math.max(w, 0.8).toFixed(1)}" height="28" fill="${COLORS[cat] || "#999"}" stroke="#fff" stroke-width="1"
      data-tip="${esc(`${catName(cat)}: ${formatBytes(bytes)}`)}"><title>${esc(catName(cat))}: ${formatBytes(bytes)}</title></rect>`;
    x += w;
  }
  if (capacity) {
    const cx = (capacity / scale) * width;
    rects += `<line x1="${Math.min(cx, width - 1)}" x2="${Math.min(cx, width - 1)}" y1="2" y2="42" stroke="${MARK}" stroke-width="2" stroke-dasharray="4 3"/>`;
  }
  const legend = cats.map(([cat, bytes]) =>
    `<li><span class="swatch" style="background:${COLORS[cat] || "#999"}"></span>${esc(catName(cat))} <b>${formatBytes(bytes)}</b></li>`).join("")
    + (capacity ? `<li><span class="capmark" aria-hidden="true"></span>${esc(t("capacity", { cap: formatBytes(capacity) }))}</li>` : "");
  $("#bar").innerHTML = `<svg id="stack" class="chart" viewBox="0 0 ${width} ${height}" role="img"
    aria-label="${esc(cats.map(([c, b]) => `${catName(c)} ${formatBytes(b)}`).join(", "))}">${rects}</svg><ul class="legend">${legend}</ul>`;
}

function drawComponents(r) {
  const rows = (r.components || []).map((c) => `<tr><td data-label="${esc(t("component"))}"><span><span class="swatch"
      style="background:${COLORS[c.category] || "#999"}"></span>${esc(c.name)}</span></td>
      <td class="num" data-label="${esc(t("per_gpu"))}">${formatBytes(c.bytes)}</td><td class="note" data-label="${esc(t("source"))}">${esc(c.note)}</td></tr>`).join("");
  const host = (r.host_components || []).map((c) => `<tr class="host"><td data-label="${esc(t("component"))}">${esc(t("host"))}: ${esc(c.name)}</td>
      <td class="num" data-label="${esc(t("per_gpu"))}">${formatBytes(c.bytes)}</td><td class="note" data-label="${esc(t("source"))}">${esc(c.note)}</td></tr>`).join("");
  $("#components").innerHTML = `<thead><tr><th scope="col">${esc(t("component"))}</th><th scope="col" class="num">${esc(t("per_gpu"))}</th><th scope="col">${esc(t("source"))}</th></tr></thead>
    <tbody>${rows}${host}<tr class="total"><th scope="row">${esc(t("total"))}</th><td class="num" data-label="${esc(t("per_gpu"))}"><b>${formatBytes(r.total_bytes)}</b></td><td></td></tr></tbody>`;
}

function detailValue(key, v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (/_error$/.test(key)) return `${v > 0 ? "+" : ""}${(100 * v).toFixed(1)} %`;
  if (/_per_param$/.test(key)) return `${v} B/param`;
  if (/bits_per_weight$/.test(key)) return `${v}`;
  if (/bytes/.test(key)) return formatBytes(v);
  if (/utilization$/.test(key)) return `${(100 * v).toFixed(0)} %`;
  if (/params$/.test(key)) return `${v.toLocaleString("en")} (${formatCount(v)})`;
  if (key === "seq" || /(tokens|context|_len|kv_cells)/.test(key)) return `${v.toLocaleString("en")} ${t("tokens")}`;
  return Number.isInteger(v) ? v.toLocaleString("en") : String(Number(v.toFixed(4)));
}

function detailLabel(key) {
  if (I18N.en[`d_${key}`]) return t(`d_${key}`);
  return key.replace(/_bytes$/, "").replace(/_/g, " ");
}

// A change's settings (option names -> values) as the page's query spells them:
// the option name with dashes (the flag without its "--"), "name=value".
function settingsText(settings) {
  return Object.entries(settings || {}).map(([k, v]) => `${k.replace(/_/g, "-")}=${v}`).join(" ");
}

// The estimate's own "what to change" (train / infer): each change with its settings,
// the per-GPU peak it was re-estimated at, host RAM when it needs some, and the fit.
function drawChanges(r) {
  const items = (r.changes || []).map((c) => {
    const host = c.host_bytes ? ` · ${t("host_ram_needed", { bytes: formatBytes(c.host_bytes) })}` : "";
    return `<li class="${c.fits ? "ok" : "no"}"><span><b>${esc(c.change)}</b>: ${esc(t("needs", { b: formatBytes(c.peak_bytes) }))}${esc(host)} — ${esc(c.fits ? t("fits_then") : t("still_nofit"))}</span> <code>${esc(settingsText(c.settings))}</code></li>`;
  }).join("");
  $("#actions").innerHTML = items ? `<h3>${esc(t("changes"))}</h3><ul class="changes">${items}</ul>` : "";
}

function drawNotes(r) {
  const details = Object.entries(r.details || {}).map(([k, v]) =>
    `<tr><th scope="row">${esc(detailLabel(k))}</th><td>${esc(detailValue(k, v))}</td></tr>`).join("");
  const list = (items) => items.map((m) => `<li>${esc(m)}</li>`).join("");
  let html = "";
  if ((r.readings || []).length) html += `<h3>${esc(t("readings"))}</h3><ul class="readings">${list(r.readings)}</ul>`;
  if ((r.warnings || []).length) html += `<h3>${esc(t("warnings"))}</h3><ul class="warnings">${list(r.warnings)}</ul>`;
  if (details) html += `<details open><summary>${esc(t("details"))}</summary><table class="details"><tbody>${details}</tbody></table></details>`;
  if ((r.assumptions || []).length) html += `<details><summary>${esc(t("assumptions"))}</summary><ul>${list(r.assumptions)}</ul></details>`;
  $("#notes").innerHTML = html;
}

function drawGlossary() {
  $("#glossary-list").innerHTML = `<p class="info">${esc(t("glossary_note"))}</p>` +
    GLOSSARY.map(([en, zh]) => `<div><dt lang="en">${esc(en)}</dt><dd lang="zh">${esc(zh)}</dd></div>`).join("");
}

// ------------------------------------------------------------------ charts

function niceStep(range, target) {
  const raw = range / Math.max(target, 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function unitOf(maxBytes) {
  const steps = unitScale();
  for (const [label, size] of steps) if (maxBytes >= size) return [label, size];
  return steps[steps.length - 1];
}

function shortNumber(v) { return v >= 1024 && v % 1024 === 0 ? `${v / 1024}K` : String(v); }

// Charts are drawn at the width they are shown at, so that 12 px text stays 12 px.
function chartWidth(box, columns) {
  const w = (box && box.clientWidth) || 720;
  const per = columns > 1 && w >= 660 ? (w - 12) / 2 : w;
  return Math.max(280, Math.round(per - (columns > 1 ? 18 : 0)));
}

function lineChart({ points, current, capacity, xTitle, id }) {
  const width = chartWidth($("#curves"), 2), height = 260, left = 58, right = 16, top = 16, bottom = 48;
  const xs = points.map((p) => Number(p.value));
  const maxTotal = Math.max(...points.map((p) => p.total_bytes));
  const [uLabel, uSize] = unitOf(Math.max(maxTotal, capacity || 0));
  const maxY = Math.max(maxTotal, capacity || 0) * 1.08 || 1;
  const step = niceStep(maxY / uSize, 5) * uSize;
  const minX = Math.min(...xs), maxX = Math.max(...xs);
  const lx = (x) => Math.log2(x);
  const px = (x) => left + ((lx(x) - lx(minX)) / ((lx(maxX) - lx(minX)) || 1)) * (width - left - right);
  const py = (y) => height - bottom - (y / maxY) * (height - top - bottom);
  let grid = "";
  for (let y = 0; y <= maxY + 1; y += step) {
    const label = +(y / uSize).toFixed(2);
    grid += `<line x1="${left}" x2="${width - right}" y1="${py(y)}" y2="${py(y)}" class="grid"/><text x="${left - 6}" y="${py(y) + 4}" text-anchor="end">${label}</text>`;
  }
  const tickEvery = Math.ceil(points.length / 7);
  points.forEach((p, i) => {
    if (i % tickEvery && Number(p.value) !== current && i !== points.length - 1) return;
    grid += `<line x1="${px(+p.value)}" x2="${px(+p.value)}" y1="${height - bottom}" y2="${height - bottom + 5}" class="axis"/>
      <text x="${px(+p.value)}" y="${height - bottom + 18}" text-anchor="middle">${shortNumber(+p.value)}</text>`;
  });
  const path = points.map((p, i) => `${i ? "L" : "M"}${px(+p.value).toFixed(1)},${py(p.total_bytes).toFixed(1)}`).join(" ");
  const dots = points.map((p) => {
    const over = capacity && p.total_bytes > capacity;
    const tip = `${xTitle} ${Number(p.value).toLocaleString("en")}: ${formatBytes(p.total_bytes)}`;
    return `<circle cx="${px(+p.value)}" cy="${py(p.total_bytes)}" r="${Number(p.value) === current ? 7 : 3.5}"
      class="${Number(p.value) === current ? "current" : over ? "over" : "pt"}" data-tip="${esc(tip)}"><title>${esc(tip)}</title></circle>`;
  }).join("");
  const cur = points.find((p) => Number(p.value) === current);
  // labels keep out of each other's way: the capacity label goes to the side away from
  // the current point, the current label below its point when the line runs close above
  const curRight = cur && px(current) > (left + width - right) / 2;
  const nearCap = cur && capacity && Math.abs(py(cur.total_bytes) - py(capacity)) < 20;
  let cap = "";
  if (capacity) {
    const capX = curRight && nearCap ? left + 6 : width - right;
    cap = `<line x1="${left}" x2="${width - right}" y1="${py(capacity)}" y2="${py(capacity)}" stroke="${CAP}" stroke-width="2" stroke-dasharray="6 4"/>
      <text x="${capX}" y="${py(capacity) - 6}" text-anchor="${capX === width - right ? "end" : "start"}" class="cap">${esc(t("capacity", { cap: formatBytes(capacity) }))}</text>`;
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1], b = points[i];
      if (a.total_bytes <= capacity && b.total_bytes > capacity) {
        const f = (capacity - a.total_bytes) / (b.total_bytes - a.total_bytes);
        const xv = 2 ** (lx(+a.value) + f * (lx(+b.value) - lx(+a.value)));
        const x = px(xv);
        cap += `<line x1="${x}" x2="${x}" y1="${py(capacity)}" y2="${height - bottom}" stroke="${CAP}" stroke-dasharray="2 3"/>
          <text x="${Math.min(x + 4, width - right)}" y="${height - bottom - 6}" text-anchor="${x > width - 120 ? "end" : "start"}" class="cap">${esc(t("crossing", { v: formatTokens(Math.floor(xv)) }))}</text>`;
        break;
      }
    }
  }
  const curY = cur ? (nearCap && py(cur.total_bytes) <= py(capacity) ? py(cur.total_bytes) - 12 : nearCap ? py(cur.total_bytes) + 22 : py(cur.total_bytes) - 12) : 0;
  const curLabel = cur ? `<text x="${Math.min(Math.max(px(current), left + 60), width - right - 60)}" y="${curY}" text-anchor="middle" class="curlabel">${esc(t("current"))} ${formatBytes(cur.total_bytes)}</text>` : "";
  const summary = `${t("axis_mem", { u: uLabel })} — ${xTitle}: ` + points.map((p) => `${p.value}: ${formatBytes(p.total_bytes)}`).join("; ");
  return `<svg id="${id}" class="chart line" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(summary)}">
    ${grid}<line x1="${left}" x2="${left}" y1="${top}" y2="${height - bottom}" class="axis"/><line x1="${left}" x2="${width - right}" y1="${height - bottom}" y2="${height - bottom}" class="axis"/>
    <text x="${(left + width - right) / 2}" y="${height - 8}" text-anchor="middle" class="title">${esc(xTitle)}</text>
    <text transform="translate(14 ${(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle" class="title">${esc(t("axis_mem", { u: uLabel }))}</text>
    ${cap}<path d="${path}" fill="none" stroke="${LINE}" stroke-width="2.5"/>${dots}${curLabel}</svg>`;
}

function sweepValues(current, lo, hi) {
  const values = new Set([current]);
  for (let v = lo; v <= hi; v *= 2) values.add(v);
  return [...values].filter((v) => v >= 1).sort((a, b) => a - b).slice(0, 24);
}

async function drawExtras(command, query, result, my) {
  curveController = new AbortController();
  const signal = curveController.signal;
  if (command === "infer" && query.get("gpu")) {
    const solved = {};
    for (const flag of ["max-context", "max-batch"]) {
      const q = new URLSearchParams(query); q.set(flag, "true");
      try { Object.assign(solved, (await getJSON(`/api/infer?${q}`, signal)).solved || {}); } catch (err) { if (err.name === "AbortError") return; }
    }
    if (my !== runSeq) return;
    state.solved = { seq: my, data: solved };
    drawSolved(solved);
  }
  if (result.verdict && !result.verdict.fits && result.num_gpus === 1) {
    try { await fewestGpus(command, query, signal, my); } catch (err) { if (err.name === "AbortError") return; }
    if (my !== runSeq) return;
  }
  const lengthKey = command === "infer" ? "context" : "seq";
  const model = catalog.models.get(query.get("model")) || {};
  const curBatch = Number(query.get("batch") || 1);
  // A typed length may be "32k": the server's reading of it is in the result.
  const typed = Number(query.get(lengthKey)), read = result.details || {};
  const curLen = Number.isFinite(typed) && typed > 0 ? typed
    : (read.context_tokens || read.seq
       || (read.tokens_per_micro_batch ? read.tokens_per_micro_batch / curBatch : 0)
       || 2048);
  const solved = command === "infer" ? (state.solved && state.solved.seq === my ? state.solved.data : {})
    : { max_context: result.fits && result.fits.largest_seq, max_batch: result.fits && result.fits.largest_micro_batch };
  // Ranges fitted to the current value, the largest that fits and the model's own context.
  const modelMax = model.max_position_embeddings || 32768;
  const lenHi = Math.max(curLen * 2, Math.min(modelMax, solved.max_context ? solved.max_context * 4 : modelMax), 4096);
  const batchHi = Math.max(8, curBatch * 4, solved.max_batch ? solved.max_batch * 4 : 64);
  const sweeps = [
    ["batch", sweepValues(curBatch, 1, Math.min(batchHi, 4096)), curBatch, t("axis_batch"), t("curve_batch")],
    [lengthKey, sweepValues(curLen, 512, Math.min(lenHi, 1 << 21)), curLen, t(`axis_${lengthKey}`), t(`curve_${lengthKey}`)],
  ];
  const data = [];
  for (const [vary, values, current, xTitle, caption] of sweeps) {
    const q = new URLSearchParams(query);
    q.delete(vary); q.delete("max-context"); q.delete("max-batch");
    q.set("command", command); q.set("vary", vary); q.set("values", values.join(","));
    try {
      // In chunks: a superseded sweep stops after the chunk in flight instead of
      // keeping the server busy while the next result waits.
      const points = [];
      for (let i = 0; i < values.length; i += SWEEP_CHUNK) {
        q.set("values", values.slice(i, i + SWEEP_CHUNK).join(","));
        points.push(...(await getJSON(`/api/sweep?${q}`, signal)).points);
        if (my !== runSeq) return;
      }
      data.push({ vary, points, current, xTitle, caption });
    } catch (err) {
      if (err.name === "AbortError") return;
      data.push({ vary, error: err.message, caption });
    }
    if (my !== runSeq) return;
  }
  const capacity = result.verdict ? result.verdict.capacity_bytes : 0;
  for (const d of data) if (d.points) d.points = fitted(d.points, capacity, result.total_bytes);
  state.curves = { seq: my, data, capacity };
  drawCurves(data);
}

// Memory grows fast with batch and length: the curve stops at the first point well
// above both the GPU and the current value, so the part that matters keeps its scale.
function fitted(points, capacity, current) {
  const limit = 1.6 * Math.max(capacity || 0, current || 0);
  const i = points.findIndex((p) => p.total_bytes > limit);
  return i < 0 ? points : points.slice(0, Math.max(i + 1, 2));
}

function drawCurves(data) {
  const capacity = state.curves ? state.curves.capacity : 0;
  $("#curves").style.gridTemplateColumns = $("#curves").clientWidth >= 660 ? "1fr 1fr" : "1fr";
  $("#curves").innerHTML = data.map((d) => d.error
    ? `<figure><figcaption>${esc(d.caption)}</figcaption><p class="error">${esc(d.error)}</p></figure>`
    : `<figure><figcaption>${esc(d.caption)}</figcaption>${lineChart({ points: d.points, current: d.current, capacity, xTitle: d.xTitle, id: `curve-${d.vary}` })}</figure>`).join("");
}

function drawTimeline(r) {
  const phases = (r.phases || []).filter((p) => p.bytes > 0);
  if (phases.length < 2) return;
  const capacity = r.verdict ? r.verdict.capacity_bytes : 0;
  const width = chartWidth($("#timeline"), 1) - 18, height = 170, left = 58, right = 16, top = 22, bottom = 34;
  const maxY = Math.max(...phases.map((p) => p.bytes), capacity) * 1.08;
  const [uLabel, uSize] = unitOf(maxY);
  const py = (y) => height - bottom - (y / maxY) * (height - top - bottom);
  const bw = (width - left - right) / phases.length;
  let bars = "", grid = "";
  const step = niceStep(maxY / uSize, 4) * uSize;
  for (let y = 0; y <= maxY; y += step) {
    grid += `<line x1="${left}" x2="${width - right}" y1="${py(y)}" y2="${py(y)}" class="grid"/><text x="${left - 6}" y="${py(y) + 4}" text-anchor="end">${+(y / uSize).toFixed(2)}</text>`;
  }
  const peak = Math.max(...phases.map((p) => p.bytes));
  phases.forEach((p, i) => {
    const x = left + i * bw;
    const tip = `${phaseName(p.phase)}: ${formatBytes(p.bytes)}`;
    bars += `<rect x="${x + 6}" y="${py(p.bytes)}" width="${bw - 12}" height="${height - bottom - py(p.bytes)}" fill="${p.bytes === peak ? "#0072B2" : "#56B4E9"}" data-tip="${esc(tip)}"><title>${esc(tip)}</title></rect>
      <text x="${x + bw / 2}" y="${py(p.bytes) - 6}" text-anchor="middle">${formatBytes(p.bytes)}</text>
      <text x="${x + bw / 2}" y="${height - bottom + 18}" text-anchor="middle" class="title">${esc(phaseName(p.phase))}</text>`;
    if (i) bars += `<text x="${x}" y="${height - bottom + 18}" text-anchor="middle" aria-hidden="true">→</text>`;
  });
  const cap = capacity ? `<line x1="${left}" x2="${width - right}" y1="${py(capacity)}" y2="${py(capacity)}" stroke="${CAP}" stroke-width="2" stroke-dasharray="6 4"/>
    <text x="${width - right}" y="${py(capacity) - 5}" text-anchor="end" class="cap">${esc(t("capacity", { cap: formatBytes(capacity) }))}</text>` : "";
  $("#timeline").innerHTML = `<figure><figcaption>${esc(t(state.command === "train" ? "timeline" : "timeline_infer"))}</figcaption><svg id="phases" class="chart" viewBox="0 0 ${width} ${height}" role="img"
    aria-label="${esc(phases.map((p) => `${phaseName(p.phase)} ${formatBytes(p.bytes)}`).join(", "))}">${grid}
    <text transform="translate(14 ${(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle" class="title">${esc(uLabel)}</text>${bars}${cap}</svg></figure>`;
}

// ------------------------------------------------------------------ plan and params

// The planner's change names, in the page's language.
const CHANGE_WORDS = [
  [/^more GPUs \(up to (\d+)\)$/, "ch_more_gpus"],
  [/^full activation recomputation$/, "ch_recompute"],
  [/^LoRA \(r=(\d+) on all linear layers\)$/, "ch_lora"],
  [/^QLoRA \(4-bit NF4 base weights, LoRA adapters\)$/, "ch_qlora"],
  [/^shorter sequence \((\d+) tokens\)$/, "ch_shorter"],
  [/^micro-batch size 1$/, "ch_mbs1"],
];

function changeName(text) {
  for (const [re, key] of CHANGE_WORDS) {
    const m = re.exec(text);
    if (m) return t(key, { n: m[1] });
  }
  return text;
}

// The form inputs a plan change sets (inputs are named as the query: dashes); "more
// GPUs" asks for the fewest that fit rather than the search bound.
function changeSettings(c) {
  const entries = Object.entries(c.settings || {});
  if (!entries.length) return null;
  return Object.fromEntries(entries.map(([k, v]) =>
    [k.replace(/_/g, "-"), k === "max_gpus" && c.min_gpus ? c.min_gpus : v]));
}

function table(columns, rows) {
  const head = columns.map(([, label, num]) => `<th scope="col"${num ? ' class="num"' : ""}>${esc(label)}</th>`).join("");
  const body = rows.map((r) => `<tr>${columns.map(([key, label, num]) =>
    `<td data-label="${esc(label)}"${num ? ' class="num"' : ""}>${esc(r[key])}</td>`).join("")}</tr>`).join("");
  return `<thead><tr>${head}</tr></thead><tbody>${body}</tbody>`;
}

function drawPlan(r) {
  const cands = r.candidates || [];
  const gpu = r.gpu;
  const head = cands.length ? t("plan_fits", { n: r.min_gpus, gpu, k: cands.length })
    : t("plan_nofit", { n: Math.max(...(r.gpu_counts || [0])), gpu });
  const job = r.kind === "inference"
    ? t("plan_job_infer", { w: r.weights, kv: r.kv_dtype, ctx: Number(r.context).toLocaleString("en"), b: r.batch })
    : t("plan_job_train", { m: r.method, p: r.precision, seq: Number(r.seq).toLocaleString("en") });
  const sub = `${job} · ` + t("evaluated", { n: Number(r.evaluated || 0).toLocaleString("en"), budget: formatBytes(r.budget_bytes) })
    + (cands.length ? "" : ` · ${t("smallest_peak", { b: formatBytes(r.min_peak_bytes || 0) })}`);
  $("#verdict").innerHTML = `<div class="verdict ${cands.length ? "fits" : "nofit"}"><span class="mark" aria-hidden="true">${cands.length ? "✓" : "✗"}</span><span class="head">${esc(head)}</span><small>${esc(sub)}</small></div>`;
  if (!cands.length) {
    const items = (r.changes || []).map((c) => {
      const set = changeSettings(c);
      const verdict = c.fits ? t("fits_on", { n: c.min_gpus, s: plural(c.min_gpus) }) : t("still_nofit");
      const button = set && c.fits ? `<button type="button" class="apply" data-set='${esc(JSON.stringify(set))}'>${esc(t("apply"))}</button>` : "";
      return `<li class="${c.fits ? "ok" : "no"}"><span><b>${esc(changeName(c.change))}</b>: ${esc(t("needs", { b: formatBytes(c.min_peak_bytes) }))} — ${esc(verdict)}</span> <code>${esc(settingsText(c.settings))}</code>${button}</li>`;
    }).join("");
    $("#actions").innerHTML = items ? `<h3>${esc(t("changes"))}</h3><ul class="changes">${items}</ul>` : "";
  } else {
    const engines = r.kind === "training" ? [["deepspeed", "DeepSpeed JSON"], ["fsdp", "accelerate FSDP YAML"], ["megatron", "Megatron args"]]
      : [["vllm", "vllm serve"], ["llamacpp", "llama-server"]];
    let extra = "";
    if (r.largest_micro_batch) extra += `<li>${esc(t("largest_mb_plan", { n: r.largest_micro_batch.micro_batch_size, d: r.largest_micro_batch.describe }))}</li>`;
    if (r.longest_context) extra += `<li>${esc(t("longest_context_plan", { n: Number(r.longest_context.seq).toLocaleString("en"), d: r.longest_context.describe }))}</li>`;
    if (cands[0].recipe) extra += `<li>${esc(t("recipe"))}: ${esc(cands[0].recipe)}</li>`;
    $("#actions").innerHTML = `${extra ? `<ul class="facts">${extra}</ul>` : ""}<h3>${esc(t("exports"))}</h3><div class="exports">${engines.map(([e, label]) =>
      `<button type="button" class="export" data-engine="${e}">${esc(label)}</button>`).join("")}</div><div id="export-out"></div>`;
  }
  if (cands.length) {
    const rows = cands.map((c) => r.kind === "training" ? {
      gpus: c.layout.num_gpus, layout: c.describe, mbs: c.micro_batch_size, m: c.layout.micro_batches, recompute: c.recompute,
      peak: formatBytes(c.peak_bytes), host: c.host_bytes_per_node ? formatBytes(c.host_bytes_per_node) : "–",
      step: c.step_s.toFixed(2), tps: Math.round(c.tokens_per_s).toLocaleString("en"),
    } : {
      gpus: c.num_gpus, tp: c.tp, pp: c.pp, replicas: c.replicas, peak: formatBytes(c.peak_bytes), weights: formatBytes(c.weights_bytes),
      kv: formatBytes(c.kv_cache_bytes), other: formatBytes(c.other_bytes), decode: c.decode_ms_per_token.toFixed(2),
    });
    const cols = r.kind === "training"
      ? [["gpus", t("c_gpus"), 1], ["layout", t("c_layout")], ["mbs", t("c_mbs"), 1], ["m", t("c_m"), 1], ["recompute", t("c_recompute")],
        ["peak", t("c_peak"), 1], ["host", t("c_host"), 1], ["step", t("c_step"), 1], ["tps", t("c_tps"), 1]]
      : [["gpus", t("c_gpus"), 1], ["tp", t("c_tp"), 1], ["pp", t("c_pp"), 1], ["replicas", t("c_replicas"), 1], ["peak", t("c_peak"), 1],
        ["weights", t("c_weights"), 1], ["kv", t("c_kv"), 1], ["other", t("c_other"), 1], ["decode", t("c_decode"), 1]];
    $("#components").innerHTML = `<caption>${esc(t("layouts_fit"))}</caption>${table(cols, rows)}`;
  }
  const list = (r.assumptions || []).map((m) => `<li>${esc(m)}</li>`).join("");
  $("#notes").innerHTML = list ? `<details><summary>${esc(t("assumptions"))}</summary><ul>${list}</ul></details>` : "";
}

function drawParams(r) {
  $("#verdict").innerHTML = `<div class="verdict"><span class="head">${esc(t("params_total", { n: Number(r.total_params).toLocaleString("en") }))}</span>
    <small>${esc(formatCount(r.total_params))} · ${esc(t("params_active", { n: Number(r.active_params).toLocaleString("en") }))}</small></div>`;
  const comps = r.components || [];
  if (!comps.length) return;
  const keys = Object.keys(comps[0]).filter((k) => typeof comps[0][k] !== "object");
  const cols = keys.map((k) => [k, k === "name" ? t("c_name") : k === "params" ? t("c_params") : k.replace(/_/g, " "),
    typeof comps[0][k] === "number"]);
  const rows = comps.map((c) => Object.fromEntries(keys.map((k) => [k, typeof c[k] === "number" ? c[k].toLocaleString("en") : c[k]])));
  $("#components").innerHTML = `<caption>${esc(r.model)}</caption>${table(cols, rows)}`;
}

async function exportConfig(engine) {
  const q = new URLSearchParams(state.query);
  q.set("engine", engine);
  const out = $("#export-out");
  out.innerHTML = `<p class="info">${esc(t("loading"))}</p>`;
  try {
    const d = await getJSON(`/api/export?${q}`);
    const blob = new Blob([d.text], { type: d.media_type });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = d.filename;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    out.innerHTML = `<p class="info">${esc(d.filename)}</p><pre class="export-text" tabindex="0">${esc(d.text)}</pre>`;
  } catch (err) {
    out.innerHTML = `<p class="error">${esc(t("export_failed", { m: err.message }))}</p>`;
  }
}

// ------------------------------------------------------------------ one-click changes

function applySettings(settings) {
  const fs = $(`fieldset[data-for="${state.tab}"]`);
  for (const [name, value] of Object.entries(settings)) {
    const el = $(`[name="${name}"]`, fs) || $(`fieldset.common [name="${name}"]`);
    if (!el) continue;
    if (el.type === "checkbox") el.checked = !!value; else el.value = String(value);
  }
  syncVisibility();
  schedule(0);
}

// The Serve or Train tab's workload as a plan query (the whole workload: method,
// precision, optimizer, sequence, batch, fixed parallel choices, weights and KV dtype).
const PLAN_FROM_TRAIN = ["method", "precision", "optimizer", "attention", "lora-rank", "recompute", "zero", "fsdp",
  "offload", "tp", "pp", "batch", "seq"];

function planQueryFrom(command, q) {
  const p = new URLSearchParams();
  const copy = (from, to = from) => { if (q.get(from)) p.set(to, q.get(from)); };
  copy("model"); copy("gpu");
  p.set("job", command === "train" ? "train" : "infer");
  if (command === "train") PLAN_FROM_TRAIN.forEach((n) => copy(n));
  else { copy("context", "seq"); copy("batch"); copy("weights"); copy("kv-dtype"); }
  p.set("max-gpus", String(Math.max(64, Number(q.get("gpus") || 0))));
  return p;
}

function planThis() {
  const plan = $('fieldset[data-for="plan"]');
  const carried = planQueryFrom(state.tab, queryFor(state.tab));
  for (const el of $$("[name]", plan)) {
    if (el.type === "checkbox") el.checked = false;
    else el.value = el.tagName === "SELECT" ? selectDefault(el) : el.defaultValue;
  }
  for (const [name, value] of carried) {
    const el = $(`[name="${name}"]`, plan);
    if (el) el.value = value;
  }
  selectTab("plan", true);
}

// When the estimate does not fit one GPU: the fewest GPUs that do, or what to change.
async function fewestGpus(command, query, signal, my) {
  const p = planQueryFrom(command, query);
  const job = p.get("job"); p.delete("job"); p.set(job, "true"); p.set("top", "1");
  if (job === "infer" && !p.get("weights")) {
    const own = await checkpointFormat(p.get("model"), signal);
    if (own) p.set("weights", own);
  }
  let r;
  try { r = await getJSON(`/api/plan?${p}`, signal); } catch (err) { if (err.name === "AbortError") throw err; return; }
  if (my !== runSeq) return;
  state.fewest = { seq: my, data: r };
  drawFewest(r);
}

function drawFewest(r) {
  if (!$("#fewest")) return;
  let html;
  if (r.candidates && r.candidates.length) {
    const c = r.candidates[0];
    const layout = c.describe || `tp=${c.tp} pp=${c.pp}${c.replicas > 1 ? ` × ${c.replicas}` : ""}`;
    html = limitCard(t("fewest"), `${r.min_gpus} × ${r.gpu}`, `${layout} · ${formatBytes(c.peak_bytes)}`, null);
  } else {
    const fix = (r.changes || []).find((c) => c.fits);
    html = limitCard(t("none_up_to", { n: Math.max(...(r.gpu_counts || [0])), gpu: r.gpu }),
      fix ? changeName(fix.change) : "–", fix ? t("fits_on", { n: fix.min_gpus, s: plural(fix.min_gpus) }) : "", null);
  }
  $("#fewest").outerHTML = `<span id="fewest">${html}</span>`;
}

// ------------------------------------------------------------------ pickers and pasted configs

function modelInfo(m) {
  if (!m) return "";
  const active = m.active_params && m.active_params !== m.total_params ? t("active_part", { n: formatCount(m.active_params) }) : "";
  return t("model_info", { params: formatCount(m.total_params), active, layers: m.layers, attn: m.attention,
    ctx: formatTokens(m.max_position_embeddings), dtype: m.dtype });
}

function gpuInfo(g) {
  if (!g) return "";
  const tf = g.bf16_dense_flops ? ` · ${(g.bf16_dense_flops / 1e12).toFixed(0)} TFLOP/s bf16` : "";
  return t("gpu_info", { mem: formatBytes(g.usable_memory_bytes || g.memory_bytes), bw: formatBytes(g.memory_bandwidth_bytes_per_s).replace(/\.00/, ""), tf });
}

function updateInfo() {
  const model = $("fieldset.common [name=model]").value.trim();
  const gpu = $("fieldset.common [name=gpu]").value.trim();
  $("#model-info").textContent = modelInfo(catalog.models.get(model));
  $("#gpu-info").textContent = gpuInfo(catalog.gpus.get(gpu));
}

async function fillLists() {
  try {
    const models = (await getJSON("/api/models")).models;
    for (const m of models) { catalog.models.set(m.slug, m); if (m.hub_id) catalog.models.set(m.hub_id, m); }
    $("#models").innerHTML = models.map((m) => `<option value="${esc(m.slug)}" label="${esc(`${m.name} · ${formatCount(m.total_params)} · ${formatTokens(m.max_position_embeddings)} ctx · ${m.attention} · ${m.dtype}`)}"></option>`).join("");
  } catch (err) { /* typed names still work */ }
  try {
    const gpus = (await getJSON("/api/gpus")).gpus || [];
    for (const g of gpus) { catalog.gpus.set(g.slug, g); for (const a of g.aliases || []) catalog.gpus.set(a, g); }
    $("#gpus").innerHTML = gpus.map((g) => `<option value="${esc(g.slug)}" label="${esc(`${g.name} · ${g.memory_nominal} · ${(g.memory_bandwidth_bytes_per_s / 1e12).toFixed(2)} TB/s`)}"></option>`).join("");
  } catch (err) { /* idem */ }
  try {
    const formats = (await getJSON("/api/formats")).formats || [];
    $("#formats").innerHTML = formats.map((f) => `<option value="${esc(f.name)}" label="${esc(`${f.bits_per_weight} bits · ${f.description}`)}"></option>`).join("");
  } catch (err) { /* idem */ }
  updateInfo();
}

async function postConfig(text) {
  const response = await fetch("/api/config", { method: "POST", headers: { "Content-Type": "application/json" }, body: text });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || body.ok === false) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

async function usePasted(text) {
  const status = $("#paste-status");
  if (!text.trim()) { status.textContent = t("paste_empty"); showError(t("paste_empty")); return; }
  try {
    usePastedModel(await postConfig(text), text);
  } catch (err) {
    status.textContent = `${t("error")}: ${err.message}`;
    status.className = "info bad";
    showError(err.message);  // announced in the live region
  }
}

// A GGUF file is read in the browser and only its header is sent: the first 4 MiB,
// then at least twice as much each time the server says the header runs further.
async function useGguf(file) {
  const status = $("#paste-status");
  let size = Math.min(file.size, 4 << 20);
  for (let attempt = 0; attempt < 8; attempt++) {
    const body = await file.slice(0, size).arrayBuffer();
    const q = new URLSearchParams({ file_bytes: String(file.size), name: file.name });
    const response = await fetch(`/api/gguf?${q}`, { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body });
    const answer = await response.json().catch(() => ({}));
    if (response.ok && answer.ok !== false) return usePastedModel(answer, null);
    const err = answer.error || { message: response.statusText };
    if (err.type === "NeedMoreBytes" && size < file.size) { size = Math.min(Math.max(err.needed, 2 * size), file.size); continue; }
    status.textContent = `${t("error")}: ${err.message}`;
    status.className = "info bad";
    showError(err.message);
    return;
  }
}

function usePastedModel(m, text) {
  const status = $("#paste-status");
  catalog.models.set(m.model, m);
  if (text) { try { localStorage.setItem(`vramplan:${m.model}`, text); } catch (err) { /* private mode */ } }
  status.textContent = t("paste_ok", { name: m.name, params: formatCount(m.total_params), layers: m.layers, attn: m.attention,
    ctx: formatTokens(m.max_position_embeddings), dtype: m.dtype });
  status.className = "info ok";
  $("fieldset.common [name=model]").value = m.model;
  updateInfo();
  schedule(0);
}

// A shared link to a pasted model works on the machine that pasted it: the config is
// kept in localStorage and sent again when the server no longer knows the name.
async function repostPasted(model, err) {
  if (!model || !model.startsWith("pasted-") || !/did you mean|unknown|not/i.test(err.message)) return false;
  let text = null;
  try { text = localStorage.getItem(`vramplan:${model}`); } catch (e) { return false; }
  if (!text) return false;
  const m = await postConfig(text);
  catalog.models.set(m.model, m);
  updateInfo();
  return m.model === model;
}

// ------------------------------------------------------------------ tabs, language, phones

function selectTab(name, runNow = true) {
  state.tab = name;
  for (const b of $$("#tabs [role=tab]")) {
    const on = b.dataset.tab === name;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
  }
  for (const fs of $$("fieldset[data-for]")) fs.hidden = fs.dataset.for !== name;
  $("#result").setAttribute("aria-labelledby", `tab-${name}`);
  syncVisibility();
  state.result = null; state.curves = null; state.solved = null; state.fewest = null;
  clearResult(); showError("");
  if (runNow) { writeURL(); run(); }
}

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const el of $$("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of $$("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  $("#tabs").setAttribute("aria-label", t("tabs_label"));
  const other = state.lang === "zh" ? "en" : "zh";
  const button = $("#lang");
  button.textContent = other === "zh" ? "中文" : "English";
  button.lang = other === "zh" ? "zh" : "en";
  button.setAttribute("aria-label", other === "zh" ? "切换到中文" : "Switch to English");
  document.title = state.lang === "zh" ? "vramplan — 大模型显存估算" : "vramplan — GPU memory for LLMs";
  updateInfo();
  render();
  if (state.error) showError(state.error);
  updatePeek();
}

function narrow() { return window.matchMedia("(max-width: 900px)").matches; }

function updatePeek() {
  const peek = $("#peek");
  const verdict = $("#verdict .head");
  const mark = $("#verdict .verdict");
  if (!verdict || !narrow()) { peek.hidden = true; return; }
  const rect = $("#verdict").getBoundingClientRect();
  const inView = rect.top < window.innerHeight && rect.bottom > 0;
  peek.textContent = `${verdict.textContent} ↓`;
  peek.className = mark && mark.classList.contains("nofit") ? "nofit" : mark && mark.classList.contains("fits") ? "fits" : "";
  peek.hidden = inView;
}

function scrollToResult(smooth = true) {
  const reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  $("#result").scrollIntoView({ behavior: smooth && !reduce ? "smooth" : "auto", block: "start" });
}

async function copyLink() {
  writeURL();
  const button = $("#copy-link");
  try {
    await navigator.clipboard.writeText(location.href);
    button.textContent = t("copied");
  } catch (err) {
    window.prompt(t("copy_failed"), location.href);
  }
  setTimeout(() => { button.textContent = t("copy_link"); }, 1500);
}

function showTip(event) {
  const tip = $("#tooltip");
  const target = event.target.closest("[data-tip]");
  if (!target) { tip.hidden = true; return; }
  tip.textContent = target.dataset.tip;
  tip.hidden = false;
  const x = Math.min(event.clientX + 12, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = `${x + window.scrollX}px`;
  tip.style.top = `${event.clientY + window.scrollY - tip.offsetHeight - 10}px`;
}

function wire() {
  const form = $("#form");
  form.addEventListener("input", (e) => {
    if (!e.target.name || e.target.closest("#paste")) return;
    if (e.target.name === "model" || e.target.name === "gpu") updateInfo();
    syncVisibility();
    const immediate = e.target.tagName === "SELECT" || e.target.type === "checkbox";
    schedule(immediate ? DEBOUNCE_MS.select : DEBOUNCE_MS.text);
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); run(); scrollToResult(); });
  form.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target.tagName === "INPUT" && narrow()) e.target.blur(); });
  $("#units").addEventListener("change", () => { writeURL(); render(); if (state.curves) drawCurves(state.curves.data); updateInfo(); });
  $("#lang").addEventListener("click", () => { state.lang = state.lang === "zh" ? "en" : "zh"; writeURL(); applyLanguage(); if (state.curves) drawCurves(state.curves.data); });
  $("#copy-link").addEventListener("click", copyLink);
  const tabs = $$("#tabs [role=tab]");
  tabs.forEach((b, i) => {
    b.addEventListener("click", () => selectTab(b.dataset.tab));
    b.addEventListener("keydown", (e) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (!(e.key in moves)) return;
      e.preventDefault();
      const next = tabs[(moves[e.key] + tabs.length) % tabs.length];
      next.focus();
      selectTab(next.dataset.tab);
    });
  });
  $("#result").addEventListener("click", (e) => {
    const apply = e.target.closest(".apply");
    if (apply) return applySettings(JSON.parse(apply.dataset.set));
    if (e.target.closest("#plan-this")) return planThis();
    const exp = e.target.closest(".export");
    if (exp) exportConfig(exp.dataset.engine);
  });
  $("#paste-use").addEventListener("click", () => usePasted($("#paste-text").value));
  $("#paste-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    if (/\.gguf$/i.test(file.name)) return useGguf(file);
    const text = await file.text();
    $("#paste-text").value = text;
    usePasted(text);
  });
  $("#peek").addEventListener("click", () => scrollToResult());
  window.addEventListener("scroll", updatePeek, { passive: true });
  window.addEventListener("resize", updatePeek);
  document.addEventListener("pointermove", showTip);
  document.addEventListener("pointerdown", showTip);
}

function start() {
  wire();
  const shared = location.search.length > 1;
  readURL();
  applyLanguage();
  writeURL();
  const lists = fillLists();
  Promise.all([run(), lists]).then(() => { if (shared && narrow() && state.result) scrollToResult(false); });
}

start();
