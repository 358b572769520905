// Tributary's operator console: no dependencies, same origin, the JSON API polled with fetch() (no reload).
"use strict";

const D = document.body.dataset;
const UI = new URL(D.ui + "/", location.href);
const API = new URL("..", UI);
const POLL_MS = 2000;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const RETRYABLE = new Set(["failed", "cancelled"]);
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const COLORS = { queued: "#9aa5b1", running: "#3b82f6", succeeded: "#16a34a", failed: "#dc2626", cancelled: "#a16207" };

// ---- small helpers -------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
const content = () => document.getElementById("content");
function show(...nodes) { content().replaceChildren(...nodes); }
// replaceChildren without the nulls of optional sections (it would print them as "null").
function put(el, ...nodes) { el.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false)); }
function banner(text, kind) {
  const b = document.getElementById("banner");
  b.hidden = !text;
  b.textContent = text || "";
  b.className = "banner " + (kind || "error");
}
function api(path) { return new URL(path.replace(/^\//, ""), API).href; }
function ui(path) { return new URL(path.replace(/^\//, ""), UI).href; }

class ApiFailure extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
  }
}
async function call(url, options) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, ...options });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) throw new ApiFailure(r.status, body);
  return body;
}
const getJSON = (url) => call(url);
function postJSON(url, data) {
  return call(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(data || {}),
  });
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toISOString().replace("T", " ").slice(0, 19);
}
function duration(job) {
  if (!job.started_at) return "—";
  const end = job.finished_at ? new Date(job.finished_at) : new Date();
  const sec = Math.max(0, (end - new Date(job.started_at)) / 1000);
  return sec < 60 ? sec.toFixed(1) + " s" : sec < 3600 ? (sec / 60).toFixed(1) + " min" : (sec / 3600).toFixed(1) + " h";
}
function bytes(n) {
  if (!n) return "0";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function money(x) {
  if (x === null || x === undefined) return "—";
  return x < 0.01 ? "$" + x.toExponential(2) : "$" + x.toFixed(4);
}
const badge = (status) => h("span", { class: "badge " + status, "data-status": status }, status);
const errorText = (e) => (e ? `${e.kind}: ${e.type}: ${e.message}` : "");

// Live polling: one loop per page, paused while the tab is hidden, its state shown in the header.
let timer = null;
function live(fn, every) {
  const tick = async () => {
    try {
      await fn();
      document.getElementById("live").textContent = "live · " + new Date().toLocaleTimeString();
      if (!document.getElementById("banner").classList.contains("note")) banner("");
    } catch (e) {
      banner(e.message);
    }
    timer = setTimeout(tick, every || POLL_MS);
  };
  clearTimeout(timer);
  tick();
}

// The operations the API offers, read from its OpenAPI document: a button whose operation is missing is
// disabled and says why (no request is made that would answer 404).
let operationsCache = null;
function enumOf(schema, doc) {
  if (!schema || typeof schema !== "object") return null;
  if (schema.$ref) return enumOf(schema.$ref.split("/").slice(1).reduce((o, k) => (o || {})[k], doc), doc);
  if (Array.isArray(schema.enum)) return schema.enum;
  for (const k of ["anyOf", "oneOf", "allOf"]) {
    for (const sub of schema[k] || []) { const e = enumOf(sub, doc); if (e) return e; }
  }
  return null;
}
async function operations() {
  if (operationsCache) return operationsCache;
  let doc = {};
  try { doc = await getJSON(api("/v1/openapi.json")); } catch (_) { doc = {}; }
  const paths = doc.paths || {};
  const find = (re) => Object.keys(paths).find((p) => re.test(p) && paths[p].post);
  const statusParam = (((paths["/v1/jobs"] || {}).get || {}).parameters || []).find((p) => p.name === "status");
  operationsCache = {
    statuses: (statusParam && enumOf(statusParam.schema, doc)) || STATUSES,
    queues: paths["/v1/queues"] && paths["/v1/queues"].get ? "/v1/queues" : null,
    retry: find(/^\/v1\/jobs\/\{[^}]+\}:retry$/),
    cancel: find(/^\/v1\/jobs\/\{[^}]+\}:cancel$/),
    pause: find(/\/\{[^}]+\}:pause$/),
    resume: find(/\/\{[^}]+\}:resume$/),
  };
  return operationsCache;
}
const fill = (template, id) => template.replace(/\{[^}]+\}/, encodeURIComponent(id));

function actionButton(label, template, id, { missing, confirmText, done, disabledReason, body } = {}) {
  const reason = !template ? missing : disabledReason;
  const b = h("button", { type: "button", disabled: !!reason, title: reason || "", "data-action": label.toLowerCase() }, label);
  if (reason) return h("span", { class: "action" }, b, h("small", { class: "muted" }, reason));
  b.addEventListener("click", async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    b.disabled = true;
    try {
      const out = await postJSON(api(fill(template, id)), body);
      banner(`${label}: done`, "note");
      if (done) await done(out);
    } catch (e) {
      if (e.status === 404 || e.status === 405) {
        b.title = `the API has no ${label.toLowerCase()} operation (HTTP ${e.status})`;
      }
      banner(`${label} failed: ${e.message}`);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

// ---- pages ---------------------------------------------------------------------------------------
const PAGES = {};

PAGES.jobs = async function () {
  // The source names for the filter; the table still polls when they could not be read (the API was busy).
  let sources = [];
  try { sources = (await getJSON(api("/v1/sources"))).sources.map((x) => x.name); } catch (e) { banner(e.message); }
  const ops = await operations();
  const params = new URLSearchParams(location.search);
  const select = (name, options, label) =>
    h("label", {}, label, " ", h("select", { name }, h("option", { value: "" }, "all"),
      options.map((o) => h("option", { value: o, selected: params.get(name) === o }, o))));
  const form = h("form", { class: "filters", id: "filters" },
    select("source", sources, "source"),
    select("status", ops.statuses, "status"),
    h("label", {}, "since ", h("select", { name: "since" },
      [["", "any time"], ["1", "last hour"], ["24", "last 24 h"], ["168", "last 7 days"]].map(([v, t]) =>
        h("option", { value: v, selected: params.get("since") === v }, t)))),
    h("label", {}, "id ", h("input", { name: "q", type: "search", placeholder: "search by job id", value: params.get("q") || "" })));
  const table = h("table", { id: "jobs" });
  const count = h("p", { class: "muted", id: "count" });
  show(form, count, table);
  const state = () => Object.fromEntries(new FormData(form).entries());
  const refresh = async () => {
    const f = state();
    const q = new URLSearchParams({ limit: "200" });
    if (f.source) q.set("source", f.source);
    if (f.status) q.set("status", f.status);
    let jobs = (await getJSON(api("/v1/jobs?" + q))).jobs;
    if (f.since) {
      const after = Date.now() - Number(f.since) * 3600e3;
      jobs = jobs.filter((j) => new Date(j.created_at).getTime() >= after);
    }
    if (f.q) jobs = jobs.filter((j) => j.job_id.includes(f.q.trim()));
    count.textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"}, newest first`;
    table.replaceChildren(
      h("thead", {}, h("tr", {}, ["source", "id", "status", "attempt", "records", "bytes", "created", "started", "duration", "error"].map((c) => h("th", {}, c)))),
      h("tbody", {}, jobs.map((j) => h("tr", { "data-job-id": j.job_id },
        h("td", {}, j.source),
        h("td", {}, h("a", { href: ui("/jobs/" + encodeURIComponent(j.job_id)) }, j.job_id)),
        h("td", {}, badge(j.status)),
        h("td", { class: "num" }, j.attempt),
        h("td", { class: "num" }, j.records.toLocaleString()),
        h("td", { class: "num" }, bytes(j.bytes)),
        h("td", {}, when(j.created_at)),
        h("td", {}, when(j.started_at)),
        h("td", { class: "num" }, duration(j)),
        h("td", { class: "error" }, errorText(j.error))))));
  };
  form.addEventListener("change", () => {
    const f = state();
    history.replaceState(null, "", "?" + new URLSearchParams(Object.entries(f).filter(([, v]) => v)));
    refresh().catch((e) => banner(e.message));
  });
  form.addEventListener("input", (ev) => { if (ev.target.name === "q") form.dispatchEvent(new Event("change")); });
  form.addEventListener("submit", (ev) => ev.preventDefault());
  live(refresh);
};

function costTable(cost) {
  if (!cost) return h("p", { class: "muted" }, "no cost recorded for this job");
  return h("div", { id: "cost" },
    h("p", {}, h("strong", { class: "total" }, money(cost.total_usd)), ` for this job (list prices of ${cost.prices_as_of}, before free tiers)`),
    h("table", { class: "cost" },
      h("thead", {}, h("tr", {}, ["what", "quantity", "unit price", "cost"].map((c) => h("th", {}, c)))),
      h("tbody", {}, cost.lines.map((l) => h("tr", {},
        h("td", {}, l.what), h("td", { class: "num" }, `${Number(l.quantity.toPrecision(6)).toLocaleString()} ${l.unit}`),
        h("td", { class: "num" }, l.unit_price_usd.toExponential(3)), h("td", { class: "num" }, money(l.usd)))))));
}

PAGES.job = async function () {
  const id = D.jobId;
  const ops = await operations();
  const top = h("div", { id: "job" });
  show(top);
  const render = (data) => {
    const j = data.job;
    const terminal = TERMINAL.has(j.status);
    const rows = [
      ["status", badge(j.status)], ["source", j.source], ["attempt", j.attempt],
      ["records", j.records.toLocaleString()], ["bytes", bytes(j.bytes)], ["trigger", j.trigger],
      ["batch", j.batch_id ? h("a", { href: ui("/batches/" + encodeURIComponent(j.batch_id)) }, j.batch_id) : "—"],
      ["created", when(j.created_at)], ["started", when(j.started_at)], ["finished", when(j.finished_at)],
      ["duration", duration(j)],
      ["run", j.run ? `${j.run}${j.runs && j.runs.length > 1 ? ` of ${j.runs.length}` : ""}` : "—"],
      ["progress", j.progress ? `${j.progress.done} / ${j.progress.total} parts` : "—"],
    ];
    const missing = (op) => `not available: the API has no POST /v1/jobs/{id}:${op} yet`;
    put(top,
      h("div", { class: "actions" },
        actionButton("Retry", ops.retry, id, { missing: missing("retry"), disabledReason: RETRYABLE.has(j.status) ? null : "only a failed or cancelled job runs again", done: () => refreshNow() }),
        actionButton("Cancel", ops.cancel, id, { missing: missing("cancel"), disabledReason: terminal ? `the job is ${j.status}` : null, confirmText: "Cancel this job? Its queued tasks are deleted; a running part finishes.", done: () => refreshNow() })),
      h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, v)])),
      j.error ? h("section", {}, h("h2", {}, "Error"), h("pre", { class: "error", id: "error" }, JSON.stringify(j.error, null, 2))) : null,
      h("section", {}, h("h2", {}, "Params"), h("pre", {}, JSON.stringify(j.params, null, 2))),
      h("section", {}, h("h2", {}, "Timeline"), h("ol", { class: "timeline", id: "timeline" },
        h("li", {}, h("time", {}, when(j.created_at)), " ", h("span", { class: "ev queued" }, "created"), ` by ${j.trigger}`),
        data.events.map((e) => h("li", { "data-type": e.type },
          h("time", {}, when(e.time)), " ", h("span", { class: "ev " + e.type }, e.type),
          e.run && e.run > 1 ? ` run ${e.run}` : "", e.attempt ? ` attempt ${e.attempt}` : "",
          e.part ? ` part ${e.part}` : "",
          e.progress ? ` (${e.progress.done}/${e.progress.total})` : "",
          e.records ? ` · ${e.records.toLocaleString()} records` : "",
          e.error ? h("div", { class: "error" }, errorText(e.error)) : null)))),
      h("section", {}, h("h2", {}, "Cost"), costTable(j.cost)),
      h("section", {}, h("h2", {}, "Outputs"), j.outputs.length ? h("ul", { class: "outputs" }, j.outputs.map((o) =>
        h("li", {}, h("a", { href: o }, o)))) : h("p", { class: "muted" }, "none yet")),
      j.runs && j.runs.length > 1 ? h("section", {}, h("h2", {}, "Runs"), h("table", { id: "runs" },
        h("thead", {}, h("tr", {}, ["run", "status", "attempt", "records", "started", "finished", "error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, j.runs.map((r) => h("tr", {}, h("td", {}, r.run), h("td", {}, badge(r.status)), h("td", { class: "num" }, r.attempt),
          h("td", { class: "num" }, (r.records || 0).toLocaleString()), h("td", {}, when(r.started_at)), h("td", {}, when(r.finished_at)),
          h("td", { class: "error" }, errorText(r.error))))))) : null,
      h("section", {}, h("h2", {}, "Run record"), data.run ? h("pre", {}, JSON.stringify(data.run, null, 2)) : h("p", { class: "muted" }, "no run record yet (written when the outcome is decided)")),
      j.load ? h("section", {}, h("h2", {}, "Load"), h("pre", {}, JSON.stringify(j.load, null, 2))) : null);
  };
  const refresh = async () => render(await getJSON(ui("/data/jobs/" + encodeURIComponent(id))));
  const refreshNow = () => refresh().catch((e) => banner(e.message));
  live(refresh);
};

PAGES.sources = async function () {
  const ops = await operations();
  const table = h("table", { id: "sources" });
  show(table);
  const refresh = async () => {
    const sources = (await getJSON(ui("/data/sources"))).sources;
    if (ops.queues) {
      const states = Object.fromEntries((await getJSON(api(ops.queues))).queues.map((q) => [q.source, q.state]));
      for (const x of sources) x.queue_state = states[x.name] || null;
    }
    table.replaceChildren(
      h("thead", {}, h("tr", {}, ["source", "schedule", "next runs", "queue", "state", "last status", "last success", "watermark", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, sources.map((x) => {
        const paused = x.queue_state ? x.queue_state === "PAUSED" : null;
        const q = x.queue;
        return h("tr", { "data-source": x.name },
          h("td", {}, h("strong", {}, x.name), h("div", { class: "muted" }, x.description || "")),
          h("td", {}, x.schedule_words, h("div", { class: "muted" }, h("code", {}, x.schedule.cron))),
          h("td", {}, h("ul", { class: "plain" }, x.next_runs.slice(0, 3).map((t) => h("li", {}, when(t))))),
          h("td", {}, `${q.max_dispatches_per_second}/s, ${q.max_concurrent_dispatches} at once, ${q.max_attempts} attempts`),
          h("td", { "data-field": "state" }, paused === null ? h("span", { class: "muted" }, x.queue_state ? x.queue_state.toLowerCase() : "unknown") : paused ? badge("paused") : "running"),
          h("td", {}, x.last_status ? h("a", { href: ui("/jobs/" + encodeURIComponent(x.last_job_id || "")) }, badge(x.last_status)) : "—"),
          h("td", {}, when(x.last_success_at)),
          h("td", {}, x.watermark || "—"),
          h("td", { class: "actions" },
            actionButton("Run now", "/v1/jobs", x.name, { body: { source: x.name, params: {} }, done: (job) => { location.href = ui("/jobs/" + encodeURIComponent(job.job_id)); } }),
            paused
              ? actionButton("Resume", ops.resume, x.name, { missing: "not available: the API has no queue resume yet", done: () => refresh() })
              : actionButton("Pause", ops.pause, x.name, { missing: "not available: the API has no queue pause yet", done: () => refresh() })));
      })));
  };
  live(refresh, 5000);
};

function progressBar(b) {
  const total = Math.max(b.total, 1);
  const bar = h("div", { class: "bar", title: STATUSES.map((k) => `${k} ${b.counts[k] || 0}`).join(", ") });
  for (const k of ["succeeded", "failed", "cancelled", "running", "queued"]) {
    if (b.counts[k]) bar.append(h("span", { class: "seg " + k, style: null, "data-width": (100 * b.counts[k]) / total }));
  }
  for (const seg of bar.children) seg.style.width = seg.dataset.width + "%";
  return h("div", { class: "progress" }, bar, h("small", {}, `${b.done} of ${b.total} done · ${b.counts.succeeded} succeeded, ${b.counts.failed} failed, ${b.counts.running} running, ${b.counts.queued} queued`));
}

PAGES.batches = async function () {
  const list = h("table", { id: "batches" });
  show(list);
  live(async () => {
    const batches = (await getJSON(ui("/data/batches"))).batches;
    if (!batches.length) { list.replaceChildren(h("tr", {}, h("td", { class: "muted" }, "no backfills or run-daily batches yet"))); return; }
    list.replaceChildren(
      h("thead", {}, h("tr", {}, ["batch", "kind", "source", "range", "status", "progress", "created"].map((c) => h("th", {}, c)))),
      h("tbody", {}, batches.map((b) => h("tr", {},
        h("td", {}, h("a", { href: ui("/batches/" + encodeURIComponent(b.batch_id)) }, b.batch_id)),
        h("td", {}, b.kind), h("td", {}, b.source || "all due"), h("td", {}, `${b.start || ""} → ${b.end || ""}`),
        h("td", {}, badge(b.status)), h("td", {}, progressBar(b)), h("td", {}, when(b.created_at))))));
  }, 3000);
};

PAGES.batch = async function () {
  const top = h("div", {});
  show(top);
  live(async () => {
    const data = await getJSON(ui("/data/batches/" + encodeURIComponent(D.batchId)));
    const b = data.batch;
    top.replaceChildren(
      h("p", {}, `${b.kind} of ${b.source || "every source due"}, ${b.start || ""} → ${b.end || ""}: `, badge(b.status)),
      progressBar(b),
      h("h2", {}, `Children (${data.jobs.length})`),
      h("table", {}, h("thead", {}, h("tr", {}, ["id", "status", "attempt", "records", "duration", "error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, data.jobs.map((j) => h("tr", {},
          h("td", {}, h("a", { href: ui("/jobs/" + encodeURIComponent(j.job_id)) }, j.job_id)), h("td", {}, badge(j.status)),
          h("td", { class: "num" }, j.attempt), h("td", { class: "num" }, j.records.toLocaleString()),
          h("td", { class: "num" }, duration(j)), h("td", { class: "error" }, errorText(j.error)))))));
  }, 3000);
};

PAGES.deadletters = async function () {
  const list = h("div", { id: "deadletters" });
  show(list);
  const refresh = async () => {
    const letters = (await getJSON(ui("/data/deadletters"))).dead_letters;
    if (!letters.length) { list.replaceChildren(h("p", { class: "muted" }, "no dead letters: every event was applied")); return; }
    list.replaceChildren(...letters.map((d) => h("details", { class: "letter" },
      h("summary", {}, h("code", {}, d.id), ` · ${when(d.received_at)} · ${d.reason}`),
      h("pre", {}, d.data),
      actionButton("Replay", "/ui/data/deadletters/{id}:replay", d.id, { done: (out) => { banner(out.applied ? `applied to ${out.job_id} (${out.status})` : `not applied: ${out.reason}`, "note"); return refresh(); } }))));
  };
  live(refresh, 10000);
};

function stackedBars(categories, series, { height = 220, label }) {
  const width = Math.max(600, categories.length * 18);
  const max = Math.max(1, ...categories.map((c) => series.reduce((t, x) => t + (x.values[c] || 0), 0)));
  const bw = (width - 50) / categories.length;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height + 40}`, class: "chart", role: "img", "aria-label": label });
  svg.append(s("text", { x: 0, y: 12, class: "axis" }, max.toLocaleString()), s("text", { x: 0, y: height, class: "axis" }, "0"));
  categories.forEach((c, i) => {
    let y = height;
    for (const x of series) {
      const v = x.values[c] || 0;
      if (!v) continue;
      const bh = (v / max) * (height - 16);
      y -= bh;
      svg.append(s("rect", { x: 50 + i * bw, y, width: Math.max(1, bw - 2), height: bh, fill: x.color },
        s("title", {}, `${c}: ${x.name} ${v.toLocaleString()}`)));
    }
    if (i % Math.ceil(categories.length / 8) === 0) svg.append(s("text", { x: 50 + i * bw, y: height + 16, class: "axis" }, c.slice(5, 16).replace("T", " ")));
  });
  const legend = h("p", { class: "legend" }, series.map((x) => h("span", {}, h("i", { class: "swatch", "data-color": x.color }), x.name)));
  for (const sw of legend.querySelectorAll(".swatch")) sw.style.background = sw.dataset.color;
  return h("figure", {}, svg, legend);
}

PAGES.charts = async function () {
  const top = h("div", { id: "charts" });
  show(top);
  const palette = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#dc2626", "#4b5563", "#db2777"];
  live(async () => {
    const d = await getJSON(ui("/data/charts"));
    const outcome = STATUSES.map((k) => ({ name: k, color: COLORS[k], values: Object.fromEntries(d.hours.map((hh) => [hh, (d.jobs_per_hour[hh] || {})[k] || 0])) }));
    const perSource = Object.entries(d.records_per_day).map(([name, values], i) => ({ name, color: palette[i % palette.length], values }));
    put(top,
      h("h2", {}, "Jobs per hour by outcome (last 48 hours)"), stackedBars(d.hours, outcome, { label: "jobs per hour" }),
      h("h2", {}, "Records ingested per source per day (last 14 days)"), stackedBars(d.days, perSource, { label: "records per day" }),
      d.cost ? h("section", {}, h("h2", {}, "Cost"), costSummary(d.cost)) : null);
  }, 10000);
};

function costSummary(c) {
  return h("div", { id: "costs" },
    h("table", {}, h("thead", {}, h("tr", {}, ["month", "before free tiers", "after free tiers", "jobs"].map((x) => h("th", {}, x)))),
      h("tbody", {}, c.months.map((m) => h("tr", {}, h("td", {}, m.month), h("td", { class: "num" }, money(m.list_usd)), h("td", { class: "num" }, money(m.billed_usd)), h("td", { class: "num" }, m.jobs))))),
    h("h3", {}, "Per source per day"),
    h("table", {}, h("thead", {}, h("tr", {}, ["day", "source", "jobs", "cost"].map((x) => h("th", {}, x)))),
      h("tbody", {}, c.days.map((x) => h("tr", {}, h("td", {}, x.day), h("td", {}, x.source), h("td", { class: "num" }, x.jobs), h("td", { class: "num" }, money(x.usd)))))));
}

window.addEventListener("error", (e) => banner("console error: " + e.message));
(PAGES[D.page] || (() => show(h("p", {}, "unknown page"))))().catch((e) => banner(e.message));
