"""Test controls of sessions and fixture agents (issue 13 item 5): `GET /_mock/sessions` and `/_mock/sessions/{id}`
(messages and the turns read from them), WebSocket frames in the journal (`GET /_mock/requests`), and agents in
fixture files (`serve --fixtures`, `scripts/seed`) read back through the real SDK's `Agent`."""
import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import uuid
import warnings

import pytest
import requests
from vectorshift.chatbot import Chatbot

from conftest import REPO, Http, build_llm_pipeline, point_sdk, unique, wait_for
from test_fixtures import refused_start
from wsclient import RawWebSocket

FIXTURES = REPO / "fixtures"


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def make_bot(daemon, api_key, monkeypatch):
    """A chatbot of `api_key` on `daemon`; the SDK's WebSocket URL follows VECTORSHIFT_BASE_URL (…/v1/ws/session)."""
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", daemon.url)
    monkeypatch.delenv("VECTORSHIFT_WS_URL", raising=False)
    pipeline = build_llm_pipeline(point_sdk(daemon, api_key), unique("controls-chat"))
    return Chatbot.new(name=unique("controls-bot"), description="", pipeline_id=pipeline.id)


async def open_session(bot, terminate=False):
    session = await bot.create_session()
    await session.connect()
    session_id = session.session_id
    await (session.terminate() if terminate else session.disconnect())
    return session_id


# MARK: GET /_mock/sessions


def test_sessions_are_listed_oldest_first_with_filters_and_unknown_ids_are_404(daemon, api_key, monkeypatch):
    http = Http(daemon, api_key)
    bot = make_bot(daemon, api_key, monkeypatch)
    other_bot = Chatbot.new(name=unique("controls-other"), description="", pipeline_id=bot.pipeline_id)
    first = run(open_session(bot, terminate=True))
    second = run(open_session(other_bot))

    def settled():
        # SDK 0.1.15 closes without waiting for the server's Close: wait until both closes were handled.
        listed = http("GET", "/_mock/sessions").json()
        done = [(s["status"], s["sockets"]) for s in listed["sessions"]] == [("terminated", 0), ("open", 0)]
        return listed if done else None

    listed = wait_for(settled, message="both sessions closed")
    assert listed["status"] == "success"
    assert [s["id"] for s in listed["sessions"]] == [first, second], "oldest first"
    one, two = listed["sessions"]
    assert (one["owner_type"], one["owner_id"], one["status"], one["message_count"]) == ("chatbot", bot.id, "terminated", 0)
    assert one["terminated_at"] and one["terminated_at"] >= one["created_at"]
    assert (two["owner_id"], two["status"], two["terminated_at"]) == (other_bot.id, "open", None)
    assert set(one) == {"id", "owner_type", "owner_id", "status", "created_at", "terminated_at", "message_count",
                        "sockets", "live_turn"}
    assert (one["sockets"], one["live_turn"]) == (0, None)
    assert [s["id"] for s in http("GET", "/_mock/sessions", params={"owner_id": other_bot.id}).json()["sessions"]] == [second]
    assert [s["id"] for s in http("GET", "/_mock/sessions", params={"status": "open"}).json()["sessions"]] == [second]
    assert [s["id"] for s in http("GET", "/_mock/sessions", params={"status": "terminated"}).json()["sessions"]] == [first]
    bad = http("GET", "/_mock/sessions", params={"status": "closed"})
    assert bad.status_code == 400 and bad.json() == {"status": "failed", "error": "status must be open or terminated"}
    shown = http("GET", f"/_mock/sessions/{second}").json()["session"]
    # `sockets` may still drop between the two reads: SDK 0.1.15 closes without waiting for the server's Close.
    assert {k: shown[k] for k in two if k != "sockets"} == {k: v for k, v in two.items() if k != "sockets"}
    assert shown["messages"] == [] and shown["turns"] == []
    for unknown, key in (("0" * 24, api_key), (second, unique("another-key"))):
        r = Http(daemon, key)("GET", f"/_mock/sessions/{unknown}")
        assert r.status_code == 404 and r.json() == {"status": "failed", "error": f"Session {unknown} not found"}
    assert Http(daemon, unique("another-key"))("GET", "/_mock/sessions").json()["sessions"] == []
    assert http("POST", "/_mock/reset").status_code == 200
    assert http("GET", "/_mock/sessions").json()["sessions"] == []


def stored_message(session_id, position, sender, content, at):
    return (session_id, position, uuid.uuid4().hex[:24], json.dumps(sender), json.dumps(content), at)


def test_a_session_shows_its_stored_messages_as_get_messages_does_and_how_each_turn_ended(new_daemon, api_key, tmp_path,
                                                                                          monkeypatch):
    """Turns are read from what is stored, so the messages are written into the database of a stopped daemon (as
    a session's turns leave them) and read after a restart: one completed, one terminated, one failed, and one
    whose agent waited for an approval when the daemon stopped (the restart stores it failed, `interrupted`)."""
    db = tmp_path / "sessions.sqlite3"
    daemon = new_daemon(db=db)
    bot = make_bot(daemon, api_key, monkeypatch)
    session_id = run(open_session(bot))
    assert daemon.stop() == 0
    user, agent = {"user_id": "u-1"}, {"object_id": bot.id, "object_type": "chatbot"}
    rows = [
        (user, {"type": "data_type_message", "value": "What is the status of order 1234?"}),
        (agent, {"type": "data_type_message", "value": "It ships tomorrow.", "status": "Complete"}),
        (user, {"type": "data_type_message", "value": "Write me a long poem."}),
        (agent, {"type": "data_type_message", "value": "Roses are", "status": "Terminated"}),
        (user, {"type": "data_type_message", "value": "Try again."}),
        (agent, {"type": "error_message", "error": "the model provider is overloaded"}),
        (user, {"type": "data_type_message", "value": "Email me the summary."}),
        (agent, {"type": "tool_call_approval", "tool_name": "send_email", "tool_id": "t-1", "tool_call_id": "c-1"}),
    ]
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO session_messages (session_id, position, id, sender, content, created_at) "
                         "VALUES (?,?,?,?,?,?)",
                         [stored_message(session_id, i, s, c, 1_700_000_000_000_000 + i) for i, (s, c) in enumerate(rows)])
    conn.close()
    daemon = new_daemon(db=db)
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", daemon.url)
    point_sdk(daemon, api_key)

    async def history():
        resumed = await bot.resume_session(session_id)
        await resumed.connect()
        try:
            return [m.raw for m in await resumed.get_messages()]
        finally:
            await resumed.disconnect()

    shown = Http(daemon, api_key)("GET", f"/_mock/sessions/{session_id}").json()["session"]
    assert shown["message_count"] == len(rows) + 1, "the restart answered the cut turn"
    assert shown["messages"] == run(history()), "the messages as get_messages answers them"
    turns = shown["turns"]
    assert [t["outcome"] for t in turns] == ["completed", "terminated", "failed", "failed"]
    assert turns[3]["error"] == "interrupted"
    assert [t["user_text"] for t in turns] == ["What is the status of order 1234?", "Write me a long poem.",
                                               "Try again.", "Email me the summary."]
    assert [t["answer"] for t in turns] == ["It ships tomorrow.", "Roses are", None, None]
    assert turns[2]["error"] == "the model provider is overloaded"
    ids = [m["id"] for m in shown["messages"]]
    assert [t["message_ids"] for t in turns] == [ids[0:2], ids[2:4], ids[4:6], ids[6:9]]
    assert turns[0]["answer_message_id"] == ids[1] and turns[3]["answer_message_id"] == ids[8]
    assert turns[0]["ended_at"] == shown["messages"][1]["created_at"] and turns[3]["ended_at"]


# MARK: Frames in the journal


def journal(daemon, api_key, **params):
    r = requests.get(f"{daemon.root}/_mock/requests", params=params, headers={"Authorization": f"Bearer {api_key}"},
                     timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["requests"]


@pytest.mark.parametrize("path", ["/v1/ws/session", "/ws/session"])
def test_the_journal_records_each_frame_without_its_body_and_the_upgrade(daemon, api_key, path, monkeypatch):
    bot = make_bot(daemon, api_key, monkeypatch)
    ws = RawWebSocket(daemon.root, path=path, key=api_key)
    assert ws.connect().status == 101
    create = json.dumps({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})
    ws.send_text(create)
    created = ws.recv_frame()[2]
    session_id = json.loads(created)["session_id"]
    secret = "my card number is 4111 1111 1111 1111"
    post = json.dumps({"type": "tell_everyone", "session_id": session_id, "content": secret})  # an error frame back
    ws.send_text(post)
    answer = ws.recv_frame()[2]
    ws.send_text("not json at all")
    error = ws.recv_frame()[2]
    assert ws.close() == 1000
    entries = journal(daemon, api_key)
    upgrade = [e for e in entries if e["kind"] == "request" and e["path"] == path]
    assert len(upgrade) == 1 and upgrade[0]["status"] == 101 and upgrade[0]["method"] == "GET"
    assert upgrade[0]["authorization"] == "Bearer …" + api_key[-4:]
    frames = journal(daemon, api_key, kind="ws_frame")
    assert all(f["kind"] == "ws_frame" for f in frames) and entries.index(upgrade[0]) < entries.index(frames[0])
    shape = [(f["direction"], f["type"], f["session_id"], f["size"]) for f in frames]
    assert shape == [("in", "create_session", None, len(create)), ("out", "session_created", session_id, len(created)),
                     ("in", "tell_everyone", session_id, len(post)), ("out", "error", session_id, len(answer)),
                     ("in", None, None, len("not json at all")), ("out", "error", session_id, len(error))]
    assert all(f["authorization"] == "Bearer …" + api_key[-4:] and f["at"] for f in frames)
    assert all(set(f) == {"kind", "at", "path", "direction", "type", "session_id", "size", "authorization"} for f in frames)
    assert {f["path"] for f in frames} == {path}
    assert secret not in json.dumps(entries) and api_key not in json.dumps(entries), "no frame body, no key"
    assert len(journal(daemon, api_key, session_id=session_id)) == 4
    assert all(e["kind"] == "request" for e in journal(daemon, api_key, kind="request"))
    assert journal(daemon, api_key, kind="ws_frame", limit=2) == frames[-2:]
    r = requests.get(f"{daemon.root}/_mock/requests", params={"kind": "frames"}, headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 400 and r.json() == {"status": "failed", "error": "kind must be request or ws_frame"}


def test_frames_share_the_journal_size_ring_oldest_dropped_first(new_daemon, api_key, monkeypatch):
    daemon = new_daemon("--journal-size", "4")
    bot = make_bot(daemon, api_key, monkeypatch)
    ws = RawWebSocket(daemon.root, key=api_key)
    assert ws.connect().status == 101
    ws.send_text(json.dumps({"type": "create_session", "object_type": "chatbot", "object_id": bot.id}))
    session_id = json.loads(ws.recv_frame()[2])["session_id"]
    for _ in range(3):
        ws.send_text(json.dumps({"type": "ping_session", "session_id": session_id}))
        assert json.loads(ws.recv_frame()[2])["type"] == "pong"
    entries = journal(daemon, api_key)
    assert [(e["direction"], e["type"]) for e in entries] == [("in", "ping_session"), ("out", "pong")] * 2, \
        "the four newest entries, oldest first: the upgrade and the older frames were dropped"
    requests.get(f"{daemon.url}/pipelines", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert [e["kind"] for e in journal(daemon, api_key)] == ["ws_frame"] * 3 + ["request"]
    ws.close()


def test_the_sdks_session_frames_are_journalled_in_order(daemon, api_key, monkeypatch):
    bot = make_bot(daemon, api_key, monkeypatch)
    session_id = run(open_session(bot))

    def recorded():
        # disconnect() may return before the server handled the frames (aiohttp does not always wait for the
        # server's Close): wait for the last one.
        frames = [(f["direction"], f["type"]) for f in journal(daemon, api_key, kind="ws_frame")]
        return frames if ("in", "disconnect_session") in frames else None

    frames = wait_for(recorded, message="the disconnect_session frame in the journal")
    assert frames[:2] == [("in", "create_session"), ("out", "session_created")]
    # The SDK does not wait for the connect ack and closes its socket right after disconnect_session: answers
    # still queued when the client's Close arrives are not sent (nobody reads them), so they may be missing.
    inbound = [f for f in frames if f[0] == "in"]
    assert inbound == [("in", "create_session"), ("in", "connect_session"), ("in", "disconnect_session")]
    assert set(frames) - set(inbound) <= {("out", "session_created"), ("out", "connect_session"), ("out", "disconnect_session")}
    assert {f["session_id"] for f in journal(daemon, api_key, kind="ws_frame")[1:]} == {session_id}


# MARK: Fixture agents


def agents_of(daemon, key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = requests.get(f"{daemon.url}/agents", params={"verbose": "true"}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return {a["name"]: a for a in r.json()["objects"]}


def stored_part(agent):
    """What a fixture decides of an agent: everything but its id and times."""
    return {k: v for k, v in agent.items() if k not in {"_id", "id", "mainBranch", "created_at", "updated_at", "currentVersion"}}


def test_fixture_agents_are_read_by_the_sdk_and_a_functional_one_runs(new_daemon):
    from vectorshift.agent import Agent, AgentType
    from vectorshift.agent.tool import ToolApprovalConfig

    daemon = new_daemon("--fixtures", str(FIXTURES), "--time-scale", "0")
    point_sdk(daemon, unique("agents"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # from_json warns on keys it does not know
        support = Agent.fetch(name="support_agent")
        triage = Agent.fetch(name="ticket_triage")
        listed = Agent.list(verbose=True)
    assert support.agent_type == AgentType.CONVERSATIONAL and support.memory_config.enable_session_memory
    assert [(t.name, t.tool_type, t.approval_config) for t in support.tools] == \
        [("send_email", "email_notification", ToolApprovalConfig.REQUIRES_APPROVAL)]
    assert sorted(a.name for a in listed) == ["support_agent", "ticket_triage"]
    assert sorted(a.id for a in Agent.list()) == sorted([support.id, triage.id])
    assert triage.agent_type == AgentType.FUNCTIONAL and triage.llm_info.model_id == "gpt-4o-mini"
    assert set(triage.inputs) == {"ticket"} and set(triage.outputs) == {"summary", "priority"}
    assert triage.inputs["ticket"].server_id in triage.instructions and "[[" not in triage.instructions
    result = triage.run(inputs={"ticket": "My order 1234 is late."})
    assert result.status == "success" and set(result.outputs) == {"summary", "priority"}
    assert all(len(v.split()) > 5 for v in result.outputs.values())
    assert triage.run(inputs={"ticket": "My order 1234 is late."}).outputs == result.outputs, "deterministic"


def test_fixture_agents_keep_their_ids_across_restarts_reach_every_key_and_come_back_on_reset(new_daemon, tmp_path):
    db = tmp_path / "agents.sqlite3"
    key = unique("agents")
    daemon = new_daemon("--fixtures", str(FIXTURES), db=db)
    default, mine = agents_of(daemon, None), agents_of(daemon, key)
    assert sorted(default) == sorted(mine) == ["support_agent", "ticket_triage"]
    assert default["support_agent"]["_id"] != mine["support_agent"]["_id"], "each key has its own agent"
    assert stored_part(default["ticket_triage"]) == stored_part(mine["ticket_triage"]), "the same minted ids everywhere"
    assert daemon.stop() == 0
    daemon = new_daemon("--fixtures", str(FIXTURES), db=db)
    again = agents_of(daemon, None)
    assert {n: a["_id"] for n, a in again.items()} == {n: a["_id"] for n, a in default.items()}, \
        "default's agents are updated by name, not duplicated"
    assert stored_part(again["ticket_triage"]) == stored_part(default["ticket_triage"])
    http = Http(daemon, key)
    assert http("DELETE", f"/agent/{mine['ticket_triage']['_id']}").status_code == 200
    assert sorted(agents_of(daemon, key)) == ["support_agent"]
    assert http("POST", "/_mock/reset").status_code == 200
    back = agents_of(daemon, key)
    assert sorted(back) == ["support_agent", "ticket_triage"]
    assert stored_part(back["ticket_triage"]) == stored_part(mine["ticket_triage"])


def test_the_seed_script_loads_agents_as_the_daemon_expands_them(new_daemon, daemon, api_key):
    with_fixtures = new_daemon("--fixtures", str(FIXTURES))
    expected = {n: stored_part(a) for n, a in agents_of(with_fixtures, None).items()}
    for _ in range(2):  # twice: the second run saves over the agents instead of duplicating them
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "seed"), str(FIXTURES), "--url", daemon.root,
                               "--api-key", api_key], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "2 agent(s)" in done.stdout
        seeded = agents_of(daemon, api_key)
        assert {n: stored_part(a) for n, a in seeded.items()} == expected


@pytest.mark.parametrize("content, field", [
    ('{"agents": [{"name": "a", "agent_type": "chatty"}]}', "agents[0]: agent_type must be functional or conversational"),
    ('{"agents": [{"agent_type": "functional"}]}', "agents[0]: name is required"),
    ('{"agents": [{"name": "a", "tools": [{"name": "t", "type": "web", "approval_config": "ask"}]}]}',
     "agents[0]: tools[0].approval_config must be"),
    ('{"agents": [{"name": "a", "instructions": "[[inputs.x]]"}]}', "agents[0]: instructions: [[inputs.x]] names no input"),
    ('{"agents": [{"name": "a"}, {"name": "a"}]}', "agents[1]: an agent named 'a' is defined twice"),
    ('{"agents": {"name": "a"}}', "agents: must be a list"),
])
def test_a_bad_fixture_agent_stops_the_start_naming_file_and_field(tmp_path, content, field):
    done = refused_start(tmp_path, "agents.json", content)
    assert "agents.json" in done.stderr and field in done.stderr, done.stderr
