// MockShift's live dashboard (issue 7). Plain JavaScript, no build step, no library: it talks to the daemon that
// served it, with the API key in the Authorization header of every request (never in a URL), and follows the
// namespace's run events on GET /_mock/events, read with fetch() streaming and a small Server-Sent-Events parser
// (EventSource cannot send headers). The feed reconnects by itself, with backoff, after a daemon restart.
// The chatbot views (issue 12 item 7) are in chat.js, loaded after this file; app.js calls its hooks (chatFeedEvent,
// chatReload, renderChat, chatReset, chatInit, openConversation, closeConversation).
"use strict";

const KEY_STORAGE = "mockshift.apiKey";
const RUN_LIMIT = 200;
const STATUS_TEXT = {
  in_progress: "in progress", paused: "paused", completed: "completed", failed: "failed", terminated: "terminated",
  pending: "pending", running: "running", skipped: "skipped",
  stopped: "stopped", generating: "generating…",  // chatbot turns (chat.js)
};
// A shape beside each status, so that it never rests on colour alone (the text is there too).
const STATUS_MARK = {
  in_progress: "▶", paused: "Ⅱ", completed: "✓", failed: "✗", terminated: "■",
  pending: "○", running: "▶", skipped: "–",
  stopped: "■", generating: "▶",
};
const FINAL = new Set(["completed", "failed", "terminated"]);

const state = {
  key: localStorage.getItem(KEY_STORAGE) || "",
  pipelines: new Map(),   // id -> {id, name, modifiedDate, currentVersion?, inputs?, outputs?, nodes?}
  runs: new Map(),        // id -> run (see upsertRun)
  detailId: null,
  timeline: [],           // the open run's timeline entries
  timelineVersion: 0,     // bumped at each change of `timeline` (rendering compares it)
  pipelinesVersion: 0,    // bumped at each change of `pipelines`
  renderedPipelines: -1,
  busy: false,            // a control request of the open run is under way
  feed: {controller: null, wake: null, generation: 0},
  keyGeneration: 0,       // bumped when the key changes (see api)
  openStreams: 0,         // streaming runs started here whose own stream is being read
  pipelinesLoading: false, pipelinesAgain: false,  // see loadPipelines
};

// A browser keeps 6 connections per server over HTTP/1.1; the feed holds one and every started streaming run
// read here another. Past this many, the page's own requests (Stop generating included) would wait.
const MAX_OPEN_STREAMS = 3;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------------------------
// HTTP

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  if (state.key) headers.Authorization = "Bearer " + state.key;
  return headers;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// An answer that arrives after the key was changed belongs to the old namespace: it is dropped (the caller's
// promise never settles), so another key's data can never appear under the new one.
async function api(method, path, body) {
  const init = {method, headers: authHeaders(body === undefined ? {} : {"Content-Type": "application/json"}), cache: "no-store"};
  if (body !== undefined) init.body = JSON.stringify(body);
  const generation = state.keyGeneration;
  const response = await fetch(path, init);
  if (generation !== state.keyGeneration) return new Promise(() => {});
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || ("HTTP " + response.status));
  }
  return data;
}

// Reads a text/event-stream body: calls onEvent(type, data) for each event whose data is JSON. Comments
// (": keep-alive") only count as activity (onActivity). Resolves when the body ends.
async function readEvents(body, onEvent, onActivity) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", type = "message", data = [];
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    if (onActivity) onActivity();
    buffer += decoder.decode(value, {stream: true});
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      let line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length) {
          let parsed = null;
          try { parsed = JSON.parse(data.join("\n")); } catch (_) { /* ignore a malformed event */ }
          if (parsed) onEvent(type, parsed);
        }
        type = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = text;
      else if (field === "data") data.push(text);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The live feed

function setFeedState(kind, text) {
  const el = $("feed-state");
  el.dataset.state = kind;
  el.textContent = text;
}

function sleep(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    state.feed.wake = () => { clearTimeout(timer); resolve(); };
  });
}

// Restarts the feed at once (a new key).
function restartFeed() {
  state.feed.generation += 1;
  if (state.feed.controller) state.feed.controller.abort();
  if (state.feed.wake) state.feed.wake();
}

async function followFeed() {
  let backoff = 500;
  for (;;) {
    const generation = state.feed.generation;
    const controller = new AbortController();
    state.feed.controller = controller;
    let lastActivity = Date.now();
    // Keep-alive comments come after 15 s of silence: a connection silent for 40 s is dead.
    const watchdog = setInterval(() => { if (Date.now() - lastActivity > 40000) controller.abort(); }, 5000);
    let rejected = false;
    try {
      setFeedState("connecting", backoff > 500 ? "reconnecting…" : "connecting…");
      const response = await fetch("/_mock/events", {headers: authHeaders(), signal: controller.signal, cache: "no-store"});
      if (response.status === 401) {
        rejected = true;
        setFeedState("rejected", "API key rejected (401): enter a key the daemon accepts");
      } else if (!response.ok || !response.body) {
        throw new Error("HTTP " + response.status);
      } else {
        await readEvents(response.body, (type, event) => {
          if (type === "ready") {
            backoff = 500;
            setFeedState("live", "connected");
            reloadAll();
          } else {
            onFeedEvent(type, event);
          }
        }, () => { lastActivity = Date.now(); });
        setFeedState("down", "the daemon closed the feed (stopped?); reconnecting…");
      }
    } catch (error) {
      if (generation === state.feed.generation) setFeedState("down", "disconnected; retrying in " + Math.round(backoff / 100) / 10 + " s");
    } finally {
      clearInterval(watchdog);
    }
    if (generation !== state.feed.generation) { backoff = 500; continue; }  // a new key: reconnect now
    if (rejected) {
      await sleep(60000);  // until the key changes (restartFeed wakes it), or try again in a minute
      continue;
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
}

function onFeedEvent(type, event) {
  if (!event.run_id) return;
  let run = state.runs.get(event.run_id);
  if (!run) {
    run = upsertRun({run_id: event.run_id, pipeline_id: event.pipeline_id, status: event.status || "in_progress",
                     created_at: event.at, started_at: event.at, chatbot_id: event.chatbot_id,
                     conversation_id: event.conversation_id, session_id: event.session_id});
    if (type !== "created") refreshRun(run.run_id);  // joined mid-run: fetch what came before
    if (!state.pipelines.has(event.pipeline_id)) loadPipelines();
  }
  switch (type) {
    case "created":
      run.mode = event.mode || run.mode;
      run.status = "in_progress";
      run.fromStart = true;  // every token of it reaches this page (chat.js says when not)
      if (Array.isArray(event.nodes)) {
        for (const id of event.nodes) if (!run.nodes[id]) run.nodes[id] = "pending";
      }
      break;
    case "node_started": run.nodes[event.node] = "running"; break;
    case "node_completed": run.nodes[event.node] = "completed"; break;
    case "node_skipped": run.nodes[event.node] = "skipped"; break;
    case "stream":
      run.liveTokens += event.tokens || 0;
      for (const name of event.outputs || []) run.outputs[name] = (run.outputs[name] || "") + (event.text || "");
      break;
    case "paused": run.status = "paused"; break;
    case "resumed": run.status = "in_progress"; break;
    case "completed": case "failed": case "terminated":
      run.status = type;
      run.ended_at = event.at;
      if (event.error) run.error = event.error;
      if (event.output_tokens !== undefined) run.output_tokens = event.output_tokens;
      refreshRun(run.run_id);  // the committed record: result or partial outputs, node states
      break;
  }
  if (state.detailId === run.run_id && type !== "stream") {
    state.timeline.push(timelineEntry(type, event));
    state.timelineVersion += 1;
  }
  chatFeedEvent(type, run);
  scheduleRender();
}

function timelineEntry(type, event) {
  const entry = {event: type, at: event.at, clock_ms: event.clock_ms};
  for (const [k, v] of Object.entries(event)) {
    if (!["type", "run_id", "pipeline_id", "at", "clock_ms", "status", "nodes", "mode", "chatbot_id",
          "conversation_id", "session_id"].includes(k)) entry[k] = v;
  }
  return entry;
}

// ---------------------------------------------------------------------------------------------------------------
// Data

function upsertRun(record) {
  let run = state.runs.get(record.run_id);
  if (!run) {
    run = {run_id: record.run_id, pipeline_id: record.pipeline_id, status: "in_progress", mode: null, nodes: {},
           outputs: {}, liveTokens: 0, output_tokens: undefined, created_at: null, started_at: null, ended_at: null,
           error: null, final: null, fromStart: false, chatbot_id: null, conversation_id: null, session_id: null};
    state.runs.set(record.run_id, run);
  }
  // A final status never changes (SPEC §3): an answer sent before the end must not bring the run back to life.
  if (FINAL.has(run.status) && record.status && !FINAL.has(record.status)) return run;
  for (const key of ["pipeline_id", "status", "mode", "created_at", "started_at", "ended_at", "error", "output_tokens",
                     "chatbot_id", "conversation_id", "session_id"]) {
    if (record[key] !== undefined && record[key] !== null) run[key] = record[key];
  }
  if (record.nodes && typeof record.nodes === "object" && !Array.isArray(record.nodes)) {
    run.nodes = Object.assign({}, record.nodes);
  }
  if (FINAL.has(run.status) && (record.result || record.partial_outputs)) {
    run.final = record.result || record.partial_outputs;
  }
  return run;
}

async function refreshRun(id) {
  const run = state.runs.get(id);
  if (!run || !run.pipeline_id) return;
  try {
    const record = await api("GET", "/v1/pipeline/" + encodeURIComponent(run.pipeline_id) + "/run/status/" + encodeURIComponent(id));
    upsertRun(record);
    if (state.detailId === id && FINAL.has(record.status)) await loadTimeline(id);
    scheduleRender();
  } catch (_) { /* deleted meanwhile, or the daemon is gone: the feed reports it */ }
}

async function loadRuns() {
  const query = new URLSearchParams({limit: String(RUN_LIMIT)});
  if ($("filter-pipeline").value) query.set("pipeline_id", $("filter-pipeline").value);
  if ($("filter-status").value) query.set("status", $("filter-status").value);
  try {
    const data = await api("GET", "/_mock/runs?" + query);
    for (const record of data.runs || []) upsertRun(record);
    scheduleRender();
  } catch (error) {
    showRunsError(error);
  }
}

// Loads the pipeline list, then the details (latest version, declared inputs and outputs) of the pipelines not
// detailed yet (all of them when `everything`, as the Refresh button asks), six at a time. Calls that come
// while one runs are folded into one more pass after it: a burst of runs of new pipelines in the feed asks once.
async function loadPipelines(everything) {
  if (state.pipelinesLoading) { state.pipelinesAgain = true; return; }
  state.pipelinesLoading = true;
  try {
    do {
      state.pipelinesAgain = false;
      const data = await api("GET", "/v1/pipelines?verbose=true");
      const seen = new Set();
      for (const summary of data.objects || []) {
        seen.add(summary.id);
        const known = state.pipelines.get(summary.id) || {};
        if (known.modifiedDate !== undefined && known.modifiedDate !== summary.modifiedDate) known.detailed = false;
        state.pipelines.set(summary.id, Object.assign(known, summary));
      }
      for (const id of [...state.pipelines.keys()]) if (!seen.has(id)) state.pipelines.delete(id);
      state.pipelinesVersion += 1;
      scheduleRender();
      const ids = [...seen].filter((id) => everything === true || !state.pipelines.get(id).detailed);
      for (let i = 0; i < ids.length; i += 6) {
        await Promise.all(ids.slice(i, i + 6).map(loadPipelineDetail));
      }
      everything = false;
      renderStartInputs();
    } while (state.pipelinesAgain);
  } catch (error) {
    $("pipelines-empty").hidden = false;
    $("pipelines-empty").textContent = "Could not list pipelines: " + error.message;
  } finally {
    state.pipelinesLoading = false;
  }
}

async function loadPipelineDetail(id) {
  try {
    const data = await api("GET", "/v1/pipeline?id=" + encodeURIComponent(id));
    const known = state.pipelines.get(id) || {};
    state.pipelines.set(id, Object.assign(known, data.object, {detailed: true}));
    state.pipelinesVersion += 1;
    scheduleRender();
  } catch (_) { /* deleted meanwhile */ }
}

async function loadTimeline(id) {
  try {
    const data = await api("GET", "/_mock/runs/" + encodeURIComponent(id) + "/events");
    if (state.detailId === id) {
      state.timeline = data.events || [];
      state.timelineVersion += 1;
      scheduleRender();
    }
  } catch (_) { /* unknown run: the detail says so through its status */ }
}

function reloadAll() {
  loadPipelines();
  loadRuns();
  chatReload();
  if (state.detailId) openRun(state.detailId, {focus: false});
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering

let renderTimer = null;
function scheduleRender() {
  if (renderTimer === null) renderTimer = setTimeout(() => { renderTimer = null; render(); }, 40);
}

function render() {
  renderPipelines();
  renderRuns();
  renderDetail();
  renderChat();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function statusBadge(status) {
  return el("span", {class: "status status-" + status, "data-status": status},
    el("span", {class: "mark", "aria-hidden": "true", text: STATUS_MARK[status] || "?"}), " ",
    STATUS_TEXT[status] || status);
}

function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (isNaN(date)) return iso;
  const today = new Date();
  const time = date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
  return date.toDateString() === today.toDateString() ? time : date.toLocaleDateString() + " " + time;
}

function formatDuration(run) {
  if (!run.started_at) return "—";
  const end = run.ended_at ? new Date(run.ended_at) : new Date();
  const ms = Math.max(0, end - new Date(run.started_at));
  if (ms < 10000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 60000) return Math.round(ms / 1000) + " s";
  const minutes = Math.floor(ms / 60000);
  return minutes + " min " + String(Math.round((ms % 60000) / 1000)).padStart(2, "0") + " s";
}

function tokenCount(run) {
  if (run.output_tokens !== undefined && FINAL.has(run.status)) return String(run.output_tokens);
  if (run.liveTokens) return String(run.liveTokens);
  return run.output_tokens !== undefined ? String(run.output_tokens) : "—";
}

function pipelineName(id) {
  const pipeline = state.pipelines.get(id);
  return pipeline ? pipeline.name : id;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// Makes `nodes` the children of `parent`, in order, moving only what is out of place: rows kept across renders keep
// their focus and selection.
function placeChildren(parent, nodes) {
  nodes.forEach((node, i) => { if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null); });
  while (parent.children.length > nodes.length) parent.lastElementChild.remove();
}

// Rows are rebuilt only when the pipelines changed, so that a focused button is not replaced under the user.
function renderPipelines() {
  if (state.renderedPipelines === state.pipelinesVersion) return;
  state.renderedPipelines = state.pipelinesVersion;
  const body = $("pipelines-table").tBodies[0];
  const pipelines = [...state.pipelines.values()].sort((a, b) => (b.modifiedDate || "").localeCompare(a.modifiedDate || ""));
  body.replaceChildren(...pipelines.map((p) => el("tr", {"data-pipeline-id": p.id},
    el("th", {scope: "row"}, p.name, el("code", {text: p.id})),
    el("td", {text: formatTime(p.modifiedDate)}),
    el("td", {text: p.currentVersion || (p.detailed ? "not deployed" : "…")}),
    el("td", {}, el("button", {type: "button", class: "small", "aria-label": "Run " + p.name,
                               onclick: () => chooseStartPipeline(p.id), text: "Run…"})))));
  $("pipelines-empty").hidden = pipelines.length > 0;
  if (!pipelines.length) $("pipelines-empty").textContent = "No pipelines in this namespace yet.";
  syncSelect($("start-pipeline"), pipelines, null);
  syncSelect($("filter-pipeline"), pipelines, "all");
}

// Keeps a <select> of pipelines in step without losing the choice (or the focus).
function syncSelect(select, pipelines, allLabel) {
  const wanted = (allLabel ? [["", allLabel]] : []).concat(pipelines.map((p) => [p.id, p.name + " (" + p.id.slice(0, 6) + "…)"]));
  const current = [...select.options].map((o) => [o.value, o.textContent]);
  if (JSON.stringify(current) === JSON.stringify(wanted)) return;
  const value = select.value;
  select.replaceChildren(...wanted.map(([v, text]) => el("option", {value: v, text})));
  if (wanted.some(([v]) => v === value)) select.value = value;
  if (select.id === "start-pipeline" && select.value !== startInputsFor) renderStartInputs();
}

function visibleRuns() {
  const pipeline = $("filter-pipeline").value, status = $("filter-status").value;
  return [...state.runs.values()]
    .filter((r) => (!pipeline || r.pipeline_id === pipeline) && (!status || r.status === status))
    .sort((a, b) => (b.created_at || "").localeCompare(a.created_at || "") || b.run_id.localeCompare(a.run_id))
    .slice(0, RUN_LIMIT);
}

const runRows = new Map();  // run id -> {tr, cells, status}

// Updates the runs table in place (rows keyed by run id, cells changed only when their text does), so that
// live updates several times a second neither move the keyboard focus nor disturb a screen reader.
function runRow(run) {
  let row = runRows.get(run.run_id);
  if (!row) {
    const cells = {pipeline: el("td", {"data-cell": "pipeline"}), status: el("td"), mode: el("td"), started: el("td"),
                   duration: el("td", {class: "num"}), tokens: el("td", {class: "num", "data-tokens": ""})};
    const open = el("button", {type: "button", class: "link", "aria-label": "Open run " + run.run_id,
                               onclick: () => selectRun(run.run_id)}, el("code", {text: run.run_id.slice(0, 10) + "…"}));
    const tr = el("tr", {"data-run-id": run.run_id}, el("th", {scope: "row"}, open),
                  cells.pipeline, cells.status, cells.mode, cells.started, cells.duration, cells.tokens);
    row = {tr, cells, status: null};
    runRows.set(run.run_id, row);
  }
  const {tr, cells} = row;
  if (row.status !== run.status) {
    row.status = run.status;
    tr.dataset.status = run.status;
    cells.status.replaceChildren(statusBadge(run.status));
  }
  tr.classList.toggle("selected", state.detailId === run.run_id);
  setText(cells.pipeline, pipelineName(run.pipeline_id));
  setText(cells.mode, run.mode || "—");
  setText(cells.started, formatTime(run.started_at || run.created_at));
  setText(cells.duration, formatDuration(run));
  setText(cells.tokens, tokenCount(run));
  return tr;
}

function renderRuns() {
  const runs = visibleRuns();
  const body = $("runs-table").tBodies[0];
  const rows = runs.map(runRow);
  placeChildren(body, rows);
  for (const id of [...runRows.keys()]) if (!state.runs.has(id)) runRows.delete(id);
  $("runs-empty").hidden = runs.length > 0;
  if (runs.length === 0) $("runs-empty").textContent = "No runs match.";
}

function showRunsError(error) {
  $("runs-empty").hidden = false;
  $("runs-empty").textContent = "Could not list runs: " + error.message;
}

function renderDetail() {
  const section = $("detail");
  const run = state.detailId && state.runs.get(state.detailId);
  if (!run) { section.hidden = true; return; }
  section.hidden = false;
  $("detail-id").textContent = run.run_id;
  $("detail-status").replaceChildren(statusBadge(run.status));
  $("detail-status").dataset.status = run.status;
  $("detail-pipeline").textContent = pipelineName(run.pipeline_id) + " (" + run.pipeline_id + ")";
  $("detail-mode").textContent = run.mode || "—";
  $("detail-started").textContent = formatTime(run.started_at || run.created_at);
  $("detail-duration").textContent = formatDuration(run);
  $("detail-tokens").textContent = tokenCount(run);
  const live = !FINAL.has(run.status);
  $("detail-stop").disabled = state.busy || !live;
  $("detail-pause").disabled = state.busy || run.status !== "in_progress";
  $("detail-resume").disabled = state.busy || run.status !== "paused";
  // A chatbot turn links to its conversation (chat.js).
  $("detail-chat").hidden = !run.conversation_id;
  if (run.conversation_id) {
    $("detail-chat-link").href = "#conversation=" + run.conversation_id;
    setText($("detail-chat-link"), (run.session_id ? "session " : "conversation ") + run.conversation_id.slice(0, 10) + "…");
  }
  $("detail-error").hidden = !run.error;
  $("detail-error").textContent = run.error ? "Error: " + run.error : "";

  const pipeline = state.pipelines.get(run.pipeline_id) || {};
  const nodes = Object.entries(run.nodes);
  $("detail-nodes").replaceChildren(...nodes.map(([id, nodeState]) => {
    const node = pipeline.nodes && pipeline.nodes[id];
    return el("li", {"data-node": id, "data-state": nodeState},
      el("code", {text: id}), node && node.type ? el("span", {class: "type", text: " " + node.type}) : null, " ",
      statusBadge(nodeState));
  }));

  renderOutputs(run, pipeline);

  const timeline = $("detail-timeline").tBodies[0];
  const version = run.run_id + "/" + state.timelineVersion;
  if (timeline.dataset.version !== version) {
    timeline.dataset.version = version;
    // The clock column counts from the run's `created` event: the events' clock_ms is the daemon's scheduler
    // clock (its uptime, or the manual clock), which says nothing to someone reading one run.
    const created = state.timeline.find((entry) => entry.event === "created" && entry.clock_ms !== undefined);
    const origin = created ? Number(created.clock_ms) : undefined;
    timeline.replaceChildren(...state.timeline.map((entry) => {
      const details = Object.entries(entry).filter(([k]) => !["event", "node", "at", "clock_ms"].includes(k))
        .map(([k, v]) => k + ": " + (typeof v === "string" ? v : JSON.stringify(v))).join(", ");
      return el("tr", {},
        el("td", {text: formatTime(entry.at)}),
        el("td", {class: "num", text: entry.clock_ms === undefined || origin === undefined ? ""
                                    : (Number(entry.clock_ms) - origin).toFixed(1)}),
        el("td", {text: entry.event}),
        el("td", {}, entry.node ? el("code", {text: entry.node}) : ""),
        el("td", {class: "details", text: details}));
    }));
  }
}

function renderOutputs(run, pipeline) {
  const container = $("detail-outputs");
  const names = new Set(Object.keys(pipeline.outputs || {}));
  for (const name of Object.keys(run.outputs)) names.add(name);
  if (run.final) for (const name of Object.keys(run.final)) names.add(name);
  const blocks = [...names].map((name) => {
    let text = run.outputs[name];
    let note = "streamed";
    if (run.final && run.final[name] !== undefined) {
      const value = run.final[name];
      text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
      note = run.status === "completed" ? "result" : run.status === "failed" ? "partial output, generated before the failure" : "partial output, generated before the stop";
    } else if (text === undefined) {
      text = "";
      note = FINAL.has(run.status) ? "no value" : "waiting…";
    }
    return {name, text, note};
  });
  // Update in place so that reading (and selecting) text is not disturbed by every token.
  const existing = new Map([...container.children].map((child) => [child.dataset.output, child]));
  const ordered = blocks.map(({name, text, note}) => {
    let block = existing.get(name);
    if (!block) {
      block = el("div", {class: "output", "data-output": name},
        el("h4", {}, el("code", {text: name}), " ", el("span", {class: "note"})),
        el("pre", {class: "output-text", "data-output": name, tabindex: "0"}));
    }
    block.querySelector(".note").textContent = "(" + note + ")";
    const pre = block.querySelector("pre");
    if (pre.textContent !== text) {
      // Follow new tokens while the box shows its end; a reader who scrolled up keeps their place.
      const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight <= 8;
      pre.textContent = text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    return block;
  });
  if (ordered.length !== container.children.length || ordered.some((b, i) => container.children[i] !== b)) {
    container.replaceChildren(...ordered);
  }
  if (!ordered.length) container.replaceChildren(el("p", {class: "empty", text: "No outputs."}));
}

// ---------------------------------------------------------------------------------------------------------------
// Run detail and its controls

function selectRun(id) {
  if (location.hash !== "#run=" + id) location.hash = "run=" + id;
  else openRun(id, {focus: true});
}

async function openRun(id, options) {
  if (state.detailId !== id) {
    state.timeline = [];
    state.timelineVersion += 1;
  }
  state.detailId = id;
  $("detail-message").textContent = "";
  let run = state.runs.get(id);
  scheduleRender();
  if (options && options.focus) requestAnimationFrame(() => $("detail-title").focus());
  if (!run || !run.pipeline_id) {
    // Not in the list (an old run, or a link): find it among the namespace's runs.
    try {
      const data = await api("GET", "/_mock/runs?limit=10000");
      const record = (data.runs || []).find((r) => r.run_id === id);
      if (record) run = upsertRun(record);
    } catch (_) { /* reported below */ }
  }
  if (!run) {
    $("detail-message").textContent = "Run " + id + " not found in this namespace.";
    return;
  }
  if (!state.pipelines.get(run.pipeline_id)?.detailed) await loadPipelineDetail(run.pipeline_id);
  await Promise.all([refreshRun(id), loadTimeline(id)]);
}

function closeRun() {
  state.detailId = null;
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  scheduleRender();
}

async function control(action) {
  const run = state.runs.get(state.detailId);
  if (!run) return;
  const base = "/v1/pipeline/" + encodeURIComponent(run.pipeline_id) + "/";
  const labels = {terminate: "Stopping…", pause: "Pausing…", resume: "Resuming…"};
  state.busy = true;
  $("detail-message").textContent = labels[action];
  render();
  try {
    if (action === "resume") await api("POST", base + "resume", {run_ids: [run.run_id]});
    else await api("POST", base + action, {run_id: run.run_id});
    $("detail-message").textContent = {terminate: "Stopped.", pause: "Paused.", resume: "Resumed."}[action];
    if (action === "terminate") run.status = "terminated";
    else if (action === "pause") run.status = "paused";
    else run.status = "in_progress";
    await refreshRun(run.run_id);
  } catch (error) {
    $("detail-message").textContent = "Could not " + action + ": " + error.message;
    await refreshRun(run.run_id);
  } finally {
    state.busy = false;
    render();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Starting a run

let startInputsFor = null;

function chooseStartPipeline(id) {
  $("start-pipeline").value = id;
  renderStartInputs();
  $("start-pipeline").focus();
}

async function renderStartInputs() {
  const id = $("start-pipeline").value;
  const fieldset = $("start-inputs");
  if (!id) {
    startInputsFor = null;
    fieldset.replaceChildren(el("legend", {text: "Inputs"}), el("p", {class: "empty", text: "Create a pipeline first (SDK or API)."}));
    return;
  }
  let pipeline = state.pipelines.get(id);
  if (!pipeline || !pipeline.detailed) {
    await loadPipelineDetail(id);
    pipeline = state.pipelines.get(id);
  }
  if ($("start-pipeline").value !== id || startInputsFor === id) return;
  startInputsFor = id;
  const inputs = Object.entries((pipeline && pipeline.inputs) || {});
  const fields = inputs.map(([name, info], index) => {
    const type = (info && info.io_type) || "string";
    const fieldId = "start-input-" + index;
    const label = el("label", {for: fieldId}, name, " ", el("span", {class: "type", text: "(" + type + ")"}));
    let control;
    if (type === "bool") {
      control = el("input", {type: "checkbox", id: fieldId, "data-input": name, "data-type": type, checked: info.default_value === true});
      return el("p", {class: "check"}, control, " ", label);
    }
    if (type === "int32" || type === "float") {
      control = el("input", {type: "number", step: type === "float" ? "any" : "1", id: fieldId, "data-input": name, "data-type": type});
    } else if (type === "file") {
      control = el("input", {type: "text", id: fieldId, "data-input": name, "data-type": type, disabled: true,
                             placeholder: "file inputs: use the SDK"});
    } else {
      control = el("textarea", {id: fieldId, rows: "2", "data-input": name, "data-type": type});
    }
    if (info && info.default_value !== undefined && info.default_value !== null && type !== "file") {
      control.value = typeof info.default_value === "string" ? info.default_value : JSON.stringify(info.default_value);
    }
    return el("p", {}, label, control);
  });
  fieldset.replaceChildren(el("legend", {text: "Inputs"}),
    ...(fields.length ? fields : [el("p", {class: "empty", text: "This pipeline declares no inputs."})]));
}

function collectInputs() {
  const inputs = {};
  for (const control of $("start-inputs").querySelectorAll("[data-input]")) {
    const type = control.dataset.type, name = control.dataset.input;
    if (type === "file") continue;
    if (type === "bool") inputs[name] = control.checked;
    else if (type === "int32") { if (control.value !== "") inputs[name] = parseInt(control.value, 10); }
    else if (type === "float") { if (control.value !== "") inputs[name] = parseFloat(control.value); }
    else inputs[name] = control.value;
  }
  return inputs;
}

async function startRun(event) {
  event.preventDefault();
  const id = $("start-pipeline").value;
  const message = $("start-message");
  if (!id) { message.textContent = "Choose a pipeline."; return; }
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (mode !== "background" && state.openStreams >= MAX_OPEN_STREAMS) {
    message.textContent = "At most " + MAX_OPEN_STREAMS + " streaming runs started from this page at once (a browser keeps " +
      "6 connections per server): choose Background, or wait until one ends.";
    return;
  }
  const body = {inputs: collectInputs()};
  body[mode] = true;
  const button = $("start-run");
  button.disabled = true;
  message.textContent = "Starting…";
  try {
    if (mode === "background") {
      const data = await api("POST", "/v1/pipeline/" + encodeURIComponent(id) + "/run", body);
      started(data.run_id, id, mode);
    } else {
      // The run's own stream: its first event names the run. It is read to its end (the run goes on either way).
      const response = await fetch("/v1/pipeline/" + encodeURIComponent(id) + "/run", {
        method: "POST", headers: authHeaders({"Content-Type": "application/json"}), body: JSON.stringify(body), cache: "no-store"});
      if (!response.ok) {
        let error = "HTTP " + response.status;
        try { error = (await response.json()).error || error; } catch (_) { /* not JSON */ }
        throw new Error(error);
      }
      let named = false;
      state.openStreams += 1;
      readEvents(response.body, (type, data) => {
        if (!named && data.run_id) { named = true; started(data.run_id, id, mode); }
      }).catch(() => { /* the daemon went away; the feed reports it */ })
        .finally(() => { state.openStreams -= 1; });
    }
  } catch (error) {
    message.textContent = "Could not start: " + error.message;
  } finally {
    button.disabled = false;
  }
}

function started(runId, pipelineId, mode) {
  const run = upsertRun({run_id: runId, pipeline_id: pipelineId, mode});
  if (!run.created_at) run.created_at = run.started_at = new Date().toISOString();
  $("start-message").textContent = "Started run " + runId + ".";
  selectRun(runId);
}

// ---------------------------------------------------------------------------------------------------------------
// Wiring

// The hash names what the right column shows: a run (#run=ID) or a conversation (#conversation=ID, chat.js).
function onHash() {
  const match = /^#run=([0-9a-zA-Z_-]+)$/.exec(location.hash);
  const conversation = /^#conversation=([0-9a-zA-Z_-]+)$/.exec(location.hash);
  if (!conversation) closeConversation();
  if (match) openRun(match[1], {focus: true});
  else if (state.detailId) { state.detailId = null; scheduleRender(); }
  if (conversation) openConversation(conversation[1], {focus: true});
}

function init() {
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    state.keyGeneration += 1;
    state.pipelinesLoading = state.pipelinesAgain = false;  // a load for the old key never resumes (see api)
    if (state.key) localStorage.setItem(KEY_STORAGE, state.key); else localStorage.removeItem(KEY_STORAGE);
    state.pipelines.clear();
    state.runs.clear();
    chatReset();
    closeRun();
    restartFeed();
  });
  $("key-forget").addEventListener("click", () => {
    $("api-key").value = "";
    $("key-form").requestSubmit();
  });
  $("pipelines-refresh").addEventListener("click", () => loadPipelines(true));
  $("start-pipeline").addEventListener("change", () => { startInputsFor = null; renderStartInputs(); });
  $("start-form").addEventListener("submit", startRun);
  $("filter-pipeline").addEventListener("change", () => { scheduleRender(); loadRuns(); });
  $("filter-status").addEventListener("change", () => { scheduleRender(); loadRuns(); });
  $("run-filters").addEventListener("submit", (event) => event.preventDefault());
  $("detail-close").addEventListener("click", closeRun);
  $("detail-stop").addEventListener("click", () => control("terminate"));
  $("detail-pause").addEventListener("click", () => control("pause"));
  $("detail-resume").addEventListener("click", () => control("resume"));
  chatInit();
  window.addEventListener("hashchange", onHash);
  // Durations of live runs move on their own.
  setInterval(() => {
    if ([...state.runs.values()].some((r) => !FINAL.has(r.status))) scheduleRender();
  }, 1000);
  render();
  followFeed();
  onHash();
}

document.addEventListener("DOMContentLoaded", init);
