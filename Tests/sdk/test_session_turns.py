"""Chatbot session turns over WebSocket (SPEC §10, API-CHAT §2, issue 13 items 2, 4, 6, 7): a message posted in a
chatbot's session runs the chatbot's pipeline and streams Processing → deltas → Complete → Idle; terminate_session
stops it at once; resumes, vanished clients, faults, restarts. Driven by the real SDK and, for the protocol, by a
second independent client (the `websockets` library), so the server is not only tested by the SDK it serves."""
import asyncio
import json
import time

import pytest
import requests
from vectorshift.chatbot import Chatbot
from vectorshift.events import SessionEventType
from vectorshift.session import Session, SessionError
from websockets.sync.client import connect as ws_connect

from conftest import build_llm_pipeline, point_sdk, stats, unique, wait_for
from test_chatbots import chat_pipeline, conversation, memory_of
from test_sessions import bot  # noqa: F401  (the fixture: a chatbot of this test's key, the SDK pointed at it)
from wsclient import RawWebSocket

ESSAY = "Write a 500 word essay about robots."


def run(coroutine, timeout=60):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def mock(daemon, key, method, path, **kw):
    r = requests.request(method, daemon.root + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw)
    assert r.status_code == 200, r.text
    return r.json()


class Client:
    """The `websockets` library's synchronous client speaking the session protocol: JSON frames in and out."""

    def __init__(self, daemon, key):
        url = daemon.url.replace("http://", "ws://") + "/ws/session"
        self.ws = ws_connect(url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=8 << 20)

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def recv(self, timeout=30):
        return json.loads(self.ws.recv(timeout=timeout))

    def until(self, predicate, timeout=30):
        """Frames up to and including the first one `predicate` accepts."""
        frames, deadline = [], time.monotonic() + timeout
        while True:
            try:
                frame = self.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError(f"no wanted frame within {timeout} s; got {[f['type'] for f in frames]}") from None
            frames.append(frame)
            if predicate(frame):
                return frames

    def create(self, bot_id):
        self.send({"type": "create_session", "object_type": "chatbot", "object_id": bot_id})
        created = self.recv()
        assert created["type"] == "session_created", created
        return created["session_id"]

    def quiet_for(self, seconds):
        """True when no frame arrives for `seconds`."""
        try:
            frame = self.ws.recv(timeout=seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame: {frame[:300]}")

    def close(self):
        self.ws.close()


def session_on(new_daemon, api_key, *args, db=None):
    """A daemon started with `args`, a chatbot on it (input → llm → output), and a session of it opened by a
    `Client`: (daemon, bot, client, session_id)."""
    daemon = new_daemon(*args, db=db)
    Pipeline = point_sdk(daemon, api_key)
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=build_llm_pipeline(Pipeline, unique("p")).id)
    client = Client(daemon, api_key)
    return daemon, bot, client, client.create(bot.id)


def is_idle(frame):
    return frame["type"] == "participant_status" and frame["message"]["status"] == "Idle"


def deltas_of(frames):
    return [f for f in frames if f["type"] == "message_delta"]


def role(message):
    return "user" if message.is_user else "agent"


def advance(daemon, key, ms):
    mock(daemon, key, "POST", "/_mock/clock/advance", json={"ms": ms})


# MARK: Through the SDK


def test_a_turn_streams_processing_then_deltas_then_complete_then_idle(bot):
    async def scenario():
        async with await bot.create_session() as session:
            await session.send(ESSAY)
            events = []
            async for event in session.listen():
                if event.type != SessionEventType.SESSION_CONNECTED:  # the connect ack, queued before the turn
                    events.append(event)
                if event.is_turn_end:
                    break
            return events, await session.get_messages()

    events, history = run(scenario())
    kinds = [e.type for e in events]
    assert kinds[0] == SessionEventType.MESSAGE_POSTED
    assert events[1].type == SessionEventType.PARTICIPANT_STATUS and events[1].data["status"] == "Processing"
    deltas = [e for e in events if e.type == SessionEventType.MESSAGE_DELTA]
    assert len(deltas) > 3, "the answer streams token by token on the simulation clock"
    assert [e.data["index"] for e in deltas] == list(range(len(deltas)))
    assert len({e.message_id for e in deltas}) == 1
    complete = [e for e in events if e.is_complete]
    assert len(complete) == 1, "one Complete: the user's message is never echoed"
    assert complete[0].text == "".join(e.delta for e in deltas)
    assert kinds.index(SessionEventType.MESSAGE_COMPLETE) == len(kinds) - 2 and events[-1].is_turn_end
    assert [(role(m), m.text, m.status and m.status.value) for m in history] == [("user", ESSAY, "complete"),
                                                             ("agent", complete[0].text, "complete")]


def test_terminate_on_the_first_delta_stores_that_delta_and_a_resume_then_fails(sdk, bot, daemon, api_key):
    """The docs' "Terminating a session" scenario for a chatbot session: stop on the first delta, then resume."""
    async def scenario():
        session = await bot.create_session()
        await session.connect()
        await session.send(ESSAY)
        first = None
        async for event in session.listen():
            if event.type == SessionEventType.MESSAGE_DELTA:
                first = event.delta
                await session.terminate()
                break
        saved = session.session_id
        try:
            await Session(session_id=saved).connect()
        except SessionError as error:
            return saved, first, str(error)
        return saved, first, None

    saved, first, error = run(scenario())
    assert error == f"Server error while waiting for session_connected: session {saved} was terminated"
    # SDK 0.1.15 drops its socket without waiting for the server's Close: the turn may be stored a moment later.
    turns = wait_for(lambda: conversation(daemon, api_key, saved)["turns"] or None, message="the stopped turn stored")
    assert [(t["outcome"], t["answer"]) for t in turns] == [("stopped", first)]
    assert sdk.fetch(id=bot.pipeline_id).run_status(turns[0]["run_id"])["status"] == "terminated"


def test_get_messages_lists_the_turns_and_a_second_turn_remembers_the_first(sdk, daemon, api_key, http, monkeypatch):
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", daemon.url)
    pipeline_id = chat_pipeline(http, unique("turn-memory"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline_id, output_node_name="output_0")

    async def turn(session, text):
        await session.send(text)
        async for event in session.listen():
            if event.is_complete:
                answer = event.text
            if event.is_turn_end:
                return answer

    async def scenario():
        async with await bot.create_session() as session:
            a = await turn(session, "My name is Ada.")
            b = await turn(session, "What is my name?")
            return session.session_id, a, b, await session.get_messages()

    session_id, a, b, history = run(scenario())
    assert [(role(m), m.text) for m in history] == [("user", "My name is Ada."), ("agent", a),
                                                   ("user", "What is my name?"), ("agent", b)]
    turns = conversation(daemon, api_key, session_id)["turns"]
    assert [t["user_text"] for t in turns] == ["My name is Ada.", "What is my name?"]
    memory = memory_of(sdk, pipeline_id, turns[1]["run_id"])
    assert "My name is Ada." in json.dumps(memory) and a[:40] in json.dumps(memory)


def test_a_file_sent_with_a_message_reaches_the_conversation_and_the_history(bot, daemon, api_key, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("The launch code is 1234.")

    async def scenario():
        async with await bot.create_session() as session:
            await session.send("Summarize the file", files=[note])  # post_messages
            async for event in session.listen():
                if event.type == SessionEventType.MESSAGES_POSTED:
                    posted = event.data
                if event.is_turn_end:
                    break
            return session.session_id, posted, await session.get_messages()

    session_id, posted, history = run(scenario())
    assert posted["success"] is True and posted["message_id"] == history[1].id
    assert [m.raw["content"]["type"] for m in history] == ["data_type_message", "file", "data_type_message"]
    assert history[1].raw["content"]["value"] == {"name": "note.txt", "mime_type": "text/plain", "size": 24}
    files = conversation(daemon, api_key, session_id)["files"]
    assert [(f["name"], f["size"]) for f in files] == [("note.txt", 24)]


def test_a_scripted_answer_applies_to_a_session_turn(bot, daemon, api_key):
    mock(daemon, api_key, "POST", "/_mock/llm", json={"pipeline_id": bot.pipeline_id, "response": "Scripted hello, world."})

    async def scenario():
        async with await bot.create_session() as session:
            await session.send("hi")
            async for event in session.listen():
                if event.is_complete:
                    return event.text

    assert run(scenario()) == "Scripted hello, world."


def test_a_chatbot_terminate_over_http_stops_the_turn_and_the_session_goes_on(bot, daemon, api_key):
    from vectorshift.request import request_client

    async def scenario():
        async with await bot.create_session() as session:
            await session.send(ESSAY)
            seen = []
            # One listen() loop: events that come while no loop is listening are not queued for a later one.
            async for event in session.listen():
                seen.append(event)
                if event.type == SessionEventType.MESSAGE_DELTA and "stopped" not in seen:
                    live = conversation(daemon, api_key, session.session_id)["turn_in_progress"]
                    if live:
                        await asyncio.to_thread(request_client.request, "POST", f"/chatbot/{bot.id}/terminate",
                                                json={"pipeline_run_id": live})
                        seen.append("stopped")
                if event.is_turn_end:
                    break
            await session.send("And now?")
            async for event in session.listen():
                if event.is_complete:
                    return seen, event.text

    seen, next_answer = run(scenario())
    after = seen[seen.index("stopped") + 1:]
    streaming = [e for e in after if e.type == SessionEventType.MESSAGE_STREAMING]
    assert streaming and streaming[-1].data["status"] == "streaming", "a stopped answer is not Complete"
    assert after[-1].is_turn_end and next_answer


# MARK: Through a second client (`websockets`)


def test_frames_of_a_turn_in_order_with_type_and_session_id_first(bot, daemon, api_key):
    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": "Hello"})
    frames = client.until(is_idle)
    for frame in frames:
        assert list(frame)[:2] == ["type", "session_id"] and frame["session_id"] == session_id, frame
    ack, processing = frames[0], frames[1]
    assert ack["type"] == "post_message" and ack["success"] is True and len(ack["message_id"]) == 24
    assert processing == {"type": "participant_status", "session_id": session_id,
                          "message": {"status": "Processing", "object_id": bot.id, "object_type": "chatbot"}}
    notification = frames[-2]
    assert notification["type"] == "message_notification"
    message = notification["message"]
    assert message["sender"] == {"object_id": bot.id, "object_type": "chatbot"}
    assert message["content"]["type"] == "data_type_message" and message["content"]["status"] == "Complete"
    deltas = deltas_of(frames)
    assert all(d["message_id"] == message["id"] for d in deltas)
    assert message["content"]["value"] == "".join(d["value"] for d in deltas)
    assert [f["type"] for f in frames[2:-2]] == ["message_delta"] * len(deltas)
    client.close()


def test_a_second_message_while_a_turn_is_live_gets_a_failed_ack_and_the_turn_goes_on(bot, daemon, api_key):
    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": ESSAY})
    client.until(lambda f: f["type"] == "message_delta")
    client.send({"type": "post_message", "session_id": session_id, "content": "Are you there?"})
    frames = client.until(is_idle)
    refused = [f for f in frames if f["type"] == "post_message"]
    assert refused == [{"type": "post_message", "session_id": session_id, "success": False, "error": "a turn is in progress"}]
    indexes = [d["index"] for d in deltas_of(frames)]
    assert indexes == list(range(1, len(indexes) + 1)), "the live turn went on unchanged"
    client.send({"type": "get_messages", "session_id": session_id})
    history = client.recv()["messages"]
    assert [m["content"].get("value") for m in history][:1] == [ESSAY] and len(history) == 2
    client.close()


def test_manual_clock_exactly_n_deltas_came_before_the_terminate(new_daemon, api_key):
    daemon, bot, client, session_id = session_on(new_daemon, api_key, "--clock", "manual")
    client.send({"type": "post_message", "session_id": session_id, "content": ESSAY})
    client.until(lambda f: f["type"] == "participant_status")
    received = []
    for step in [425, 25, 25, 25, 25]:
        advance(daemon, api_key, step)
        received += deltas_of(client.until(lambda f: f["type"] == "message_delta"))
    assert [d["index"] for d in received] == [0, 1, 2, 3, 4]
    client.send({"type": "terminate_session", "session_id": session_id})
    assert client.recv() == {"type": "terminate_session", "session_id": session_id, "success": True}
    advance(daemon, api_key, 60_000)
    assert client.quiet_for(1.0), "no frame after the terminate"
    turns = conversation(daemon, api_key, session_id)["turns"]
    assert [(t["outcome"], t["answer"]) for t in turns] == [("stopped", "".join(d["value"] for d in received))]
    other = Client(daemon, api_key)
    other.send({"type": "connect_session", "session_id": session_id})
    assert other.recv()["success"] is False
    client.close()
    other.close()


def test_a_resumed_session_shows_the_live_turn_streaming_and_gets_the_rest_of_its_deltas(new_daemon, api_key):
    daemon, bot, first, session_id = session_on(new_daemon, api_key, "--clock", "manual")
    first.send({"type": "post_message", "session_id": session_id, "content": ESSAY})
    first.until(lambda f: f["type"] == "participant_status")
    advance(daemon, api_key, 400 + 3 * 25)  # three tokens
    early = deltas_of(first.until(lambda f: f["type"] == "message_delta"))
    first.send({"type": "disconnect_session", "session_id": session_id})
    early += deltas_of(frames := first.until(lambda f: f["type"] == "disconnect_session"))
    assert frames[-1]["success"] is True
    assert len("".join(d["value"] for d in early).split()) == 3
    first.close()

    second = Client(daemon, api_key)
    second.send({"type": "connect_session", "session_id": session_id})
    assert second.recv() == {"type": "connect_session", "session_id": session_id, "success": True}
    second.send({"type": "get_messages", "session_id": session_id})
    history = second.recv()["messages"]
    live = history[-1]
    assert live["content"] == {"type": "data_type_message", "value": "".join(d["value"] for d in early), "status": "Streaming"}
    advance(daemon, api_key, 600_000)
    frames = second.until(is_idle)
    later = deltas_of(frames)
    assert later and later[0]["index"] == len(early) and all(d["message_id"] == live["id"] for d in later)
    complete = frames[-2]["message"]
    assert complete["id"] == live["id"]
    assert complete["content"]["value"] == live["content"]["value"] + "".join(d["value"] for d in later)
    second.close()


def test_a_client_that_vanishes_mid_turn_leaves_the_turn_to_finish_and_be_stored(bot, daemon, api_key):
    ws = RawWebSocket(daemon.root, key=api_key)
    assert ws.connect().status == 101
    ws.send_json({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})
    session_id = ws.recv_json()["session_id"]
    ws.send_json({"type": "post_message", "session_id": session_id, "content": "Hello"})
    while ws.recv_json()["type"] != "message_delta":
        pass
    ws.drop()  # no Close frame: the TCP connection just goes
    turns = wait_for(lambda: conversation(daemon, api_key, session_id)["turns"] or None, timeout=30)
    assert turns[0]["outcome"] == "completed"
    wait_for(lambda: stats(daemon, api_key)["session_sockets"] == 0, message="the socket is gone")
    client = Client(daemon, api_key)
    client.send({"type": "connect_session", "session_id": session_id})
    assert client.recv()["success"] is True
    client.send({"type": "get_messages", "session_id": session_id})
    answer = client.recv()["messages"][-1]
    assert answer["content"]["status"] == "Complete" and answer["content"]["value"] == turns[0]["answer"]
    client.close()


def test_an_llm_fault_fails_the_turn_after_n_tokens_with_an_error_message(bot, daemon, api_key):
    mock(daemon, api_key, "POST", "/_mock/faults",
         json={"path": "/v1/ws/session/turn", "llm_fail_after_tokens": 3, "message": "model overloaded", "times": 1})
    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": ESSAY})
    frames = client.until(is_idle)
    text = "".join(d["value"] for d in deltas_of(frames))
    assert len(text.split()) == 3
    error = frames[-2]
    assert error["type"] == "message_notification"
    assert error["message"]["content"]["type"] == "error_message" and "model overloaded" in error["message"]["content"]["error"]
    client.send({"type": "post_message", "session_id": session_id, "content": "again"})
    again = client.until(is_idle)
    assert again[-2]["message"]["content"]["status"] == "Complete", "the fault was used up"
    client.close()


def test_a_drop_fault_closes_the_socket_and_the_turn_still_ends_stored(bot, daemon, api_key):
    mock(daemon, api_key, "POST", "/_mock/faults", json={"path": "/v1/ws/session/turn", "drop": True, "times": 1})
    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": "Hello"})
    with pytest.raises(Exception) as closed:
        client.until(lambda f: False, timeout=10)
    assert "1011" in str(closed.value)
    turns = wait_for(lambda: conversation(daemon, api_key, session_id)["turns"] or None, timeout=30)
    assert turns[0]["outcome"] == "completed"


def test_a_status_fault_refuses_the_turn_and_stores_nothing(bot, daemon, api_key):
    mock(daemon, api_key, "POST", "/_mock/faults",
         json={"path": "/v1/ws/session/turn", "status": 503, "body": {"error": "busy, try later"}, "times": 1})
    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": "Hello"})
    assert client.recv() == {"type": "post_message", "session_id": session_id, "success": False, "error": "busy, try later"}
    client.send({"type": "get_messages", "session_id": session_id})
    assert client.recv()["messages"] == []
    client.close()


@pytest.mark.parametrize("content, error", [
    ("", "post_message has no text and no file: nothing to answer"),
    (7, "content must be a string or an object with type_string and value"),
    ({"type_string": "file", "value": {"raw_bytes": "not base64!"}}, "content.value.raw_bytes is not valid base64"),
])
def test_bad_content_gets_an_error_frame_and_starts_no_turn(bot, daemon, api_key, content, error):
    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": content})
    assert client.recv() == {"type": "error", "session_id": session_id, "error": error, "request_type": "post_message"}
    assert stats(daemon, api_key)["live_session_turns"] == 0
    client.close()


def test_stats_and_mock_sessions_show_sockets_and_the_live_turn(bot, daemon, api_key):
    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": ESSAY})
    client.until(lambda f: f["type"] == "message_delta")
    now = stats(daemon, api_key)
    assert (now["session_sockets"], now["live_session_turns"]) == (1, 1)
    shown = mock(daemon, api_key, "GET", f"/_mock/sessions/{session_id}")["session"]
    assert shown["sockets"] == 1 and shown["live_turn"]["user_text"] == ESSAY and shown["live_turn"]["text"]
    assert shown["turns"][0]["outcome"] == "in_progress"
    client.until(is_idle)
    client.close()
    wait_for(lambda: stats(daemon, api_key)["session_sockets"] == 0, message="the socket is no longer counted")
    assert stats(daemon, api_key)["live_session_turns"] == 0


def test_a_turn_cut_by_a_restart_is_stored_as_failed_interrupted(sdk, new_daemon, api_key, tmp_path):
    db = tmp_path / "turns.sqlite3"
    daemon, bot, client, session_id = session_on(new_daemon, api_key, "--clock", "manual", db=db)
    client.send({"type": "post_message", "session_id": session_id, "content": ESSAY})
    client.until(lambda f: f["type"] == "participant_status")
    daemon.proc.kill()
    daemon.proc.wait()
    again = new_daemon(db=db)
    client = Client(again, api_key)
    client.send({"type": "connect_session", "session_id": session_id})
    assert client.recv()["success"] is True
    client.send({"type": "get_messages", "session_id": session_id})
    history = client.recv()["messages"]
    assert [m["content"]["type"] for m in history] == ["data_type_message", "error_message"]
    assert history[1]["content"]["error"] == "interrupted" and history[1]["content"]["status"] == "Failed"
    assert history[1]["sender"] == {"object_id": bot.id, "object_type": "chatbot"}
    assert conversation(again, api_key, session_id)["turns"][0]["outcome"] == "failed"
    client.close()


def test_at_time_scale_zero_a_turn_sends_its_answer_as_one_delta(new_daemon, api_key):
    daemon, bot, client, session_id = session_on(new_daemon, api_key, "--time-scale", "0")
    client.send({"type": "post_message", "session_id": session_id, "content": ESSAY})
    frames = client.until(is_idle)
    assert [f["type"] for f in frames] == ["post_message", "participant_status", "message_delta",
                                          "message_notification", "participant_status"]
    assert frames[2]["value"] == frames[3]["message"]["content"]["value"] and len(frames[2]["value"].split()) > 400
    client.close()


def test_a_terminate_from_one_client_closes_the_other_clients_of_the_session(bot, daemon, api_key):
    first = Client(daemon, api_key)
    session_id = first.create(bot.id)
    second = Client(daemon, api_key)
    second.send({"type": "connect_session", "session_id": session_id})
    assert second.recv()["success"] is True
    first.send({"type": "post_message", "session_id": session_id, "content": ESSAY})
    second.until(lambda f: f["type"] == "message_delta")
    first.send({"type": "terminate_session", "session_id": session_id})
    assert first.until(lambda f: f["type"] == "terminate_session")[-1]["success"] is True
    with pytest.raises(Exception) as closed:
        second.until(lambda f: False, timeout=10)
    assert "1000" in str(closed.value) and "session terminated" in str(closed.value)
    first.close()


def test_an_http_turn_on_a_sessions_conversation_is_refused(sdk, bot, daemon, api_key):
    from vectorshift.request import VectorshiftApiError

    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": "Hello"})
    client.until(is_idle)
    with pytest.raises(VectorshiftApiError) as refused:
        bot.run("An HTTP turn", conversation_id=session_id)
    assert refused.value.status_code == 409 and "WebSocket session" in refused.value.error_message
    assert len(conversation(daemon, api_key, session_id)["turns"]) == 1
    client.close()
