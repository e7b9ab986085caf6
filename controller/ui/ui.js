// The dc-rootca dashboard: reads GET /v1.0/sw-update-strategy/events with fetch() (EventSource cannot
// send X-Auth-Token, and a token never goes in a URL), applies each event to the model as it arrives,
// and draws what changed once per animation frame.
"use strict";

const API = "/v1.0";
const STRATEGY = API + "/sw-update-strategy";
const TOKEN_KEY = "dc-rootca-token";
const PAGE_SIZE = 50;
const FINISHED = new Set(["complete", "failed", "aborted"]);

// The cell colour of each category, in the order a cell takes the first that fits (see category()).
const COLOURS = {
  failed: "#d93025",
  running: "#2f7de1",
  offline: "#5f6368",
  complete: "#1e9e5a",
  aborted: "#f29900",
  queued: "#9aa9c2",
  "out-of-sync": "#f6c744",
  "in-sync": "#c9e7d4",
};

// The model: what the stream has said so far.
const model = {
  strategy: null,
  steps: new Map(), // cloud name -> step JSON
  subclouds: new Map(), // name -> {id, name, availability-status, sync_status, kube-rootca-expiry}
  order: [], // subcloud names by id: each cell's place on the map
  lastEventId: null,
  clockOffset: 0, // the controller's clock minus this browser's (from the stream's Date header), ms
  events: 0,
  connections: 0, // streams opened so far
  resumedFrom: null, // the Last-Event-ID the current stream was opened with
};

const ui = {
  selected: null,
  page: 0,
  dirty: false,
  frame: 0,
  layout: { cols: 1, size: 1 },
  details: new Map(), // name -> subcloud JSON from GET /subclouds/<name>
};

const $ = (id) => document.getElementById(id);

// ---- pure decisions ------------------------------------------------------------------------------

/** A subcloud's category: what its cell's colour says, and what the filters match. */
function category(sub, step) {
  const state = step ? step.state : null;
  if (state === "failed") return "failed";
  if (state && !FINISHED.has(state) && state !== "initial") return "running";
  if (sub && sub["availability-status"] === "offline") return "offline";
  if (state === "complete") return "complete";
  if (state === "aborted") return "aborted";
  if (state === "initial") return "queued";
  if (sub && sub.sync_status === "out-of-sync") return "out-of-sync";
  return "in-sync";
}

/** Whether a subcloud matches the checked filters (none checked: every one does). */
function matches(filters, sub, step) {
  if (filters.size === 0) return true;
  const cat = category(sub, step);
  if (filters.has("failed") && cat === "failed") return true;
  if (filters.has("running") && cat === "running") return true;
  if (filters.has("offline") && sub && sub["availability-status"] === "offline") return true;
  if (filters.has("out-of-sync") && sub && sub.sync_status === "out-of-sync") return true;
  return false;
}

/**
 * The percent a step's details give ("...; update 45% complete", a rollback's "...; rollback 45%
 * complete"), 100 once complete.
 */
function stepPercent(step) {
  if (!step) return 0;
  if (step.state === "complete") return 100;
  const m = /(?:update|rollback) (\d+)% complete/.exec(step.details || "");
  return m ? Number(m[1]) : 0;
}

/** How a rollback's details begin (rules.rs, dc_protocol::ROLLING_BACK). */
const ROLLING_BACK = "rolling back: ";

/**
 * The phase and host a step's details name, as the controller writes them (rules.rs): "hosts
 * trust-both-cas on controller-1: host 2 of 4; ...", "pods trust-both-cas: started; ...", "new root CA:
 * ...". A phase has no ':' or ';' in it; the host is the word after " on ".
 */
function stepPhaseHost(step) {
  const details = (step && step.details) || "";
  if (details.startsWith(ROLLING_BACK)) {
    // A rollback: "rolling back: hosts trust-old-ca: host 1 of 2: controller-0; rollback 50% complete".
    // Its phase is the rollback's step, shown as such; its host follows "host N of M: ".
    const rest = details.slice(ROLLING_BACK.length);
    const step = /^([^:;]+)/.exec(rest);
    const host = /: host \d+ of \d+: ([^;:\s]+)/.exec(rest);
    return { phase: ROLLING_BACK + (step ? step[1] : ""), host: host ? host[1] : "" };
  }
  const m = /^([^:;]+?)(?: on (\S+))?: /.exec(details);
  return m ? { phase: m[1], host: m[2] || "" } : { phase: "", host: "" };
}

/** "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) as milliseconds, or NaN. */
function apiTime(s) {
  if (!s) return NaN;
  return Date.parse(s.slice(0, 23).replace(" ", "T") + "Z");
}

/**
 * The overall progress (0..1) and the estimate of time left, in seconds (null when unknown).
 * Progress: each step counts as its percent, a finished one (complete, failed, aborted) as whole.
 * Estimate: the rate so far, from the first step's start to now, applied to what is left
 * (elapsed x (1 - p) / p). Steps run in a sliding window of max-parallel-subclouds, so the fleet's rate
 * is close to constant once it has started; it is unknown before any progress, and 0 once finished.
 */
function progress(steps, now) {
  let total = 0;
  let done = 0;
  let start = Infinity;
  for (const step of steps) {
    total += 1;
    done += FINISHED.has(step.state) ? 1 : stepPercent(step) / 100;
    const t = apiTime(step["started-at"]);
    if (t < start) start = t;
  }
  if (total === 0) return { fraction: 0, left: null };
  const fraction = done / total;
  if (fraction >= 1) return { fraction: 1, left: 0 };
  if (fraction === 0 || !Number.isFinite(start)) return { fraction, left: null };
  const elapsed = Math.max(0, (now - start) / 1000);
  return { fraction, left: (elapsed * (1 - fraction)) / fraction };
}

function duration(secs) {
  if (secs === null) return "unknown";
  const s = Math.round(secs);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

// ---- the model, fed by events --------------------------------------------------------------------

function reorder() {
  model.order = [...model.subclouds.values()].sort((a, b) => a.id - b.id).map((s) => s.name);
}

function apply(name, data) {
  switch (name) {
    case "snapshot":
      model.strategy = data.strategy;
      model.steps = new Map((data["strategy-steps"] || []).map((s) => [s.cloud, s]));
      model.subclouds = new Map((data.subclouds || []).map((s) => [s.name, s]));
      reorder();
      break;
    case "strategy":
      model.strategy = data;
      if (data === null) model.steps.clear();
      break;
    case "step":
      model.steps.set(data.cloud, data);
      break;
    case "subcloud":
      if (data.deleted) model.subclouds.delete(data.name);
      else model.subclouds.set(data.name, data);
      reorder();
      break;
    default:
      return;
  }
  if (ui.selected && (name === "snapshot" || data === null || data.cloud === ui.selected || data.name === ui.selected)) {
    ui.details.delete(ui.selected);
    fetchDetail(ui.selected);
  }
  changed();
}

// ---- the stream: fetch() + a ReadableStream SSE parser, resumed with Last-Event-ID ---------------

let stream = null; // the AbortController of the current stream

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function headers(extra) {
  return Object.assign({ "X-Auth-Token": token() }, extra || {});
}

function status(text) {
  $("stream-status").textContent = text;
}

async function follow() {
  if (stream) stream.abort();
  const ctl = new AbortController();
  stream = ctl;
  let delay = 500;
  while (!ctl.signal.aborted) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (model.lastEventId) h["Last-Event-ID"] = model.lastEventId;
      const res = await fetch(STRATEGY + "/events", { headers: h, signal: ctl.signal, cache: "no-store" });
      model.connections += 1;
      model.resumedFrom = h["Last-Event-ID"] || null;
      if (res.status === 401 || res.status === 403) {
        status("refused: " + (await errorText(res)));
        return;
      }
      if (!res.ok) throw new Error(await errorText(res));
      const serverNow = Date.parse(res.headers.get("Date") || "");
      if (Number.isFinite(serverNow)) model.clockOffset = serverNow - Date.now();
      status("connected");
      const before = model.events;
      try {
        await readEvents(res.body, ctl.signal);
      } finally {
        // Only a connection that brought events resets the backoff: one closed at once is retried
        // slower and slower, not every 0.5 s.
        if (model.events > before) delay = 500;
      }
      status("stream ended; reconnecting");
    } catch (e) {
      if (ctl.signal.aborted) return;
      status("disconnected (" + e.message + "); reconnecting");
    }
    // Back off before reconnecting, up to 10 s, so a stopped controller is not hammered.
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

/** Parses Server-Sent Events from a byte stream and applies each one as soon as its blank line comes. */
async function readEvents(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = ""; // holds no complete line between chunks
  let pendingCR = false; // the last chunk ended in CR: a LF opening this one ends the same line
  let event = { id: null, name: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done || signal.aborted) return;
    let text = decoder.decode(value, { stream: true });
    if (pendingCR && text.startsWith("\n")) text = text.slice(1);
    pendingCR = text.endsWith("\r");
    // Only the new text is searched: a snapshot of thousands of subclouds is one line in many chunks.
    const scanned = buffer.length;
    buffer += text.replace(/\r\n?/g, "\n");
    let start = 0;
    let nl;
    while ((nl = buffer.indexOf("\n", Math.max(start, scanned))) >= 0) {
      const line = buffer.slice(start, nl);
      start = nl + 1;
      if (line === "") {
        if (event.data.length > 0) dispatch(event);
        event = { id: null, name: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "id") event.id = val;
      else if (field === "event") event.name = val;
      else if (field === "data") event.data.push(val);
    }
    buffer = buffer.slice(start);
  }
}

function dispatch(event) {
  let data;
  try {
    data = JSON.parse(event.data.join("\n"));
  } catch (e) {
    status("bad event data: " + e.message);
    return;
  }
  try {
    apply(event.name, data);
  } catch (e) {
    // Reported, and passed: resuming at its id would only bring it back.
    status("could not apply a " + event.name + " event: " + e.message);
  }
  if (event.id !== null) model.lastEventId = event.id;
  model.events += 1;
}

// ---- REST calls: the detail panel and the admin actions ------------------------------------------

async function errorText(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (body && body.message) return body.message;
  } catch (_) {
    // not JSON: the text itself
  }
  return text || res.status + " " + res.statusText;
}

async function call(method, path, body) {
  $("api-error").textContent = "";
  try {
    const res = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) $("api-error").textContent = await errorText(res);
  } catch (e) {
    $("api-error").textContent = e.message;
  }
}

async function fetchDetail(name) {
  try {
    const res = await fetch(API + "/subclouds/" + encodeURIComponent(name), { headers: headers() });
    if (!res.ok) return;
    ui.details.set(name, await res.json());
    changed();
  } catch (_) {
    // the stream's status line says when the controller is unreachable
  }
}

// ---- drawing: one pass per animation frame, only after a change ----------------------------------

function changed() {
  ui.dirty = true;
  if (!ui.frame) ui.frame = requestAnimationFrame(draw);
}

function filters() {
  const set = new Set();
  for (const box of document.querySelectorAll("#filters input[type=checkbox]")) if (box.checked) set.add(box.value);
  return set;
}

function draw() {
  ui.frame = 0;
  if (!ui.dirty) return;
  ui.dirty = false;
  const f = filters();
  drawSummary();
  drawMap(f);
  drawList(f);
  drawDetail();
  document.body.dataset.lastEventId = model.lastEventId || "";
  document.body.dataset.events = String(model.events);
}

function drawSummary() {
  const s = model.strategy;
  const rollback = Boolean(s && s["extra-args"] && s["extra-args"].rollback);
  // A rollback strategy says so first: its steps take subclouds back to their old root CA.
  $("strategy-state").textContent = s ? (rollback ? "rollback " : "") + s.state : "none";
  $("strategy-meta").textContent = s
    ? (rollback ? "back to each subcloud's old root CA, " : "") +
      s["subcloud-apply-type"] + ", max " + s["max-parallel-subclouds"] + " in parallel" +
      (s["extra-args"] && s["extra-args"].subject ? ", subject " + s["extra-args"].subject : "")
    : "";
  const steps = [...model.steps.values()];
  // The steps' times are the controller's clock: "now" is too (offset from the stream's Date header).
  const p = progress(steps, Date.now() + model.clockOffset);
  const pct = Math.floor(p.fraction * 100);
  $("progress-fill").style.width = pct + "%";
  $("progress-text").textContent = pct + "% (" + steps.filter((x) => FINISHED.has(x.state)).length + " of " + steps.length + " steps finished)";
  $("eta").textContent = s && s.state === "applying" ? duration(p.left) : s && FINISHED.has(s.state) ? "0 s" : "unknown";
  const counts = new Map();
  for (const step of steps) counts.set(step.state, (counts.get(step.state) || 0) + 1);
  const body = $("counts").tBodies[0];
  body.replaceChildren(
    ...[...counts.entries()].sort().map(([state, n]) => {
      const tr = document.createElement("tr");
      tr.dataset.state = state;
      const a = document.createElement("td");
      a.textContent = state;
      const b = document.createElement("td");
      b.className = "n";
      b.textContent = String(n);
      tr.append(a, b);
      return tr;
    }),
  );
}

function layout(canvas, n) {
  const w = canvas.width;
  // Cells as large as fit a grid about 300 pixels high (5 px each at 10,000 subclouds), at most 40 px,
  // the canvas growing in height when needed.
  const cols = Math.max(1, Math.ceil(Math.sqrt((n * w) / 300)), Math.floor(w / 40));
  const size = Math.max(2, Math.floor(w / cols));
  const rows = Math.max(1, Math.ceil(n / cols));
  const height = Math.max(60, rows * size);
  if (canvas.height !== height) canvas.height = height;
  ui.layout = { cols, size };
}

function drawMap(f) {
  const canvas = $("fleet-map");
  const ctx = canvas.getContext("2d");
  layout(canvas, model.order.length);
  const { cols, size } = ui.layout;
  const gap = size >= 8 ? 1 : 0;
  const hide = $("filter-mode").value === "hide";
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  // One path per colour and dimming, filled once: a few fills per frame instead of one per cell.
  const paths = new Map();
  model.order.forEach((name, i) => {
    const sub = model.subclouds.get(name);
    const step = model.steps.get(name);
    const visible = matches(f, sub, step);
    if (!visible && hide) return;
    const key = category(sub, step) + (visible ? "" : "/dim");
    let path = paths.get(key);
    if (!path) paths.set(key, (path = new Path2D()));
    path.rect((i % cols) * size, Math.floor(i / cols) * size, size - gap, size - gap);
  });
  for (const [key, path] of paths) {
    const [cat, dim] = key.split("/");
    ctx.globalAlpha = dim ? 0.15 : 1;
    ctx.fillStyle = COLOURS[cat];
    ctx.fill(path);
  }
  ctx.globalAlpha = 1;
  const sel = model.order.indexOf(ui.selected);
  if (sel >= 0) {
    ctx.strokeStyle = "#1d2433";
    ctx.lineWidth = 2;
    ctx.strokeRect((sel % cols) * size + 1, Math.floor(sel / cols) * size + 1, size - 2 - gap, size - 2 - gap);
  }
}

/** The subcloud under a point of the canvas (CSS pixels from its top-left corner), or null. */
function cellAt(canvas, x, y) {
  const scale = canvas.width / canvas.getBoundingClientRect().width;
  const { cols, size } = ui.layout;
  const col = Math.floor((x * scale) / size);
  const row = Math.floor((y * scale) / size);
  if (col < 0 || col >= cols) return null;
  return model.order[row * cols + col] || null;
}

/** Where a subcloud's cell is, in CSS pixels from the canvas's top-left corner (for tests and the list). */
function cellCentre(name) {
  const canvas = $("fleet-map");
  const i = model.order.indexOf(name);
  if (i < 0) return null;
  const scale = canvas.getBoundingClientRect().width / canvas.width;
  const { cols, size } = ui.layout;
  return { x: ((i % cols) + 0.5) * size * scale, y: (Math.floor(i / cols) + 0.5) * size * scale };
}

function drawList(f) {
  const names = model.order.filter((n) => matches(f, model.subclouds.get(n), model.steps.get(n)));
  const pages = Math.max(1, Math.ceil(names.length / PAGE_SIZE));
  ui.page = Math.min(ui.page, pages - 1);
  const rows = names.slice(ui.page * PAGE_SIZE, (ui.page + 1) * PAGE_SIZE).map((name) => {
    const sub = model.subclouds.get(name) || {};
    const step = model.steps.get(name);
    const tr = document.createElement("tr");
    tr.dataset.name = name;
    for (const text of [name, sub["availability-status"], sub.sync_status, sub["kube-rootca-expiry"], step ? step.state : ""]) {
      const td = document.createElement("td");
      td.textContent = text || "";
      tr.append(td);
    }
    return tr;
  });
  $("subclouds").tBodies[0].replaceChildren(...rows);
  $("list-count").textContent = "(" + names.length + " of " + model.order.length + ")";
  $("page-text").textContent = "page " + (ui.page + 1) + " of " + pages;
  $("page-prev").disabled = ui.page === 0;
  $("page-next").disabled = ui.page >= pages - 1;
}

function drawDetail() {
  const name = ui.selected;
  $("detail").hidden = !name;
  if (!name) return;
  const sub = model.subclouds.get(name) || {};
  const step = model.steps.get(name);
  const full = ui.details.get(name) || {};
  const update = full["kube-rootca-update"] || {};
  const ph = stepPhaseHost(step);
  $("detail-name").textContent = name;
  $("detail-state").textContent = step ? step.state : "no step";
  $("detail-phase").textContent = ph.phase || update.phase || "";
  $("detail-host").textContent = ph.host;
  $("detail-percent").textContent = step ? stepPercent(step) + "%" : update.percent !== undefined ? update.percent + "%" : "";
  $("detail-details").textContent = step ? step.details || "" : "";
  $("detail-error").textContent = full["error-description"] || "";
  $("detail-availability").textContent = sub["availability-status"] || "";
  $("detail-sync").textContent = sub.sync_status || "";
  $("detail-expiry").textContent = sub["kube-rootca-expiry"] || full["kube-rootca-expiry"] || "";
  $("detail-subject").textContent = full["kube-rootca-subject"] || "";
}

function select(name) {
  ui.selected = name;
  if (name) fetchDetail(name);
  changed();
}

// ---- wiring --------------------------------------------------------------------------------------

function start() {
  $("token").value = token();
  $("legend").replaceChildren(
    ...Object.entries(COLOURS).map(([cat, colour]) => {
      const span = document.createElement("span");
      span.textContent = cat;
      span.style.setProperty("--c", colour);
      return span;
    }),
  );
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    model.lastEventId = null;
    follow();
  });
  $("create-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const body = { type: "kube-rootca-update", "subcloud-apply-type": "parallel" };
    const subject = $("create-subject").value.trim();
    if (subject) body.subject = subject;
    if ($("create-expiry").value) body["expiry-date"] = $("create-expiry").value;
    const max = Number($("create-max-parallel").value);
    if ($("create-max-parallel").value !== "") body["max-parallel-subclouds"] = max;
    call("POST", STRATEGY, body);
  });
  $("apply").addEventListener("click", () => call("POST", STRATEGY + "/actions?type=kube-rootca-update", { action: "apply" }));
  $("abort").addEventListener("click", () => call("POST", STRATEGY + "/actions?type=kube-rootca-update", { action: "abort" }));
  $("delete").addEventListener("click", () => call("DELETE", STRATEGY + "?type=kube-rootca-update"));
  for (const input of document.querySelectorAll("#filters input, #filters select")) input.addEventListener("change", changed);
  $("fleet-map").addEventListener("click", (e) => {
    const rect = e.currentTarget.getBoundingClientRect();
    select(cellAt(e.currentTarget, e.clientX - rect.left, e.clientY - rect.top));
  });
  $("subclouds").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) select(tr.dataset.name);
  });
  $("page-prev").addEventListener("click", () => { ui.page -= 1; changed(); });
  $("page-next").addEventListener("click", () => { ui.page += 1; changed(); });
  // The time left moves with the clock too: redraw the summary each second while applying.
  setInterval(() => { if (model.strategy && model.strategy.state === "applying") changed(); }, 1000);
  // For the browser tests: where a cell is, the model, and the event path and frame they time.
  window.dcUi = { cellCentre, model, apply, draw, readEvents, stepPhaseHost, stepPercent };
  changed();
  if (token()) follow();
}

document.addEventListener("DOMContentLoaded", start);
