// MockShift's live dashboard: chatbots and their conversations (issue 12 item 7). Loaded after app.js, whose
// helpers and state it uses (api, el, $, setText, placeChildren, statusBadge, formatTime, pipelineName, refreshRun,
// state, FINAL).
//
// - The chatbot list: GET /_mock/chatbots (each chatbot with its linked pipeline and its number of conversations).
// - A chatbot's conversations: GET /_mock/conversations?chatbot_id= (turn count and last activity of each).
// - A conversation as a chat: GET /_mock/conversations/{id}, its stored turns (user text, answer, how it ended)
//   and its turn in progress, whose answer streams in token by token. "Stop generating" sends
//   POST /v1/chatbot/{id}/terminate {"pipeline_run_id"} with the key in the Authorization header, as elsewhere.
// - A chatbot session over WebSocket (SPEC §10) is a conversation too (same id): its turns are runs that record
//   `session_id`, marked "session" here; Stop on a session's live turn terminates the session
//   (POST /_mock/sessions/{id}/terminate, as its client's terminate_session would), which also closes its sockets.
//
// How the views stay current: feed-driven, nothing polls. A chatbot turn is a pipeline run, so it is in the run
// feed app.js follows: the feed's `created` event names the turn's chatbot and conversation (`chatbot_id`,
// `conversation_id`), its `stream` events carry the tokens (app.js collects them per run, and the live turn's
// answer is read from there, keyed by the turn's run id), and on the `created` and final events of a chatbot's
// runs this page refetches the chatbot counts, that chatbot's conversation list (when shown) and the open
// conversation (when it is that run's). An event of a run the last fetch of the list or the open conversation did
// not know yet (a turn announced before the daemon recorded it as in progress) asks for one more fetch.
"use strict";

const chat = {
  bots: new Map(),      // id -> chatbot as GET /_mock/chatbots gives it, newest first
  botsError: null,
  botsVersion: 0,       // bumped at each change of `bots`
  listFor: null,        // the chatbot whose conversations are listed
  list: null,           // its conversations (null while loading)
  listError: null,
  listVersion: 0,
  openId: null,         // the open conversation's id
  open: null,           // its record as last fetched (null while loading, or when gone)
  openError: null,
  busy: false,          // a Stop generating request is under way
  scrollToEnd: false,   // show the end of the chat once the newly opened conversation is loaded
  terminated: new Set(), // sessions this page terminated
};

// ---------------------------------------------------------------------------------------------------------------
// Loading

// Wraps a loader so that one pass runs at a time and calls made meanwhile fold into one more pass after it (a burst
// of feed events asks once or twice, not once per event). A pass for an older key never settles (see api in
// app.js); calls under a new key start at once.
function coalesced(task) {
  let running = null, again = false;  // running: the key generation of the pass under way
  return async function run() {
    if (running === state.keyGeneration) { again = true; return; }
    const generation = running = state.keyGeneration;
    try {
      do { again = false; await task(); } while (again && generation === state.keyGeneration);
    } finally {
      if (running === generation) running = null;
    }
  };
}

const loadChatbots = coalesced(async () => {
  try {
    const data = await api("GET", "/_mock/chatbots");
    chat.bots = new Map((data.chatbots || []).map((bot) => [bot.id, bot]));
    chat.botsError = null;
  } catch (error) {
    chat.botsError = error.message;
  }
  chat.botsVersion += 1;
  scheduleRender();
});

const loadConversationList = coalesced(async () => {
  const id = chat.listFor;
  if (!id) return;
  try {
    const data = await api("GET", "/_mock/conversations?chatbot_id=" + encodeURIComponent(id));
    if (chat.listFor !== id) return;
    chat.list = data.conversations || [];
    chat.listError = null;
  } catch (error) {
    if (chat.listFor === id) chat.listError = error.message;
  }
  chat.listVersion += 1;
  scheduleRender();
});

const loadConversation = coalesced(async () => {
  const id = chat.openId;
  if (!id) return;
  try {
    const data = await api("GET", "/_mock/conversations/" + encodeURIComponent(id));
    if (chat.openId !== id) return;
    chat.open = data.conversation;
    chat.openError = null;
    if (chat.listFor !== chat.open.chatbot_id) showConversations(chat.open.chatbot_id, {focus: false});
    if (!chat.bots.has(chat.open.chatbot_id)) loadChatbots();
  } catch (error) {
    if (chat.openId !== id) return;
    if (error.status === 404) chat.open = null;
    chat.openError = error.status === 404 ? "Conversation " + id + " not found in this namespace (deleted, or another key's)."
                                          : "Could not load the conversation: " + error.message;
  }
  scheduleRender();
});

// Called by app.js for every feed event, once the run's state is updated.
function chatFeedEvent(type, run) {
  if (!run.chatbot_id) return;
  const boundary = type === "created" || FINAL.has(type);  // a turn began or ended
  if (boundary || !chat.bots.has(run.chatbot_id)) loadChatbots();
  if (chat.listFor === run.chatbot_id && (boundary || !listKnows(run))) loadConversationList();
  if (run.conversation_id && run.conversation_id === chat.openId && (boundary || !conversationKnows(run.run_id))) {
    loadConversation();
  }
}

function listKnows(run) {
  const c = chat.list && chat.list.find((item) => item.id === run.conversation_id);
  return !!c && (c.turn_in_progress === run.run_id || c.turns.some((turn) => turn.run_id === run.run_id));
}

function conversationKnows(runId) {
  const c = chat.open;
  return !!c && ((c.live_turn && c.live_turn.run_id === runId) || c.turns.some((turn) => turn.run_id === runId));
}

// The feed (re)connected: what happened meanwhile is fetched again.
function chatReload() {
  loadChatbots();
  if (chat.listFor) loadConversationList();
  if (chat.openId) loadConversation();
}

// A new key: nothing of the old namespace stays.
function chatReset() {
  chat.bots = new Map();
  chat.botsError = null;
  chat.botsVersion += 1;
  chat.listFor = null;
  chat.list = null;
  chat.listVersion += 1;
  closeConversation();
}

// ---------------------------------------------------------------------------------------------------------------
// Navigation

function showConversations(chatbotId, options) {
  if (chat.listFor !== chatbotId) {
    chat.listFor = chatbotId;
    chat.list = null;
    chat.listError = null;
    chat.listVersion += 1;
  }
  loadConversationList();
  scheduleRender();
  if (options && options.focus) requestAnimationFrame(() => $("conversations-title").focus());
}

// Opens conversation `id` in the right column (app.js's onHash calls it for #conversation=ID).
function openConversation(id, options) {
  if (chat.openId !== id) {
    closeConversation();
    chat.openId = id;
    chat.scrollToEnd = true;
  }
  setText($("conversation-message"), "");
  loadConversation();
  scheduleRender();
  if (options && options.focus) requestAnimationFrame(() => $("conversation-title").focus());
}

function closeConversation() {
  chat.openId = null;
  chat.open = null;
  chat.openError = null;
  turnItems.clear();
  $("conversation-turns").replaceChildren();
  scheduleRender();
}

// ---------------------------------------------------------------------------------------------------------------
// The turns of a conversation, as shown

// The answer of a run's output, as text.
function outputText(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

// The turn in progress of conversation `c`, or null: the one the daemon reported (live_turn), else the newest run
// the feed named for this conversation that is not stored yet (announced after the last fetch, or ended and
// about to be stored). Its answer is what the feed streamed so far; once the run is final, its result or partial
// outputs, until the stored turn replaces it.
function liveTurn(c) {
  const stored = new Set(c.turns.map((turn) => turn.run_id));
  let runId = c.live_turn && !stored.has(c.live_turn.run_id) ? c.live_turn.run_id : null;
  if (!runId) {
    let newest = null;
    for (const run of state.runs.values()) {
      if (run.conversation_id !== c.id || stored.has(run.run_id)) continue;
      if (!newest || (run.created_at || "") > (newest.created_at || "")) newest = run;
    }
    if (newest) runId = newest.run_id;
  }
  if (!runId) return null;
  const run = state.runs.get(runId);
  const bot = chat.bots.get(c.chatbot_id);
  const output = bot ? bot.output : run && Object.keys(run.outputs)[0];
  let answer = run && output ? outputText(run.outputs[output]) : "";
  let outcome = "generating";
  if (run && FINAL.has(run.status)) {
    outcome = {completed: "completed", terminated: "stopped", failed: "failed"}[run.status];
    if (run.final && output && run.final[output] !== undefined) answer = outputText(run.final[output]);
  }
  return {
    run_id: runId, user_text: c.live_turn && c.live_turn.run_id === runId ? c.live_turn.user_text : "",
    session_id: run && run.session_id || null,
    answer, outcome, error: run && run.error, live: outcome === "generating",
    joined: outcome === "generating" && !(run && run.fromStart),
    at: c.live_turn && c.live_turn.run_id === runId ? c.live_turn.started_at : run && run.created_at,
  };
}

function turnsOf(c) {
  if (!c) return [];
  const turns = c.turns.map((turn) => ({run_id: turn.run_id, user_text: turn.user_text, answer: turn.answer,
                                        outcome: turn.outcome, error: turn.error, live: false, joined: false,
                                        session_id: sessionOfRun(turn.run_id)}));
  const live = liveTurn(c);
  if (live) turns.push(live);
  return turns;
}

// The session a turn's run belongs to (the run recorded `session_id`), or null: an HTTP turn, or a run this page
// has not loaded (older than the runs it lists).
function sessionOfRun(runId) {
  const run = state.runs.get(runId);
  return run && run.session_id || null;
}

// The session conversation `c` is, when one of its known runs says so (a session's conversation has its id).
function sessionOf(c) {
  if (!c) return null;
  for (const run of state.runs.values()) if (run.conversation_id === c.id && run.session_id) return run.session_id;
  return null;
}

// The newest moment something happened in a conversation record (ISO strings compare in time order).
function lastActivity(c) {
  let last = c.created_at || "";
  for (const turn of c.turns) if ((turn.ended_at || "") > last) last = turn.ended_at;
  if (c.live_turn && c.live_turn.started_at > last) last = c.live_turn.started_at;
  return last || null;
}

const NOTES = {
  stopped: "Stopped: a partial answer, what was generated before the stop.",
  joined: "Joined mid-answer: tokens generated before this page connected are not shown; the whole answer shows when the turn ends.",
};

const turnItems = new Map();  // run id -> the turn's list item and the parts that change

// Builds a turn's item once and then updates it in place (its answer grows token by token; reading, selecting
// or a focused link are not disturbed).
function turnItem(turn) {
  let item = turnItems.get(turn.run_id);
  if (!item) {
    const user = el("p", {class: "text", "data-role": "user"});
    const answer = el("p", {class: "text", "data-role": "answer"});
    const badge = el("span", {class: "outcome"});
    const via = el("span", {class: "via", hidden: true, "data-role": "session", title: "A turn of a WebSocket session"},
                   "session");
    const note = el("p", {class: "turn-note", hidden: true});
    const link = el("a", {href: "#run=" + turn.run_id, "aria-label": "Run " + turn.run_id + " of this turn"},
                    "run " + turn.run_id.slice(0, 8) + "…");
    const bubble = el("div", {class: "bubble answer"},
      el("p", {class: "who"}, el("strong", {text: "Assistant"}), badge, via, link), answer, note);
    const li = el("li", {class: "turn", "data-run-id": turn.run_id},
      el("div", {class: "bubble user"}, el("p", {class: "who"}, el("strong", {text: "User"})), user), bubble);
    item = {li, user, answer, badge, via, note, bubble, outcome: null};
    turnItems.set(turn.run_id, item);
  }
  setText(item.user, turn.user_text);
  setText(item.answer, turn.answer);
  item.via.hidden = !turn.session_id;
  if (turn.session_id) item.li.dataset.sessionId = turn.session_id; else delete item.li.dataset.sessionId;
  if (item.outcome !== turn.outcome) {
    item.outcome = turn.outcome;
    item.li.dataset.outcome = turn.outcome;
    item.bubble.dataset.outcome = turn.outcome;
    item.badge.replaceChildren(statusBadge(turn.outcome));
  }
  if (turn.live) item.li.setAttribute("aria-busy", "true"); else item.li.removeAttribute("aria-busy");
  let note = null, kind = null;
  if (turn.outcome === "stopped") { note = NOTES.stopped; kind = "stopped"; }
  else if (turn.outcome === "failed") { note = "Failed: " + (turn.error || "unknown error"); kind = "failed"; }
  else if (turn.joined) { note = NOTES.joined; kind = "joined"; }
  item.note.hidden = !note;
  item.note.className = "turn-note" + (kind ? " " + kind : "");
  setText(item.note, note || "");
  return item.li;
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering (called by app.js's render)

function renderChat() {
  renderChatbots();
  renderConversationList();
  renderConversation();
}

const botRows = new Map();  // chatbot id -> {tr, cells}

function renderChatbots() {
  const version = chat.botsVersion + "/" + state.pipelinesVersion + "/" + chat.listFor;
  const body = $("chatbots-table").tBodies[0];
  if (body.dataset.version === version) return;
  body.dataset.version = version;
  const bots = [...chat.bots.values()];
  // Rows are kept and updated in place: counts change with every turn, and a focused button must stay.
  const rows = bots.map((bot) => {
    let row = botRows.get(bot.id);
    if (!row) {
      // The name is the button that lists the chatbot's conversations (as a run's id opens the run).
      const open = el("button", {type: "button", class: "link", onclick: () => showConversations(bot.id, {focus: true})});
      const cells = {pipeline: el("td", {"data-cell": "pipeline"}),
                     conversations: el("td", {class: "num", "data-cell": "conversations"})};
      const tr = el("tr", {"data-chatbot-id": bot.id}, el("th", {scope: "row"}, open), cells.pipeline, cells.conversations);
      row = {tr, cells, open, name: null};
      botRows.set(bot.id, row);
    }
    if (row.name !== bot.name) {
      row.name = bot.name;
      row.open.replaceChildren(bot.name, el("code", {text: bot.id.slice(0, 12) + "…", title: bot.id}));
      row.open.setAttribute("aria-label", bot.name + ": list its conversations");
    }
    setText(row.cells.pipeline, pipelineName(bot.pipeline.id));
    setText(row.cells.conversations, String(bot.conversations));
    row.tr.classList.toggle("selected", chat.listFor === bot.id);
    row.open.setAttribute("aria-expanded", chat.listFor === bot.id ? "true" : "false");
    return row.tr;
  });
  placeChildren(body, rows);
  for (const id of [...botRows.keys()]) if (!chat.bots.has(id)) botRows.delete(id);
  $("chatbots-note").hidden = bots.length === 0;
  const empty = $("chatbots-empty");
  empty.hidden = bots.length > 0 && !chat.botsError;
  empty.textContent = chat.botsError ? "Could not list chatbots: " + chat.botsError : "No chatbots in this namespace yet.";
}

const conversationRows = new Map();  // conversation id -> {tr, cells}

function renderConversationList() {
  const box = $("conversations");
  box.hidden = !chat.listFor;
  if (!chat.listFor) return;
  const bot = chat.bots.get(chat.listFor);
  setText($("conversations-chatbot"), bot ? bot.name : chat.listFor);
  const body = $("conversations-table").tBodies[0];
  const version = chat.listFor + "/" + chat.listVersion + "/" + chat.openId;
  if (body.dataset.version === version) return;
  body.dataset.version = version;
  const list = (chat.list || []).map((c) => ({c, last: lastActivity(c)}))
    .sort((a, b) => (b.last || "").localeCompare(a.last || "") || b.c.id.localeCompare(a.c.id));
  const rows = list.map(({c, last}) => {
    let row = conversationRows.get(c.id);
    if (!row) {
      const open = el("button", {type: "button", class: "link", "aria-label": "Open conversation " + c.id,
                                 onclick: () => { location.hash = "conversation=" + c.id; }},
                      el("code", {text: c.id.slice(0, 10) + "…"}));
      const cells = {turns: el("td", {class: "num", "data-cell": "turns"}), last: el("td", {"data-cell": "last"}),
                     state: el("td", {"data-cell": "state"})};
      const tr = el("tr", {"data-conversation-id": c.id}, el("th", {scope: "row"}, open), cells.turns, cells.last, cells.state);
      row = {tr, cells, state: null};
      conversationRows.set(c.id, row);
    }
    setText(row.cells.turns, String(c.turns.length));
    setText(row.cells.last, formatTime(last));
    // The last turn: in progress, or how it ended.
    const lastTurn = c.turn_in_progress ? "generating" : c.turns.length ? c.turns[c.turns.length - 1].outcome : "";
    if (row.state !== lastTurn) {
      row.state = lastTurn;
      row.tr.dataset.state = lastTurn;
      row.cells.state.replaceChildren(lastTurn ? statusBadge(lastTurn) : "—");
    }
    row.tr.classList.toggle("selected", chat.openId === c.id);
    return row.tr;
  });
  placeChildren(body, rows);
  const ids = new Set(list.map(({c}) => c.id));
  for (const id of [...conversationRows.keys()]) if (!ids.has(id)) conversationRows.delete(id);
  const empty = $("conversations-empty");
  empty.hidden = list.length > 0 && !chat.listError;
  empty.textContent = chat.listError ? "Could not list conversations: " + chat.listError
                    : chat.list === null ? "Loading…" : "No conversations yet.";
}

function renderConversation() {
  const section = $("conversation");
  if (!chat.openId) { section.hidden = true; return; }
  section.hidden = false;
  setText($("conversation-id"), chat.openId);
  const c = chat.open;
  const bot = c && chat.bots.get(c.chatbot_id);
  setText($("conversation-chatbot"), bot ? bot.name + " (" + bot.id + ")" : c ? c.chatbot_id : "…");
  setText($("conversation-pipeline"), bot ? pipelineName(bot.pipeline.id) + " (" + bot.pipeline.id + ")" : "—");
  const turns = turnsOf(c);
  const live = turns.find((turn) => turn.live) || null;
  setText($("conversation-turn-count"), c ? String(c.turns.length) + (live ? " + 1 in progress" : "") : "—");
  setText($("conversation-last"), c ? formatTime(lastActivity(c)) : "—");
  const session = sessionOf(c);
  $("conversation-session").hidden = !session;
  setText($("conversation-session-id"), session ? session + (sessionEnded(c) ? " (terminated)" : "") : "");

  const list = $("conversation-turns");
  // Follow new tokens and turns while the chat shows its end; a reader who scrolled up keeps their place.
  const atEnd = chat.scrollToEnd || list.scrollHeight - list.scrollTop - list.clientHeight <= 8;
  const items = turns.map(turnItem);
  placeChildren(list, items);
  const shown = new Set(turns.map((turn) => turn.run_id));
  for (const id of [...turnItems.keys()]) if (!shown.has(id)) turnItems.delete(id);
  if (atEnd) list.scrollTop = list.scrollHeight;
  if (c) chat.scrollToEnd = false;

  const empty = $("conversation-empty");
  empty.hidden = turns.length > 0 && !chat.openError;
  empty.textContent = chat.openError || (c ? "No turns yet." : "Loading…");
  list.hidden = turns.length === 0;
  const stop = $("conversation-stop");
  stop.disabled = chat.busy || !live;
  stop.dataset.runId = live ? live.run_id : "";
  stop.textContent = live && live.session_id ? "Stop (terminate session)" : "Stop generating";
}

// This page stopped session `c` (its answer says it is terminated for good).
function sessionEnded(c) {
  return !!c && chat.terminated.has(c.id);
}

// ---------------------------------------------------------------------------------------------------------------
// Stop generating

async function stopGenerating() {
  const c = chat.open;
  const live = c && turnsOf(c).find((turn) => turn.live);
  if (!live) return;
  const message = $("conversation-message");
  chat.busy = true;
  message.textContent = "Stopping…";
  render();
  try {
    if (live.session_id) {
      // A session turn: the session is terminated, as its client's terminate_session would; its sockets are closed.
      await api("POST", "/_mock/sessions/" + encodeURIComponent(live.session_id) + "/terminate");
      chat.terminated.add(live.session_id);
    } else {
      await api("POST", "/v1/chatbot/" + encodeURIComponent(c.chatbot_id) + "/terminate", {pipeline_run_id: live.run_id});
    }
    // The turn is stored before the terminate answers: the next fetch has its partial answer.
    const run = state.runs.get(live.run_id);
    if (run) run.status = "terminated";
    message.textContent = live.session_id ? "Session terminated." : "Stopped.";
  } catch (error) {
    message.textContent = "Could not stop: " + error.message;
  } finally {
    chat.busy = false;
    await loadConversation();
    refreshRun(live.run_id);
    render();
  }
}

function chatInit() {
  $("chatbots-refresh").addEventListener("click", () => {
    loadChatbots();
    if (chat.listFor) loadConversationList();
  });
  $("conversation-close").addEventListener("click", () => {
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    closeConversation();
  });
  $("conversation-stop").addEventListener("click", stopGenerating);
}
