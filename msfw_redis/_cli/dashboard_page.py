"""The dashboard's one page: HTML, CSS and script inline, no external asset (works offline).

The script opens ``/events`` (Server-Sent Events: a full fleet view after every breaker
or health event the server hears) and re-reads ``/api/fleet`` every 15 s as a safety
net. Each service card shows its fleet-wide cache hit ratio when the view has one
(read by the server's full re-reads). Countdowns tick locally from ``retry_after``;
sparklines are drawn from the change in fleet-wide totals between views.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>msfw-redis fleet</title>
<style>
:root { --bg:#0f1217; --tile:#181d25; --line:#262d38; --text:#d8dee9; --dim:#7d8796;
  --closed:#2fbf71; --open:#e5484d; --half_open:#f5a524; --forced_open:#b4236b;
  --forced_closed:#3b82f6; --disabled:#6b7280; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text);
  font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display:flex; align-items:baseline; gap:16px; padding:16px 24px;
  border-bottom:1px solid var(--line); }
header h1 { font-size:18px; margin:0; font-weight:600; letter-spacing:.02em; }
header .meta { color:var(--dim); font-size:12px; }
#live { margin-left:auto; font-size:12px; color:var(--dim); }
#live::before { content:""; display:inline-block; width:8px; height:8px; border-radius:50%;
  margin-right:6px; background:var(--disabled); vertical-align:middle; }
#live.on::before { background:var(--closed); box-shadow:0 0 6px var(--closed); }
main { padding:20px 24px; display:grid; gap:18px;
  grid-template-columns:repeat(auto-fill, minmax(340px, 1fr)); }
.service { background:var(--tile); border:1px solid var(--line); border-radius:10px;
  padding:14px 16px; }
.service h2 { font-size:15px; margin:0 0 10px; display:flex; align-items:center; gap:8px; }
.pill { font-size:11px; font-weight:600; padding:2px 8px; border-radius:99px;
  text-transform:uppercase; letter-spacing:.04em; color:#0b0d11; }
.breaker { border-radius:8px; padding:10px 12px; margin-bottom:10px;
  border-left:6px solid var(--c); background:color-mix(in srgb, var(--c) 14%, #12161c); }
.breaker .top { display:flex; justify-content:space-between; align-items:center; }
.breaker .name { font-weight:600; }
.breaker .state { font-weight:700; color:var(--c); text-transform:uppercase;
  font-size:12px; letter-spacing:.05em; }
.stats { display:grid; grid-template-columns:repeat(4, 1fr); gap:6px; margin-top:8px; }
.stat b { display:block; font-size:15px; font-variant-numeric:tabular-nums; }
.stat span { color:var(--dim); font-size:11px; }
svg.spark { display:block; width:100%; height:26px; margin-top:8px; }
.instances { list-style:none; margin:6px 0 0; padding:0; }
.instances li { display:flex; align-items:center; gap:8px; padding:3px 0; color:var(--dim);
  font-size:12px; font-family:ui-monospace, SFMono-Regular, Menlo, monospace; }
.dot { width:8px; height:8px; border-radius:50%; flex:none; }
.empty { color:var(--dim); padding:40px; }
.cache { color:var(--dim); font-size:12px; margin:2px 0 8px; }
.cache b { color:var(--text); font-variant-numeric:tabular-nums; }
</style></head>
<body>
<header><h1>msfw-redis fleet</h1><span class="meta" id="meta"></span>
<span id="live">connecting</span></header>
<main id="grid"><div class="empty">Reading the fleet&hellip;</div></main>
<script>
"use strict";
const COLORS = {closed:"--closed", open:"--open", half_open:"--half_open",
  forced_open:"--forced_open", forced_closed:"--forced_closed", disabled:"--disabled",
  healthy:"--closed", recovering:"--half_open", suspect:"--half_open", unhealthy:"--open"};
const history = new Map();
let view = null, received = 0;

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const kid of kids) node.append(kid);
  return node;
}
function color(state) { return "var(" + (COLORS[state] || "--disabled") + ")"; }
function remember(b) {
  const h = history.get(b.name) || [];
  const last = h[h.length - 1];
  if (!last || last.s !== b.total_successes || last.f !== b.total_failures) {
    h.push({s: b.total_successes, f: b.total_failures});
    if (h.length > 41) h.shift();
  }
  history.set(b.name, h);
  return h;
}
function spark(h) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 200 26");
  svg.setAttribute("preserveAspectRatio", "none");
  const deltas = [];
  for (let i = 1; i < h.length; i++) {
    deltas.push([Math.max(0, h[i].s - h[i-1].s), Math.max(0, h[i].f - h[i-1].f)]);
  }
  const top = Math.max(1, ...deltas.map(d => d[0] + d[1]));
  const w = 200 / 40;
  deltas.slice(-40).forEach((d, i) => {
    const ok = d[0] / top * 24, bad = d[1] / top * 24;
    for (const [hgt, y, c] of [[ok, 26 - ok - bad, "--closed"], [bad, 26 - bad, "--open"]]) {
      if (hgt <= 0) continue;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", i * w + 0.5); r.setAttribute("width", w - 1);
      r.setAttribute("y", y); r.setAttribute("height", hgt);
      r.setAttribute("fill", "var(" + c + ")");
      svg.append(r);
    }
  });
  return svg;
}
function stat(value, label, cls) {
  return el("div", {class: "stat"}, el("b", cls ? {class: cls} : {}, String(value)),
            el("span", {}, label));
}
function breakerTile(b) {
  const total = b.total_successes + b.total_failures;
  const rate = total ? (100 * b.total_failures / total).toFixed(1) + "%" : "-";
  const tile = el("div", {class: "breaker", "data-breaker": b.name, "data-state": b.state,
    style: "--c:" + color(b.state)},
    el("div", {class: "top"}, el("span", {class: "name"}, b.endpoint || "service-wide"),
       el("span", {class: "state"}, b.state.replace("_", " "))),
    el("div", {class: "stats"}, stat(rate, "failure rate"), stat(b.trips, "trips"),
       stat(b.generation, "generation"),
       b.state === "half_open" ? stat(b.active_probes, "probes")
         : stat(b.retry_after > 0 ? b.retry_after.toFixed(1) + "s" : "-", "open for",
                b.retry_after > 0 ? "countdown" : "")),
    spark(remember(b)));
  const cd = tile.querySelector(".countdown");
  if (cd) cd.dataset.until = String(received + b.retry_after * 1000);
  return tile;
}
function render() {
  const grid = document.getElementById("grid");
  const services = new Map();
  for (const s of view.services) services.set(s.service, {svc: s, breakers: []});
  for (const c of view.caches || []) {
    if (!services.has(c.service)) services.set(c.service, {svc: null, breakers: []});
  }
  const caches = new Map((view.caches || []).map(c => [c.service, c]));
  for (const b of view.breakers) {
    if (!services.has(b.service)) services.set(b.service, {svc: null, breakers: []});
    services.get(b.service).breakers.push(b);
  }
  const cards = [];
  for (const [name, {svc, breakers}] of [...services].sort()) {
    const health = svc && svc.healthy !== null ? (svc.healthy ? "healthy" : "unhealthy") : null;
    const h2 = el("h2", {}, name);
    if (health) h2.append(el("span", {class: "pill", style: "background:" + color(health)},
                             health));
    const card = el("section", {class: "service", "data-service": name}, h2);
    const c = caches.get(name);
    if (c) card.append(el("div", {class: "cache", "data-cache": name}, "cache hit ratio ",
                          el("b", {}, Math.round(100 * c.hit_ratio) + " %"),
                          " (last " + c.window_minutes + " min)"));
    breakers.forEach(b => card.append(breakerTile(b)));
    if (svc && svc.instances.length) {
      const ul = el("ul", {class: "instances"});
      for (const i of svc.instances) {
        ul.append(el("li", {}, el("span", {class: "dot", style: "background:" + color(i.status)}),
                     i.instance_id + "  " + i.status));
      }
      card.append(ul);
    }
    cards.push(card);
  }
  grid.replaceChildren(...(cards.length ? cards
    : [el("div", {class: "empty"}, "No breakers or services recorded yet.")]));
  document.getElementById("meta").textContent = view.store_up
    ? view.breakers.length + " breakers, " + view.services.length + " services"
    : "store unreachable";
}
function show(data) { view = data; received = Date.now(); render(); }
function tick() {
  for (const node of document.querySelectorAll(".countdown")) {
    const left = (Number(node.dataset.until) - Date.now()) / 1000;
    node.textContent = left > 0 ? left.toFixed(1) + "s" : "0.0s";
  }
}
async function refresh() {
  try { show(await (await fetch("api/fleet", {cache: "no-store"})).json()); } catch (e) {}
}
function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("events");
  source.addEventListener("fleet", ev => show(JSON.parse(ev.data)));
  source.onopen = () => { live.className = "on"; live.textContent = "live"; };
  source.onerror = () => { live.className = ""; live.textContent = "reconnecting"; };
}
refresh(); connect();
setInterval(refresh, 15000);
setInterval(tick, 100);
</script></body></html>
"""
