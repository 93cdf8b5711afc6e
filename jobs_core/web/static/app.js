// The jobs_core web view: renders the snapshots /events sends, the name panel and the lineage graph.
// Every text from Redis goes into the page through textContent (never as HTML), with control and
// bidirectional characters shown as escapes, as the jobs-core command shows them.
"use strict";

const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;
const SVG = "http://www.w3.org/2000/svg";

function printable(value) {
  return String(value).replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0");
  });
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : printable(child));
  }
  return node;
}

function span(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  const neg = seconds < 0;
  let s = Math.abs(seconds);
  let text;
  if (s < 10) text = s.toFixed(1) + "s";
  else if (s < 60) text = Math.floor(s) + "s";
  else if (s < 3600) text = Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  else if (s < 86400) text = Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  else text = Math.floor(s / 86400) + "d" + String(Math.floor(s % 86400 / 3600)).padStart(2, "0") + "h";
  return neg ? text + " ago" : text;
}

function when(epoch) {
  if (epoch === null || epoch === undefined) return "unknown";
  return new Date(epoch * 1000).toISOString().replace(/\.\d+Z$/, "Z");
}

const state = {
  config: null,
  snapshot: null,
  offset: 0,           // server time minus this browser's clock, seconds
  wantJob: null,       // ?job= deep link
  scrolledToJob: false,
  shown: null,         // the show document in the panel
};

function serverNow() {
  return Date.now() / 1000 + state.offset;
}

function nameLink(name) {
  return el("span", {class: "name", data: {name}, onclick: () => openName(name)}, name);
}

function list(names) {
  const cell = el("td");
  names.forEach((n, i) => {
    if (i) cell.append(", ");
    cell.append(nameLink(n));
  });
  return cell;
}

function holderText(h) {
  if (!h) return "";
  let text = h.job_id;
  if (h.host) text += " on " + h.host + " pid " + h.pid;
  if (h.token !== null && h.token !== undefined) text += " (token " + h.token + ")";
  return text;
}

// -- the snapshot ----------------------------------------------------------------------------

function render(doc) {
  state.snapshot = doc;
  const status = doc.status;
  if (status.server_time !== null) state.offset = status.server_time - Date.now() / 1000;
  document.getElementById("where").textContent = printable(doc.where + ", prefix " + JSON.stringify(status.prefix));
  const banner = document.getElementById("banner");
  const live = document.getElementById("live");
  if (doc.ok) {
    banner.hidden = true;
    live.dataset.state = "live";
    live.textContent = "live";
  } else {
    banner.hidden = false;
    const since = doc.down_since ? " since " + when(doc.down_since) : "";
    const last = doc.read_at ? "; showing the state read at " + when(doc.read_at) : "";
    banner.textContent = printable("Redis unreachable" + since + ": " + doc.error + last + ". Retrying…");
    live.dataset.state = "down";
    live.textContent = "Redis down";
  }
  document.getElementById("counts").textContent =
    status.running.length + " running, " + status.waiting.length + " waiting";
  renderRunning(status.running);
  renderWaiting(status.waiting, doc.waiting_detail);
  renderLimits(status.limits || []);
  tick();
  findWantedJob();
}

function renderRunning(running) {
  const body = document.querySelector("#running tbody");
  const rows = document.createDocumentFragment();
  for (const j of running) {
    const holder = j.host ? j.host + " pid " + j.pid : (j.client === "jobspy" ? "(jobs.py: not recorded)" : "");
    const lineage = j.lineage ? el("span", {class: "name", onclick: () => drawLineage(j.lineage)}, j.lineage) : "";
    rows.append(el("tr", {data: {job: j.job_id}},
      el("td", {}, j.job_id), el("td", {}, lineage), list(j.inputs), list(j.outputs), el("td", {}, holder),
      el("td", {}, j.token === null ? "" : String(j.token)),
      el("td", {class: "left", data: {expires: String(j.expires)}}), el("td", {}, j.client)));
  }
  body.replaceChildren(rows);
  document.getElementById("running-count").textContent = "(" + running.length + ")";
  document.getElementById("running-empty").hidden = running.length > 0;
}

function blockerItem(b) {
  const item = el("li", {}, el("span", {class: "reason"}, b.reason), " ", nameLink(b.name));
  if (b.holder) item.append(" — " + printable(holderText(b.holder)));
  else if (b.ahead) item.append(" — behind " + printable(b.ahead));
  else if (b.reason === "input_missing") item.append(" — not written");
  return item;
}

function renderWaiting(waiting, detail) {
  const body = document.querySelector("#waiting tbody");
  const rows = document.createDocumentFragment();
  waiting.forEach((w, i) => {
    const d = detail[i] || {blockers: [], lines: {}};
    const blockers = el("ul", {class: "blockers"});
    d.blockers.forEach((b) => blockers.append(blockerItem(b)));
    const lines = el("ul", {class: "lines"});
    for (const [name, where] of Object.entries(d.lines)) {
      const first = where.place === 1 ? "first" : "first: " + where.first;
      lines.append(el("li", {data: {name, place: String(where.place)}}, nameLink(name),
        " " + (where.writes ? "(writes)" : "(reads)") + " — place " + where.place + " of " + where.of +
        (where.place === 1 ? "" : " (" + printable(first) + ")")));
    }
    const waiter = w.host ? w.host + " pid " + w.pid : "";
    rows.append(el("tr", {data: {job: w.job_id}},
      el("td", {}, w.job_id), el("td", {}, w.lineage || ""), el("td", {}, blockers), el("td", {}, lines),
      el("td", {}, waiter), el("td", {class: "since", data: {since: String(w.since)}}),
      el("td", {class: "deadline", data: {deadline: String(w.deadline)}})));
  });
  body.replaceChildren(rows);
  document.getElementById("waiting-count").textContent = "(" + waiting.length + ")";
  document.getElementById("waiting-empty").hidden = waiting.length > 0;
}

function renderLimits(limits) {
  const section = document.getElementById("limits-section");
  section.hidden = limits.length === 0;
  const rows = document.createDocumentFragment();
  for (const l of limits) {
    rows.append(el("tr", {},
      el("td", {}, l.name), el("td", {}, l.used + " / " + (l.capacity === null ? "not set" : l.capacity)),
      el("td", {}, l.holders.map((h) => h.job_id + " ×" + h.slots).join(", ")),
      el("td", {}, l.line.map((h) => h.job_id + " ×" + h.slots).join(", "))));
  }
  document.querySelector("#limits tbody").replaceChildren(rows);
}

// Lease left and waiting times count on between snapshots.
function tick() {
  const now = serverNow();
  for (const cell of document.querySelectorAll("#running td.left")) {
    const left = Number(cell.dataset.expires) - now;
    cell.textContent = left > 0 ? span(left) : "expired " + span(-left) + " ago";
    cell.classList.toggle("expired", left <= 0);
  }
  for (const cell of document.querySelectorAll("#waiting td.since")) {
    const since = Number(cell.dataset.since);
    cell.textContent = Number.isFinite(since) && cell.dataset.since !== "null" ? span(now - since) + " ago" : "unknown";
  }
  for (const cell of document.querySelectorAll("#waiting td.deadline")) {
    const left = Number(cell.dataset.deadline) - now;
    cell.textContent = "in " + span(Math.max(left, 0));
  }
}

// ?job=<id>: highlighted on every snapshot, scrolled to the first time it is found
function findWantedJob() {
  if (state.wantJob === null) return;
  const notice = document.getElementById("notice");
  for (const row of document.querySelectorAll("tr[data-job]")) {
    if (row.dataset.job === state.wantJob) {
      row.classList.add("highlight");
      if (!state.scrolledToJob) row.scrollIntoView({block: "center"});
      state.scrolledToJob = true;
      notice.hidden = true;
      return;
    }
  }
  notice.hidden = false;
  notice.textContent = printable("Job " + state.wantJob + " is not running or waiting now.");
}

function connect() {
  const source = new EventSource("events");
  const live = document.getElementById("live");
  source.addEventListener("snapshot", (event) => render(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    live.dataset.state = "connecting";
    live.textContent = "reconnecting to the server";
  });
}

// -- the name panel --------------------------------------------------------------------------

async function getJSON(path) {
  try {
    const response = await fetch(path, {headers: {"Accept": "application/json"}});
    const type = response.headers.get("content-type") || "";
    const doc = type.startsWith("application/json") ? await response.json()
      : {error: "the server answered " + response.status + " " + response.statusText};
    return {ok: response.ok, status: response.status, doc};
  } catch (error) {
    return {ok: false, status: 0, doc: {error: "the server cannot be reached: " + error}};
  }
}

function openName(name) {
  document.getElementById("show-name").value = name;
  showName(name);
  document.getElementById("lineage-name").value = name;
  drawLineage(name);
}

async function showName(name) {
  const panel = document.getElementById("show-panel");
  panel.replaceChildren(el("p", {class: "muted"}, "reading " + printable(name) + "…"));
  const {ok, doc} = await getJSON("api/show?" + new URLSearchParams({name}).toString());
  if (!ok) {
    panel.replaceChildren(el("p", {class: "error"}, doc.error));
    return;
  }
  state.shown = doc;
  const rows = el("dl", {id: "show-facts", data: {name: doc.name}});
  const add = (term, value) => rows.append(el("dt", {}, term), el("dd", {}, value));
  add("name", doc.name);
  if (doc.written) {
    let how = "yes, by " + doc.writer;
    if (doc.token !== null) how += " with token " + doc.token;
    if (doc.written_at !== null) how += " at " + when(doc.written_at);
    if (doc.forced) how += " (marked written by a repair)";
    add("written", how);
    add("ttl", doc.ttl === null ? "none (kept until deleted)" : span(doc.ttl));
  } else {
    add("written", "no");
  }
  add("write lock", doc.write_lock ? holderText(doc.write_lock) + ", lease left " + span(doc.write_lock.left) : "none");
  add("read locks", doc.readers.length ? doc.readers.map(holderText).join("; ") : "none");
  add("waiting", doc.waiters.length ? doc.waiters.join(", ") : "none");
  for (const p of doc.problems) add("unreadable", p);
  panel.replaceChildren(rows);
  if (state.config && state.config.allow_repairs) panel.append(repairButtons(doc));
}

function repairButtons(doc) {
  const row = el("div", {class: "row"});
  const lockedBy = doc.write_lock ? [doc.write_lock.job_id] : [];
  const readers = doc.readers.map((r) => r.job_id);
  const shown = {};
  shown[doc.name] = {write_lock: lockedBy[0] || null, readers, writer: doc.written ? doc.writer : null};
  if (doc.write_lock || doc.readers.length) {
    const plan = [];
    if (doc.readers.length) plan.push("read locks on " + printable(doc.name) + ": " + readers.map(printable).join(", "));
    if (doc.write_lock) plan.push("write lock on " + printable(doc.name) + ": " + printable(lockedBy[0]));
    row.append(el("button", {class: "danger", id: "repair-unlock", onclick: () => repair("unlock",
      "Force-release these locks? Their holders are fenced out and write nothing.", plan,
      {inputs: doc.readers.length ? [doc.name] : [], outputs: doc.write_lock ? [doc.name] : [], shown})},
      "Unlock…"));
  }
  if (!doc.written) {
    row.append(el("button", {class: "danger", id: "repair-create", onclick: () => repair("create",
      "Mark this output written without running a job?", [printable(doc.name) +
        (doc.write_lock ? " (its writer " + printable(lockedBy[0]) + " is fenced out)" : "")],
      {outputs: [doc.name], shown})}, "Mark written…"));
  }
  return row;
}

async function repair(kind, question, plan, body) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = question;
  document.getElementById("confirm-plan").textContent = plan.join("\n");
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, {once: true}));
  if (dialog.returnValue !== "ok") return;
  const headers = {"Content-Type": "application/json"};
  headers[state.config.repair_header] = state.config.repair_token;
  const response = await fetch("api/" + kind, {method: "POST", headers, body: JSON.stringify(body)});
  const doc = await response.json();
  const notice = document.getElementById("notice");
  notice.hidden = false;
  notice.textContent = printable(response.ok ? kind + " done: " + JSON.stringify(doc) : doc.error);
  showName(state.shown.name);
}

// -- the lineage graph -----------------------------------------------------------------------

async function drawLineage(name) {
  const depth = document.getElementById("lineage-depth").value;
  const direction = document.getElementById("lineage-direction").value;
  const params = new URLSearchParams();
  if (name) {
    params.set("name", name);
    if (depth) params.set("depth", depth);
    if (direction) params.set("direction", direction);
  }
  document.getElementById("lineage-name").value = name || "";
  const note = document.getElementById("lineage-note");
  const {ok, doc} = await getJSON("api/lineage?" + params.toString());
  const holder = document.getElementById("lineage-graph");
  if (!ok) {
    note.textContent = printable(doc.error);
    holder.replaceChildren();
    return;
  }
  note.textContent = printable((name ? "around " + doc.start : "the whole graph") + ": " + doc.nodes.length +
    " nodes, " + doc.edges.length + " edges. Click a node to look around it.");
  holder.replaceChildren(graphSvg(doc));
}

function layers(doc) {
  const layer = new Map();
  const out = new Map(), into = new Map();
  for (const n of doc.nodes) { out.set(n.name + "\u0000" + n.kind, []); into.set(n.name + "\u0000" + n.kind, []); }
  const key = (name, kind) => name + "\u0000" + kind;
  for (const e of doc.edges) {
    const from = key(e.from, e.kind === "input" ? "data" : "job");
    const to = key(e.to, e.kind === "input" ? "job" : "data");
    if (out.has(from)) out.get(from).push(to);
    if (into.has(to)) into.get(to).push(from);
  }
  const roots = doc.nodes.filter((n) => n.root).map((n) => key(n.name, n.kind));
  if (roots.length) {
    // signed distance from the start: upstream to the left, downstream to the right
    const queue = [];
    for (const r of roots) { layer.set(r, 0); queue.push(r); }
    while (queue.length) {
      const here = queue.shift();
      for (const there of out.get(here) || []) {
        if (!layer.has(there) && layer.get(here) >= 0) { layer.set(there, layer.get(here) + 1); queue.push(there); }
      }
      for (const there of into.get(here) || []) {
        if (!layer.has(there) && layer.get(here) <= 0) { layer.set(there, layer.get(here) - 1); queue.push(there); }
      }
    }
  }
  // whole graph (and anything left): longest path from the sources, cycles cut
  const indegree = new Map([...into].map(([k, v]) => [k, v.length]));
  const queue = [...indegree].filter(([, d]) => d === 0).map(([k]) => k);
  for (const k of queue) if (!layer.has(k)) layer.set(k, 0);
  const seen = new Set();
  while (queue.length) {
    const here = queue.shift();
    seen.add(here);
    for (const there of out.get(here) || []) {
      if (!roots.length) layer.set(there, Math.max(layer.get(there) ?? 0, layer.get(here) + 1));
      indegree.set(there, indegree.get(there) - 1);
      if (indegree.get(there) === 0) queue.push(there);
    }
  }
  for (const n of doc.nodes) if (!layer.has(key(n.name, n.kind))) layer.set(key(n.name, n.kind), 0);
  return {layer, key};
}

function graphSvg(doc) {
  const {layer, key} = layers(doc);
  const W = 180, H = 30, GX = 56, GY = 14, PAD = 16;
  const values = [...layer.values()];
  const low = Math.min(0, ...values), high = Math.max(0, ...values);
  const columns = new Map();
  const nodes = [...doc.nodes].sort((a, b) => (a.kind + a.name).localeCompare(b.kind + b.name));
  for (const n of nodes) {
    const l = layer.get(key(n.name, n.kind));
    if (!columns.has(l)) columns.set(l, []);
    columns.get(l).push(n);
  }
  const place = new Map();
  let rows = 0;
  for (const [l, column] of columns) {
    column.forEach((n, i) => place.set(key(n.name, n.kind),
      {x: PAD + (l - low) * (W + GX), y: PAD + i * (H + GY)}));
    rows = Math.max(rows, column.length);
  }
  const width = PAD * 2 + (high - low + 1) * (W + GX) - GX;
  const height = PAD * 2 + Math.max(rows, 1) * (H + GY) - GY;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const defs = document.createElementNS(SVG, "defs");
  const marker = document.createElementNS(SVG, "marker");
  for (const [k, v] of Object.entries({id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse"})) marker.setAttribute(k, v);
  const tip = document.createElementNS(SVG, "path");
  tip.setAttribute("d", "M 0 0 L 10 5 L 0 10 z");
  tip.setAttribute("fill", "#98a2b3");
  marker.append(tip);
  defs.append(marker);
  svg.append(defs);
  for (const e of doc.edges) {
    const a = place.get(key(e.from, e.kind === "input" ? "data" : "job"));
    const b = place.get(key(e.to, e.kind === "input" ? "job" : "data"));
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const bend = Math.max(Math.abs(x2 - x1) / 2, 40);
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("class", "edge");
    path.setAttribute("d", `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`);
    path.setAttribute("marker-end", "url(#arrow)");
    path.dataset.from = e.from;
    path.dataset.to = e.to;
    svg.append(path);
  }
  for (const n of nodes) {
    const p = place.get(key(n.name, n.kind));
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", "node " + n.kind + (n.root ? " root" : ""));
    g.setAttribute("transform", `translate(${p.x},${p.y})`);
    g.dataset.name = n.name;
    g.dataset.kind = n.kind;
    const title = document.createElementNS(SVG, "title");
    title.textContent = printable(n.kind + ": " + n.name);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("width", W);
    rect.setAttribute("height", H);
    rect.setAttribute("rx", n.kind === "data" ? 4 : 14);
    const text = document.createElementNS(SVG, "text");
    text.setAttribute("x", 8);
    text.setAttribute("y", H / 2 + 4);
    const label = printable(n.name);
    text.textContent = label.length > 23 ? label.slice(0, 22) + "…" : label;
    g.append(title, rect, text);
    g.addEventListener("click", () => {
      if (n.kind === "data") openName(n.name); else drawLineage(n.name);
    });
    svg.append(g);
  }
  return svg;
}

// -- start -----------------------------------------------------------------------------------

async function start() {
  const {doc} = await getJSON("api/config");
  state.config = doc;
  const params = new URLSearchParams(window.location.search);
  state.wantJob = params.get("job");
  document.getElementById("show-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = document.getElementById("show-name").value;
    if (name) showName(name);
  });
  document.getElementById("lineage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    drawLineage(document.getElementById("lineage-name").value);
  });
  connect();
  setInterval(tick, 250);
  const name = params.get("name");
  if (name) openName(name);
}

start();
