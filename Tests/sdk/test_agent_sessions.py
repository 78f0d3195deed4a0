"""Conversational agents over WebSocket sessions (SPEC §10–§11, API-CHAT §2.4, §2.5, §2.9, §3.4, §3.5, issue 13):
`agent.create_session()`, `agent.run("…")`, tool calls and approvals (`respond_approval`), terminate and task
cancel, scripted answers naming agents and tools, runs recorded with `agent_id` and `session_id`, restarts. Through
the real SDK, and through our raw client (`wsclient.py`) where the SDK cannot show it (no frame after terminate)."""
import asyncio
import signal
import time

import pytest
import requests
from vectorshift.agent import Agent, AgentType, LlmInfo, MemoryConfig
from vectorshift.agent.object import ConversationalRunActionRequiredError
import vectorshift.agent.tools as agent_tools
from vectorshift.events import ParticipantStatus, SessionEventType
from vectorshift.session import Session, SessionError

from conftest import point_sdk, unique, wait_for
from test_sessions import resume_error, zombie_teardown
from wsclient import RawWebSocket


def run(coroutine, timeout=60):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def on(daemon, api_key, monkeypatch):
    """Points the SDK (HTTP and WebSocket) at `daemon` with `api_key`."""
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", daemon.url)
    monkeypatch.delenv("VECTORSHIFT_WS_URL", raising=False)
    point_sdk(daemon, api_key)


def new_agent(instructions="Answer the user briefly.", tools=(), memory=True, name=None):
    return Agent.new(name=name or unique("conv-agent"), llm_info=LlmInfo(provider="openai", model_id="gpt-4o"),
                     agent_type=AgentType.CONVERSATIONAL, instructions=instructions, tools=list(tools),
                     memory_config=MemoryConfig(enable_session_memory=memory))


def weather_tool(approval="auto_run"):
    return agent_tools.ApiTool(tool_name="weather_api", approval_config=approval)


def arxiv_tool(approval="requires_approval"):
    return agent_tools.ArxivTool(tool_name="arxiv_search", approval_config=approval)


def control(daemon, api_key, method, path, **kw):
    r = requests.request(method, daemon.root + path, headers={"Authorization": f"Bearer {api_key}"}, timeout=30, **kw)
    assert r.ok, r.text
    return r.json()


def runs_of(daemon, api_key):
    return control(daemon, api_key, "GET", "/_mock/runs")["runs"]


def raw(daemon, api_key):
    ws = RawWebSocket(daemon.root, key=api_key)
    assert ws.connect().status == 101
    return ws


def stored_messages(daemon, api_key, session_id):
    """The session's history, read through a raw socket (`get_messages`)."""
    ws = raw(daemon, api_key)
    try:
        ws.send_json({"type": "get_messages", "session_id": session_id})
        return ws.recv_json()["messages"]
    finally:
        ws.close()


def recv_until(ws, predicate, limit=2000):
    """Frames until one satisfies `predicate` (included)."""
    frames = []
    for _ in range(limit):
        frames.append(ws.recv_json())
        if predicate(frames[-1]):
            return frames
    raise AssertionError(f"no matching frame in {limit}: {frames[-5:]}")


def is_idle(f):
    return f["type"] == "participant_status" and f["message"]["status"] == "Idle"


def status_frame(f, status):
    return f["type"] == "participant_status" and f["message"]["status"] == status


@pytest.fixture
def fast(new_daemon, api_key, monkeypatch):
    """A daemon whose answers take a tenth of the default time (about 0.35 s)."""
    d = new_daemon("--time-scale", "0.1")
    on(d, api_key, monkeypatch)
    return d


@pytest.fixture
def manual(new_daemon, api_key, monkeypatch):
    d = new_daemon("--clock", "manual")
    on(d, api_key, monkeypatch)
    return d


def advance(daemon, api_key, ms):
    control(daemon, api_key, "POST", "/_mock/clock/advance", json={"ms": ms})


# MARK: Sessions of agents


def test_an_agent_session_is_created_connected_and_resumed_by_id(fast):
    agent = new_agent()

    async def scenario():
        session = await agent.create_session()
        await session.connect()
        saved = session.session_id
        first = await session.get_messages()
        await session.disconnect()
        resumed = await agent.resume_session(saved)
        await resumed.connect()
        try:
            return saved, first, resumed.session_id, await resumed.get_messages()
        finally:
            await resumed.disconnect()

    saved, first, resumed_id, history = run(scenario())
    assert len(saved) == 24 and first == [] and resumed_id == saved and history == []


def test_a_functional_or_unknown_agent_gets_an_error_frame_at_once(fast):
    functional = Agent.new(name=unique("functional"), llm_info=LlmInfo(provider="openai", model_id="gpt-4o"))

    async def attempt(owner_id):
        session = Session(owner_type="agent", owner_id=owner_id)
        started = time.monotonic()
        try:
            await session.connect()
        except SessionError as error:
            return str(error), time.monotonic() - started
        finally:
            await zombie_teardown(session)

    error, took = run(attempt(functional.id))
    assert error == (f"Server error while waiting for session_created: agent {functional.id} is functional: "
                     "run it with agent.run(inputs=…) over HTTP, not in a session")
    assert took < 5
    error, _ = run(attempt("a" * 24))
    assert error == f"Server error while waiting for session_created: agent {'a' * 24} not found"


# MARK: Turns


def test_agent_run_returns_the_streamed_answer_and_ends_on_idle(fast, api_key):
    agent = new_agent()
    result = run(agent.run("Tell me about the history of computing.", include_deltas=True))
    assert result.status == "complete" and result.error is None, result
    deltas = [e.delta for e in result.events if e.type == SessionEventType.MESSAGE_DELTA]
    assert len(deltas) > 10 and "".join(deltas) == result.final_message
    assert len(result.final_message.split()) > 50
    complete = [e for e in result.events if e.type == SessionEventType.MESSAGE_COMPLETE]
    assert [e.text for e in complete] == [result.final_message]
    statuses = [e.participant_status for e in result.events if e.type == SessionEventType.PARTICIPANT_STATUS]
    assert statuses == [ParticipantStatus.PROCESSING, ParticipantStatus.IDLE]
    # the hidden session was terminated afterwards (API-CHAT §3.4); its history holds the turn
    history = stored_messages(fast, api_key, result.session_id)
    assert [(m["sender"].get("object_type", "user"), m["content"]["value"], m["content"]["status"]) for m in history] == [
        ("user", "Tell me about the history of computing.", "Complete"), ("agent", result.final_message, "Complete")]


def test_the_answer_depends_on_instructions_text_and_history_only(fast):
    agent = new_agent()
    other = new_agent(instructions="Answer like a pirate.")
    a = run(agent.run("hello")).final_message
    assert run(agent.run("hello")).final_message == a, "same agent, text and (empty) history: same answer"
    assert run(agent.run("hello there")).final_message != a
    assert run(other.run("hello")).final_message != a

    async def two_turns(memory_agent):
        session = await memory_agent.create_session()
        await session.connect()
        try:
            first = await memory_agent.run("hello", session_id=session.session_id)
            second = await memory_agent.run("hello", session_id=session.session_id)
            return first.final_message, second.final_message
        finally:
            await session.terminate()

    first, second = run(two_turns(agent))
    assert first == a and second != a, "the second turn's prompt holds the first turn"
    forgetful = new_agent(memory=False, name=unique("forgetful"))
    f1, f2 = run(two_turns(forgetful))
    assert f1 == f2, "enable_session_memory false: the history is not in the prompt"


def test_a_scripted_answer_for_the_agent_streams_as_deltas(fast, api_key):
    agent = new_agent()
    other = new_agent()
    control(fast, api_key, "POST", "/_mock/llm", json={"agent_id": agent.id, "prompt_pattern": "weather",
                                                       "response": "It is sunny in Lisbon today."})
    control(fast, api_key, "POST", "/_mock/llm", json={"agent_name": other.name, "response": "Other agent speaking."})
    control(fast, api_key, "POST", "/_mock/llm", json={"pipeline_name": "nope", "response": "never for agents"})
    result = run(agent.run("What is the weather?", include_deltas=True))
    assert result.final_message == "It is sunny in Lisbon today."
    deltas = [e.delta for e in result.events if e.type == SessionEventType.MESSAGE_DELTA]
    assert len(deltas) > 1 and "".join(deltas) == "It is sunny in Lisbon today."  # a word a token, some merged
    assert run(agent.run("Something else.")).final_message not in ("It is sunny in Lisbon today.", "never for agents")
    assert run(other.run("What is the weather?")).final_message == "Other agent speaking."


@pytest.mark.parametrize("body, error", [
    ({"tool": "x", "response": "r"}, "tool needs agent_id or agent_name: only conversational agents call tools"),
    ({"agent_id": "a", "pipeline_id": "p", "response": "r"},
     "a scripted answer for an agent (agent_id, agent_name) cannot also name a pipeline or chatbot"),
    ({"agent_id": "a", "tool": ""}, "tool must name a tool of the agent (its name or id)"),
])
def test_bad_agent_fields_of_a_scripted_answer_are_400(sdk, http, body, error):
    r = http("POST", "/_mock/llm", json=body)
    assert r.status_code == 400 and r.json()["error"] == error


def test_a_scripted_answer_naming_a_chatbot_applies_to_that_chatbots_turns_only(sdk, http):
    from vectorshift.chatbot import Chatbot

    from conftest import build_llm_pipeline
    pipeline = build_llm_pipeline(sdk, unique("scripted-bot"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    other = Chatbot.new(name=unique("other-bot"), description="", pipeline_id=pipeline.id)
    assert http("POST", "/_mock/llm", json={"chatbot_id": bot.id, "response": "Scripted for one bot."}).ok
    assert bot.run("hi")["output_message"] == "Scripted for one bot."
    assert other.run("hi")["output_message"] != "Scripted for one bot."
    plain = sdk.fetch(id=pipeline.id).run({"input_0": "hi"})
    assert plain["outputs"]["output_0"] != "Scripted for one bot.", "a plain run of the pipeline is no chatbot turn"


def test_an_llm_fault_on_the_session_turn_fails_the_answer_with_an_error_message(fast, api_key):
    agent = new_agent()
    control(fast, api_key, "POST", "/_mock/faults", json={"path": "/v1/ws/session/turn", "llm_fail_after_tokens": 3,
                                                          "message": "provider overloaded", "times": 1})
    result = run(agent.run("Hello?", include_deltas=True))
    assert result.status == "error" and "provider overloaded" in result.error
    # three tokens went out (a busy machine may merge tokens of one tick into one delta)
    assert len("".join(e.delta for e in result.events if e.type == SessionEventType.MESSAGE_DELTA).split()) == 3
    assert run(agent.run("Hello?")).status == "complete", "the fault applied once"


def test_agent_turns_are_runs_recorded_with_agent_and_session(fast, api_key):
    agent = new_agent()
    result = run(agent.run("Record me."))
    runs = runs_of(fast, api_key)
    assert len(runs) == 1
    assert runs[0]["status"] == "completed" and runs[0]["pipeline_id"] == agent.id
    assert runs[0]["agent_id"] == agent.id and runs[0]["session_id"] == result.session_id
    assert runs[0]["result"]["answer"] == result.final_message


# MARK: Tools and approvals


def test_an_auto_run_tool_mentioned_by_the_user_is_called_before_the_answer(fast, api_key):
    tool = weather_tool("auto_run")
    agent = new_agent(tools=[tool, arxiv_tool("let_agent_decide")])
    result = run(agent.run("Ask the WEATHER_API about Lisbon.", include_deltas=True))
    assert result.status == "complete"
    kinds = [e.type for e in result.events if e.type != SessionEventType.MESSAGE_POSTED]
    assert kinds.index(SessionEventType.TOOL_CALL) < kinds.index(SessionEventType.MESSAGE_DELTA)
    call = next(e for e in result.events if e.type == SessionEventType.TOOL_CALL)
    assert call.data == {"tool_name": "weather_api", "tool_id": tool.id, "status": "Complete"}
    plain = run(new_agent().run("Ask the WEATHER_API about Lisbon."))
    assert plain.final_message != result.final_message, "the answer's prompt says a tool was called"
    history = stored_messages(fast, api_key, result.session_id)
    assert [m["content"]["type"] for m in history] == ["data_type_message", "tool_call", "data_type_message"]
    # let_agent_decide runs without approval too; a scripted answer may name the tool (by name or id)
    control(fast, api_key, "POST", "/_mock/llm", json={"agent_id": agent.id, "prompt_pattern": "papers",
                                                       "tool": "ARXIV_SEARCH", "response": "Found three papers."})
    result = run(agent.run("Any papers on this?"))
    calls = [e.data["tool_name"] for e in result.events if e.type == SessionEventType.TOOL_CALL]
    assert calls == ["arxiv_search"] and result.final_message == "Found three papers."


def test_a_scripted_tool_the_agent_lacks_fails_the_turn_clearly(fast, api_key):
    agent = new_agent(tools=[weather_tool()])
    rule = control(fast, api_key, "POST", "/_mock/llm", json={"agent_id": agent.id, "tool": "calendar"})
    result = run(agent.run("Hi"))
    assert result.status == "error"
    assert result.error == (f"scripted answer {rule['script_id']} names the tool 'calendar', which agent "
                            f"{agent.name} does not have")


def test_agent_run_on_a_tool_needing_approval_raises_and_approve_continues(fast, api_key):
    tool = arxiv_tool()
    agent = new_agent(tools=[tool])

    async def scenario():
        try:
            await agent.run("Search arxiv_search for robots.", keep_alive=True)
        except ConversationalRunActionRequiredError as error:
            action = error
        else:
            raise AssertionError("no approval was asked")
        session = await agent.resume_session(action.session_id)
        await session.connect()
        history = await session.get_messages()
        await session.respond_approval(action.event, approved=True)
        events = []
        async for event in session.listen():
            events.append(event)
            if event.is_turn_end:
                break
        await session.terminate()
        return action, history, events

    action, history, events = run(scenario())
    event = action.event
    assert event.type == SessionEventType.APPROVAL_REQUEST
    assert event.data["tool_name"] == "arxiv_search" and event.data["tool_id"] == tool.id and event.data["tool_call_id"]
    assert [m.content_type for m in history] == ["data_type_message", "tool_call_approval"]
    assert history[1].id == event.message_id
    kinds = [e.type for e in events]
    assert kinds[0] == SessionEventType.MESSAGE_POSTED, "the reply is acked"
    assert [e.participant_status for e in events if e.type == SessionEventType.PARTICIPANT_STATUS] == [
        ParticipantStatus.PROCESSING, ParticipantStatus.IDLE]
    assert kinds.index(SessionEventType.TOOL_CALL) < kinds.index(SessionEventType.MESSAGE_DELTA)
    complete = [e for e in events if e.type == SessionEventType.MESSAGE_COMPLETE]
    deltas = "".join(e.delta for e in events if e.type == SessionEventType.MESSAGE_DELTA)
    assert len(complete) == 1 and complete[0].text == deltas and len(deltas.split()) > 50
    stored = stored_messages(fast, api_key, action.session_id)
    assert [m["content"]["type"] for m in stored] == [
        "data_type_message", "tool_call_approval", "response_message", "tool_call", "data_type_message"]
    assert stored[2]["content"]["parent_message_id"] == event.message_id and stored[2]["content"]["decision"] == "approved"
    assert stored[-1]["content"]["value"] == deltas and stored[-1]["content"]["status"] == "Complete"


def test_deny_ends_the_turn_with_a_short_answer_giving_the_reason(fast, api_key):
    agent = new_agent(tools=[arxiv_tool()])

    async def scenario():
        session = await agent.create_session()
        await session.connect()
        await session.send("Please use arxiv_search.")
        async for event in session.listen():
            if event.type == SessionEventType.APPROVAL_REQUEST:
                request = event
            if event.participant_status == ParticipantStatus.AWAITING_APPROVAL:
                break
        await session.respond_approval(request, approved=False, deny_reason="not today")
        events = []
        async for event in session.listen():
            events.append(event)
            if event.is_turn_end:
                break
        await session.terminate()
        return session.session_id, events

    session_id, events = run(scenario())
    complete = [e.text for e in events if e.type == SessionEventType.MESSAGE_COMPLETE]
    assert complete == ["I did not use the tool arxiv_search: not today"]
    assert SessionEventType.TOOL_CALL not in [e.type for e in events]
    assert runs_of(fast, api_key) == [], "a denied tool call starts no LLM run"
    stored = stored_messages(fast, api_key, session_id)
    assert stored[-1]["content"] == {"type": "data_type_message", "value": "I did not use the tool arxiv_search: not today",
                                     "status": "Complete"}


def awaiting_approval(daemon, api_key):
    """An agent with a tool that needs approval, a raw session of it, and a message that calls the tool: returns
    (agent, socket, session id, frames up to `AwaitingApproval`)."""
    agent = new_agent(tools=[arxiv_tool()])
    ws = raw(daemon, api_key)
    ws.send_json({"type": "create_session", "object_type": "agent", "object_id": agent.id})
    sid = ws.recv_json()["session_id"]
    ws.send_json({"type": "post_message", "session_id": sid, "content": "arxiv_search please"})
    return agent, ws, sid, recv_until(ws, lambda f: status_frame(f, "AwaitingApproval"))


def test_while_awaiting_approval_nothing_runs_and_replies_are_checked(manual, api_key):
    agent, ws, sid, frames = awaiting_approval(manual, api_key)
    assert [f["type"] for f in frames] == ["post_message", "participant_status", "message_notification", "participant_status"]
    approval = frames[2]["message"]
    assert approval["content"]["type"] == "tool_call_approval" and approval["sender"] == {"object_id": agent.id,
                                                                                          "object_type": "agent"}
    stats = control(manual, api_key, "GET", "/_mock/stats")
    assert stats["live_timers"] == 0 and stats["live_runs"] == 0, "the wait runs no timer"
    # another message: refused, the wait goes on
    ws.send_json({"type": "post_message", "session_id": sid, "content": "hello?"})
    assert ws.recv_json() == {"type": "post_message", "session_id": sid, "success": False, "error": "a turn is in progress"}
    # a reply naming no approval of this session
    reply = {"type": "post_message", "session_id": sid, "parent_message_id": "f" * 24,
             "content": {"type_string": "response_message", "value": {"tool_call_approval": {"confirm": {}}}}}
    ws.send_json(reply)
    assert ws.recv_json() == {"type": "error", "session_id": sid, "error": f"session {sid} has no approval request {'f' * 24}",
                              "request_type": "post_message"}
    # get_messages shows the request (and no half answer) while it waits
    ws.send_json({"type": "get_messages", "session_id": sid})
    assert [m["content"]["type"] for m in ws.recv_json()["messages"]] == ["data_type_message", "tool_call_approval"]
    shown = control(manual, api_key, "GET", f"/_mock/sessions/{sid}")["session"]
    assert [t["outcome"] for t in shown["turns"]] == ["awaiting_approval"] and shown["live_turn"]["awaiting_approval"]
    # deny; a duplicate is harmless; the other decision afterwards is an error frame
    reply["parent_message_id"] = approval["id"]
    reply["content"]["value"]["tool_call_approval"] = {"deny": "no"}
    ws.send_json(reply)
    frames = recv_until(ws, is_idle)
    assert frames[0]["type"] == "post_message" and frames[0]["success"] is True
    ws.send_json(reply)
    duplicate = ws.recv_json()
    assert duplicate == {"type": "post_message", "session_id": sid, "success": True,
                         "message_id": frames[0]["message_id"], "duplicate": True}
    reply["content"]["value"]["tool_call_approval"] = {"confirm": {}}
    ws.send_json(reply)
    assert ws.recv_json()["error"] == f"approval {approval['id']} was already denied"
    ws.send_json({"type": "ping_session", "session_id": sid})
    assert ws.recv_json() == {"type": "pong", "session_id": sid}, "nothing else was sent"
    assert ws.close() == 1000


def test_terminate_while_awaiting_approval_stores_the_turn_terminated(manual, api_key):
    agent, ws, sid, frames = awaiting_approval(manual, api_key)
    approval_id = frames[2]["message"]["id"]
    ws.send_json({"type": "terminate_session", "session_id": sid})
    assert ws.recv_json() == {"type": "terminate_session", "session_id": sid, "success": True}
    assert ws.close() == 1000
    stored = stored_messages(manual, api_key, sid)
    assert stored[-1]["content"] == {"type": "data_type_message", "value": "", "status": "Terminated"}
    other = raw(manual, api_key)
    other.send_json({"type": "post_message", "session_id": sid, "parent_message_id": approval_id,
                     "content": {"type_string": "response_message", "value": {"tool_call_approval": {"confirm": {}}}}})
    assert other.recv_json()["error"] == f"session {sid} was terminated"
    assert other.close() == 1000


# MARK: Stopping


def test_the_docs_terminate_example_stops_on_the_first_delta_and_the_resume_fails(sdk, daemon, api_key, monkeypatch):
    """The docs' "Terminating a session" scenario, in our own code: a conversational agent asked for a long essay,
    one message, terminate() on the first delta, then Session(session_id=saved).connect() must fail cleanly."""
    on(daemon, api_key, monkeypatch)
    agent = new_agent(instructions="Write a very long essay about the history of computing.")

    async def scenario():
        session = await agent.create_session()
        await session.connect()
        saved = session.session_id
        await session.send("Go ahead, write the essay.")
        received = []
        async for event in session.listen():  # after terminate(), events already queued still come, then it ends
            if event.delta:
                received.append(event.delta)
                if len(received) == 1:
                    await session.terminate()
        return saved, received, await resume_error(saved)

    saved, received, error = run(scenario())
    assert received
    assert error == f"Server error while waiting for session_connected: session {saved} was terminated"
    # SDK 0.1.15 drops its socket without waiting for the server's Close: the answer may be stored a moment later.
    stored = wait_for(lambda: (m := stored_messages(daemon, api_key, saved)) and m[-1]["content"].get("status") == "Terminated" and m,
                      message="the stopped answer stored")
    # What was sent before the terminate was handled; the SDK stops reading at once, so it may not see all of it
    # (the raw test below checks equality).
    assert stored[-1]["content"]["value"].startswith("".join(received))
    wait_for(lambda: runs_of(daemon, api_key)[0]["status"] == "terminated", message="the answer's run terminated")


def test_after_terminate_no_frame_comes_and_the_stored_answer_is_what_was_sent(sdk, daemon, api_key):
    agent = Agent.new(name=unique("raw-agent"), llm_info=LlmInfo(provider="openai", model_id="gpt-4o"),
                      agent_type=AgentType.CONVERSATIONAL, instructions="Write a long essay.")
    ws = raw(daemon, api_key)
    ws.send_json({"type": "create_session", "object_type": "agent", "object_id": agent.id})
    sid = ws.recv_json()["session_id"]
    ws.send_json({"type": "post_message", "session_id": sid, "content": "Go."})
    frames = recv_until(ws, lambda f: f["type"] == "message_delta" and f["index"] == 2)
    ws.send_json({"type": "terminate_session", "session_id": sid})
    rest = recv_until(ws, lambda f: f["type"] == "terminate_session")
    deltas = [f for f in frames + rest if f["type"] == "message_delta"]
    assert [f["index"] for f in deltas] == list(range(len(deltas)))
    assert all(f["type"] == "message_delta" for f in rest[:-1]), rest
    assert rest[-1] == {"type": "terminate_session", "session_id": sid, "success": True}
    ws.sock.settimeout(1.5)
    with pytest.raises(OSError):  # a socket timeout: nothing more comes (the SDK would close here)
        ws.recv_frame()
    ws.sock.settimeout(30)
    assert ws.close() == 1000
    stored = stored_messages(daemon, api_key, sid)
    assert stored[-1]["content"]["status"] == "Terminated"
    assert stored[-1]["content"]["value"] == "".join(f["value"] for f in deltas)
    run_record = runs_of(daemon, api_key)[0]
    assert run_record["status"] == "terminated" and run_record["session_id"] == sid


def test_with_the_manual_clock_exactly_n_deltas_come_before_the_terminate(manual, api_key):
    agent = new_agent()
    ws = raw(manual, api_key)
    ws.send_json({"type": "create_session", "object_type": "agent", "object_id": agent.id})
    sid = ws.recv_json()["session_id"]
    ws.send_json({"type": "post_message", "session_id": sid, "content": "Go."})
    recv_until(ws, lambda f: status_frame(f, "Processing"))
    advance(manual, api_key, 650)  # TTFT 400 ms, then 40 tokens/s: 10 tokens (SPEC §6)
    deltas = [ws.recv_json() for _ in range(10)]
    assert [f["type"] for f in deltas] == ["message_delta"] * 10
    ws.send_json({"type": "terminate_session", "session_id": sid})
    assert ws.recv_json() == {"type": "terminate_session", "session_id": sid, "success": True}
    advance(manual, api_key, 60_000)
    assert ws.close() == 1000, "no frame came between the ack and the close"
    stored = stored_messages(manual, api_key, sid)
    assert stored[-1]["content"]["value"] == "".join(f["value"] for f in deltas)
    assert stored[-1]["content"]["status"] == "Terminated"


def test_cancelling_the_task_awaiting_agent_arun_terminates_the_session(manual, api_key):
    agent = new_agent()

    async def scenario():
        task = asyncio.ensure_future(agent.arun("Write a long story."))
        loop = asyncio.get_running_loop()
        runs = await loop.run_in_executor(None, lambda: wait_for(lambda: runs_of(manual, api_key), message="the run"))
        await loop.run_in_executor(None, advance, manual, api_key, 650)  # ten tokens generated, then the clock stands
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return runs[0]["session_id"]

    sid = run(scenario())
    wait_for(lambda: runs_of(manual, api_key)[0]["status"] == "terminated", message="the run terminated by the cancel")
    stored = stored_messages(manual, api_key, sid)
    assert stored[-1]["content"]["status"] == "Terminated"
    generated = stored[-1]["content"]["value"]
    assert len(generated.split()) == 10
    advance(manual, api_key, 60_000)
    assert stored_messages(manual, api_key, sid)[-1]["content"]["value"] == generated, "nothing generated afterwards"
    ws = raw(manual, api_key)
    ws.send_json({"type": "connect_session", "session_id": sid})
    assert ws.recv_json()["error"] == f"session {sid} was terminated"
    assert ws.close() == 1000


# MARK: Restart


def test_a_restart_during_an_agent_turn_or_an_approval_wait_stores_it_failed_interrupted(new_daemon, api_key, monkeypatch, tmp_path):
    db = tmp_path / "agent-restart.sqlite3"
    first = new_daemon("--clock", "manual", db=db)
    on(first, api_key, monkeypatch)
    agent = new_agent(tools=[arxiv_tool()])
    ws = raw(first, api_key)
    sessions = []
    for text in ["Go.", "arxiv_search please"]:
        ws.send_json({"type": "create_session", "object_type": "agent", "object_id": agent.id})
        sessions.append(ws.recv_json()["session_id"])
        ws.send_json({"type": "post_message", "session_id": sessions[-1], "content": text})
        recv_until(ws, lambda f: status_frame(f, "Processing"))
    recv_until(ws, lambda f: status_frame(f, "AwaitingApproval"))
    first.stop(signal.SIGKILL)  # a crash: nothing is stored on the way out
    second = new_daemon(db=db)
    for sid in sessions:
        last = stored_messages(second, api_key, sid)[-1]
        assert last["content"] == {"type": "error_message", "error": "interrupted", "value": "", "status": "Failed"}
        assert last["sender"] == {"object_id": agent.id, "object_type": "agent"}
    failed = runs_of(second, api_key)
    assert [r["status"] for r in failed] == ["failed"] and failed[0]["agent_id"] == agent.id


def test_files_sent_with_a_message_reach_the_agents_prompt_and_its_history(fast, api_key):
    agent = new_agent()

    async def send(files):
        async with await agent.create_session() as session:
            await session.send("Summarise this.", files=files)
            async for event in session.listen():
                if event.is_complete:
                    return session.session_id, event.text

    plain_sid, plain = run(send(None))
    sid, with_file = run(send([b"robots were first built in factories"]))
    assert with_file != plain, "the file is part of the prompt"
    history = stored_messages(fast, api_key, sid)
    assert [m["content"]["type"] for m in history] == ["data_type_message", "file", "data_type_message"]
    assert history[1]["content"]["value"]["size"] == 36
