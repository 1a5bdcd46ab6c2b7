// The lore explorer: one page, a view per hash route, every answer from the knowledge API (docs/openapi.json).
// Text from the API is only ever set as textContent, never parsed as HTML.
"use strict";

const config = window.EXPLORER_CONFIG || { apiBase: "/v1", region: "us-east-1" };
const view = document.getElementById("view");
const statusLine = document.getElementById("status");
const worldSelect = document.getElementById("world");

// ------------------------------------------------------------------ SigV4 (WebCrypto)
const enc = new TextEncoder();
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (text) => hex(await crypto.subtle.digest("SHA-256", enc.encode(text)));
async function hmac(key, text) {
  const raw = typeof key === "string" ? enc.encode(key) : key;
  const k = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return crypto.subtle.sign("HMAC", k, enc.encode(text));
}
const rfc3986 = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());

async function signedHeaders(method, url, body) {
  const creds = config.credentials ? await config.credentials() : null;
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (config.apiKey) headers["x-api-key"] = config.apiKey;
  if (!creds) return headers;
  const amzDate = new Date().toISOString().replace(/[:-]|\.\d{3}/g, "");
  const day = amzDate.slice(0, 8);
  const query = [...url.searchParams.entries()]
    .map(([k, v]) => [rfc3986(k), rfc3986(v)])
    .sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const signed = { host: url.host, "x-amz-date": amzDate };
  if (creds.sessionToken) signed["x-amz-security-token"] = creds.sessionToken;
  const names = Object.keys(signed).sort();
  const canonical = [
    method, url.pathname, query,
    names.map((n) => `${n}:${signed[n]}\n`).join(""), names.join(";"), await sha256(body || ""),
  ].join("\n");
  const scope = `${day}/${config.region}/execute-api/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, await sha256(canonical)].join("\n");
  let key = await hmac("AWS4" + creds.secretAccessKey, day);
  for (const part of [config.region, "execute-api", "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, toSign));
  headers["X-Amz-Date"] = amzDate;
  if (creds.sessionToken) headers["X-Amz-Security-Token"] = creds.sessionToken;
  headers.Authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}`;
  return headers;
}

async function api(method, path, { query, body } = {}) {
  const url = new URL(config.apiBase.replace(/\/$/, "") + path, window.location.href);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const text = body === undefined ? undefined : JSON.stringify(body);
  statusLine.textContent = "Loading…";
  const response = await fetch(url, { method, headers: await signedHeaders(method, url, text), body: text });
  const payload = await response.json().catch(() => ({}));
  statusLine.textContent = "";
  if (!response.ok) {
    const detail = (payload.details || []).map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ");
    throw new Error(`${payload.message || response.statusText}${detail ? ` (${detail})` : ""}`);
  }
  return payload;
}

// ------------------------------------------------------------------ DOM helpers
function el(tag, attrs = {}, ...children) {
  const node = tag === "svg" || attrs.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}
const svg = (tag, attrs = {}, ...children) => el(tag, { ...attrs, svg: true }, ...children);
const world = () => worldSelect.value;
const route = (...parts) => "#/" + parts.map(encodeURIComponent).join("/");
const when = (iso) => new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC";

function show(title, ...content) {
  view.replaceChildren(el("h2", { text: title }), ...content);
  document.title = `${title} · Lore explorer`;
}
function failure(error) {
  view.append(el("p", { class: "error", role: "alert", text: String(error.message || error) }));
  statusLine.textContent = "";
}

// Query words in a passage as <mark>: whole words, any case, a long word by its stem ("collected" marks
// "collection"); common words are left alone.
const STOPWORDS = new Set("the and for are was were who whom what when where which how why with from into this that these those its their there here has have had not but all any can our you your his her him she they them".split(" "));
function highlighted(text, query) {
  const words = [...new Set(query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [])].filter((w) => !STOPWORDS.has(w));
  if (!words.length) return [text];
  const stems = words.map((w) => (w.length > 5 ? w.slice(0, -2) : w).replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])((?:${stems.join("|")})[\\p{L}\\p{N}]*)`, "giu");
  return text.split(pattern).map((part, i) => (i % 2 ? el("mark", { text: part }) : part));
}

function citation(c) {
  return el("p", { class: "cite" },
    el("cite", { text: c.title || c.document_key }), ` · ${c.heading || "(top)"} · `,
    el("code", { text: `${c.document_key} [${c.start}:${c.end}]` }));
}

// ------------------------------------------------------------------ views
async function searchView(params) {
  const q = params.get("q") || "";
  const k = params.get("k") || "5";
  const input = el("input", { id: "q", name: "q", type: "search", value: q, required: "", size: "50" });
  const kInput = el("input", { id: "k", name: "k", type: "number", min: "1", max: "50", value: k });
  const form = el("form", { role: "search", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/search?q=${encodeURIComponent(input.value)}&k=${kInput.value}`;
  } }, el("label", {}, "Query", input), el("label", {}, "Passages", kInput), el("button", { type: "submit", text: "Search" }));
  show(`Search ${world()}`, form);
  if (!q) { input.focus(); return; }
  try {
    const answer = await api("POST", "/search", { body: { query: q, world_id: world(), k: Number(k) } });
    const list = el("ol", { class: "hits", "aria-label": "Results" });
    for (const hit of answer.hits) {
      list.append(el("li", { class: "hit" },
        el("strong", { text: `${hit.rank}. ` }), el("span", { class: "muted", text: `score ${hit.score.toFixed(3)}` }),
        el("p", {}, ...highlighted(hit.text, q)), citation(hit.citation)));
    }
    view.append(el("p", { text: `${answer.hits.length} passages for “${q}”` }), list);
  } catch (e) { failure(e); }
}

async function conceptsView(params) {
  const prefix = params.get("prefix") || "";
  const input = el("input", { id: "prefix", name: "prefix", type: "search", value: prefix });
  const form = el("form", { onsubmit: (e) => { e.preventDefault(); location.hash = `#/concepts?prefix=${encodeURIComponent(input.value)}`; } },
    el("label", {}, "Name starts with", input), el("button", { type: "submit", text: "Filter" }));
  show(`Concepts of ${world()}`, form);
  try {
    const answer = await api("GET", `/worlds/${encodeURIComponent(world())}/concepts`, { query: { prefix, limit: 500 } });
    const rows = answer.concepts.map((c) => el("tr", {},
      el("td", {}, el("a", { href: route("concept", c.name), text: c.name })), el("td", { text: c.kind }),
      el("td", { text: `v${c.current_version}` }),
      el("td", {}, c.relationships ? el("a", { href: route("graph", c.name), text: `${c.relationships} edges` }) : "none")));
    view.append(el("table", {}, el("caption", { class: "muted", text: `${answer.concepts.length} concepts${answer.truncated ? " (more: filter by name)" : ""}` }),
      el("thead", {}, el("tr", {}, ...["Concept", "Kind", "Version", "Relationships"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows)));
  } catch (e) { failure(e); }
}

async function conceptView(name) {
  show(name);
  try {
    const h = await api("GET", `/worlds/${encodeURIComponent(world())}/concepts/${encodeURIComponent(name)}/history`);
    show(h.name, el("p", { class: "muted", text: `${h.kind} · concept ${h.concept_id} · ${h.versions.length} versions, current v${h.current_version}` }),
      el("p", {}, el("a", { href: route("graph", h.name), text: "Relationship graph" })),
      el("h2", { text: "Versions over time" }),
      el("ol", { class: "plain" }, h.versions.map((v) => el("li", { class: "version" },
        el("strong", { text: `v${v.version}` }), el("span", { class: "muted", text: ` ${when(v.created_at)}` }),
        el("p", { text: v.description }),
        el("p", { class: "cite" }, "Source: ", v.source_event_id ? `story event ${v.source_event_id}`
          : el("cite", { text: v.source_document_title ? `${v.source_document_title} (${v.source_document_key})` : `${v.source_document_key || "unknown"} (document deleted)` }))))));
  } catch (e) { failure(e); }
}

// Nodes on rings by depth around the root, edges as lines labelled with their type.
function graphSvg(graph) {
  const size = 720, c = size / 2;
  const rings = {};
  for (const n of graph.nodes) (rings[n.depth] = rings[n.depth] || []).push(n);
  const deepest = Math.max(1, ...graph.nodes.map((n) => n.depth));
  const at = {};
  for (const [depth, nodes] of Object.entries(rings)) {
    nodes.forEach((n, i) => {
      const a = (2 * Math.PI * (i + 0.5 * (Number(depth) % 2))) / nodes.length - Math.PI / 2;
      const r = (Number(depth) * (c - 90)) / deepest;
      at[n.concept_id] = [c + r * Math.cos(a), c + r * Math.sin(a)];
    });
  }
  const lines = graph.edges.map((e) => {
    const [x1, y1] = at[e.source_concept_id], [x2, y2] = at[e.target_concept_id];
    return svg("g", {}, svg("line", { class: "edge", x1, y1, x2, y2, "marker-end": "url(#arrow)" }),
      svg("text", { class: "edge-label", x: x1 + (x2 - x1) * 0.45, y: y1 + (y2 - y1) * 0.45 - 4, "text-anchor": "middle", text: e.type }));
  });
  const nodes = graph.nodes.map((n) => {
    const [x, y] = at[n.concept_id];
    return svg("a", { href: route("graph", n.name), class: n.depth ? "node" : "root", "aria-label": `${n.name} (${n.kind})` },
      svg("circle", { cx: x, cy: y, r: n.depth ? 9 : 13 }), svg("text", { x, y: y + 24, "text-anchor": "middle", text: n.name }));
  });
  return svg("svg", { class: "graph", viewBox: `0 0 ${size} ${size}`, width: size, height: size, role: "img",
    "aria-label": `Relationship graph around ${graph.root.name}` },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "20", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b6b6b" }))), lines, nodes);
}

async function graphView(name, params) {
  const depth = params.get("depth") || "1";
  const select = el("select", { id: "depth", name: "depth" }, ["1", "2", "3"].map((d) => el("option", { value: d, selected: d === depth ? "" : null, text: d })));
  const form = el("form", { onsubmit: (e) => { e.preventDefault(); location.hash = `${route("graph", name)}?depth=${select.value}`; } },
    el("label", {}, "Hops", select), el("button", { type: "submit", text: "Show" }));
  show(`Relationships of ${name}`, form);
  try {
    const h = await api("GET", `/worlds/${encodeURIComponent(world())}/concepts/${encodeURIComponent(name)}/history`);
    const g = await api("GET", `/concepts/${h.concept_id}/relationships`, { query: { world_id: world(), depth } });
    const names = Object.fromEntries(g.nodes.map((n) => [n.concept_id, n.name]));
    view.append(el("p", {}, el("a", { href: route("concept", h.name), text: `${h.name}: versions and sources` })), graphSvg(g),
      el("h2", { text: `${g.edges.length} relationships${g.truncated ? " (truncated)" : ""}` }),
      el("ul", {}, g.edges.map((e) => el("li", {}, `${names[e.source_concept_id]} `, el("strong", { text: e.type.replace(/_/g, " ") }),
        ` ${names[e.target_concept_id]}`, e.description ? el("span", { class: "muted", text: ` — ${e.description}` }) : null))));
  } catch (e) { failure(e); }
}

async function timelineView(params) {
  const since = params.get("since") || "", kind = params.get("kind") || "", text = params.get("text") || "";
  const sinceInput = el("input", { id: "since", name: "since", type: "datetime-local", value: since });
  const kindInput = el("input", { id: "kind", name: "kind", value: kind, list: "kinds" });
  const textInput = el("input", { id: "text", name: "text", type: "search", value: text });
  const form = el("form", { onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ since: sinceInput.value, kind: kindInput.value, text: textInput.value });
    location.hash = `#/timeline?${q}`;
  } }, el("label", {}, "Since (UTC)", sinceInput), el("label", {}, "Kind", kindInput), el("label", {}, "Summary contains", textInput),
    el("button", { type: "submit", text: "Filter" }));
  show(`Story timeline of ${world()}`, form);
  try {
    const events = [];
    let cursor = null;
    do { // the whole timeline from `since`, page by page; kind and text filter it here
      const page = await api("GET", `/worlds/${encodeURIComponent(world())}/events`,
        { query: cursor ? { limit: 200, cursor } : { limit: 200, since: since ? `${since}:00Z` : undefined } });
      events.push(...page.events);
      cursor = page.next_cursor;
    } while (cursor && events.length < 2000);
    form.append(el("datalist", { id: "kinds" }, [...new Set(events.map((e) => e.kind))].map((k) => el("option", { value: k }))));
    const shown = events.filter((e) => (!kind || e.kind === kind) && (!text || e.summary.toLowerCase().includes(text.toLowerCase())));
    view.append(el("p", { text: `${shown.length} of ${events.length} events` }),
      el("ol", { class: "plain" }, shown.map((e) => el("li", { class: "event" },
        el("time", { datetime: e.occurred_at, text: when(e.occurred_at) }), " ", el("strong", { text: e.kind }),
        el("p", { text: e.summary }), el("p", { class: "cite", text: `event ${e.event_id}` })))));
  } catch (e) { failure(e); }
}

async function contextView(params) {
  const situation = params.get("situation") || "", budget = params.get("budget") || "1500";
  const area = el("textarea", { id: "situation", name: "situation", required: "" });
  area.value = situation;
  const budgetInput = el("input", { id: "budget", name: "budget", type: "number", min: "64", max: "16000", value: budget });
  const form = el("form", { onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/context?${new URLSearchParams({ situation: area.value, budget: budgetInput.value })}`;
  } }, el("label", {}, "Situation", area), el("label", {}, "Token budget", budgetInput), el("button", { type: "submit", text: "Build pack" }));
  show(`Context pack for ${world()}`, form);
  if (!situation) { area.focus(); return; }
  try {
    const pack = await api("POST", "/context", { body: { world_id: world(), situation, token_budget: Number(budget) } });
    view.append(el("p", { class: "tokens", text: `${pack.tokens_used} / ${pack.token_budget} tokens` }),
      el("p", { class: "muted", text: `counted by ${pack.tokenizer}; ${pack.dropped_duplicates} duplicate passages left out` }),
      el("h2", { text: `Concepts (${pack.concepts.length})` }),
      el("ul", {}, pack.concepts.map((c) => el("li", {}, el("a", { href: route("concept", c.name), text: c.name }),
        ` (${c.kind}, v${c.version}, ${c.tokens} tokens): ${c.description}`))),
      el("h2", { text: `Recent story events (${pack.events.length})` }),
      el("ul", {}, pack.events.map((e) => el("li", { text: `${when(e.occurred_at)} ${e.kind}: ${e.summary}` }))),
      el("h2", { text: `Passages (${pack.chunks.length})` }),
      el("ol", { class: "plain" }, pack.chunks.map((ch) => el("li", { class: "chunk" },
        el("span", { class: "muted", text: `similarity ${ch.similarity.toFixed(3)} · ${ch.tokens} tokens` }),
        el("p", { text: ch.text }), citation(ch.citation)))));
  } catch (e) { failure(e); }
}

// ------------------------------------------------------------------ routing
async function render() {
  const [path, search] = (location.hash.slice(1) || "/search").split("?");
  const [, name, arg] = path.split("/").map(decodeURIComponent);
  const params = new URLSearchParams(search || "");
  for (const link of document.querySelectorAll("nav a")) {
    const active = link.getAttribute("href") === `#/${name}` || (name === "concept" || name === "graph") && link.getAttribute("href") === "#/concepts";
    if (active) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (!world()) { show("No worlds yet", el("p", { text: "Ingest documents first: kb ingest samples/emberfall --world emberfall" })); return; }
  if (name === "concept" && arg) await conceptView(arg);
  else if (name === "graph" && arg) await graphView(arg, params);
  else if (name === "concepts") await conceptsView(params);
  else if (name === "timeline") await timelineView(params);
  else if (name === "context") await contextView(params);
  else await searchView(params);
  view.dataset.ready = name || "search";
}

async function start() {
  try {
    const { worlds } = await api("GET", "/worlds");
    for (const w of worlds) worldSelect.append(el("option", { value: w.world_id, text: `${w.name || w.world_id} (${w.world_id})` }));
    const chosen = new URLSearchParams(location.search).get("world") || localStorage.getItem("explorer.world");
    if (chosen && worlds.some((w) => w.world_id === chosen)) worldSelect.value = chosen;
    const summary = () => {
      const w = worlds.find((x) => x.world_id === world());
      document.getElementById("world-help").textContent = w ? `${w.documents} documents, ${w.concepts} concepts, ${w.events} events` : "";
    };
    summary();
    worldSelect.addEventListener("change", () => { localStorage.setItem("explorer.world", world()); summary(); render(); });
  } catch (e) { failure(e); return; }
  window.addEventListener("hashchange", render);
  await render();
}

start();
