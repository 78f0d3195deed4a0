"""Sessions over WebSocket without turns (SPEC §10, API-CHAT §2, issue 13): the real SDK's `Session` (create,
connect, get_messages, ping, disconnect and resume, terminate and the resume that then fails), and the protocol
through a raw client of our own (`wsclient.py`): key order, errors, ordering of terminate and Close, restart."""
import asyncio
import json
import re
import time

import pytest
import requests
import vectorshift
from vectorshift.chatbot import Chatbot
from vectorshift.events import SessionEventType
from vectorshift.session import Session, SessionError

from conftest import build_llm_pipeline, point_sdk, unique
from wsclient import CLOSE, RawWebSocket, close_payload, frame


@pytest.fixture
def bot(sdk, daemon, monkeypatch):
    """A chatbot of this test's key; the SDK's WebSocket URL is derived from VECTORSHIFT_BASE_URL (…/v1/ws/session)."""
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", daemon.url)
    monkeypatch.delenv("VECTORSHIFT_WS_URL", raising=False)
    pipeline = build_llm_pipeline(sdk, unique("session-chat"))
    return Chatbot.new(name=unique("session-bot"), description="", pipeline_id=pipeline.id)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def zombie_teardown(session):
    """SDK 0.1.15 leaves a session whose connect() failed with its socket, listener and pings alive (API-CHAT
    §2.7, "Leak in connect()"); a test cleans up after it."""
    await session._teardown()


async def resume_error(session_id):
    """`Session(session_id=…).connect()` as an app resumes a saved session: the `SessionError` text it raised, or
    None when the resume worked (the half-open session is cleaned up either way)."""
    resumed = Session(session_id=session_id)
    try:
        await resumed.connect()
    except SessionError as error:
        return str(error)
    finally:
        await zombie_teardown(resumed)
    return None


def raw(daemon, api_key):
    ws = RawWebSocket(daemon.root, key=api_key)
    assert ws.connect().status == 101
    return ws


# MARK: Through the SDK


def test_a_chatbot_session_is_created_connected_and_has_no_messages_yet(bot):
    async def scenario():
        session = await bot.create_session()
        await session.connect()
        try:
            assert session.is_connected
            assert re.fullmatch(r"[0-9a-f]{24}", session.session_id)
            return await session.get_messages()
        finally:
            await session.disconnect()

    assert run(scenario()) == []


def test_the_sdk_reaches_sessions_through_vectorshift_ws_url_without_v1(bot, daemon, monkeypatch):
    monkeypatch.setenv("VECTORSHIFT_WS_URL", "ws://" + daemon.root.split("//", 1)[1])  # …/ws/session, no /v1

    async def scenario():
        async with await bot.create_session() as session:
            return session.session_id, await session.get_messages()

    session_id, messages = run(scenario())
    assert session_id and messages == []


def test_the_sdks_ping_loop_is_answered_with_pong(bot):
    async def scenario():
        async with await bot.create_session() as session:
            started = time.monotonic()
            async for event in session.listen(event_types=[SessionEventType.PONG]):
                return event.session_id == session.session_id, time.monotonic() - started

    same_session, waited = run(scenario())
    assert same_session
    assert waited < 8  # the SDK pings every 5 s


def test_a_terminated_session_cannot_be_resumed_and_the_error_names_the_termination(bot):
    async def scenario():
        session = await bot.create_session()
        await session.connect()
        saved = session.session_id
        started = time.monotonic()
        await session.terminate()  # waits up to 10 s for the server's Close (API-CHAT §2.7)
        took = time.monotonic() - started
        return saved, took, await resume_error(saved)

    saved, took, error = run(scenario())
    assert took < 1.0, f"terminate() took {took:.2f} s: the server must answer the Close at once"
    assert error == f"Server error while waiting for session_connected: session {saved} was terminated"


def test_disconnect_then_resume_by_id_works_and_reads_the_history(bot):
    async def scenario():
        session = await bot.create_session()
        await session.connect()
        saved = session.session_id
        await session.disconnect()
        resumed = await bot.resume_session(saved)
        await resumed.connect()  # waits for the connect_session ack
        try:
            return resumed.session_id == saved, resumed.is_connected, await resumed.get_messages()
        finally:
            await resumed.disconnect()

    assert run(scenario()) == (True, True, [])


def test_resuming_an_unknown_or_another_keys_session_fails_cleanly(bot, daemon):
    async def resume(session_id, api_key=None):
        session = Session(session_id=session_id, api_key=api_key)
        try:
            await session.connect()
        except SessionError as error:
            return str(error)
        finally:
            await zombie_teardown(session)

    async def scenario():
        async with await bot.create_session() as mine:
            mine_id = mine.session_id
        return (mine_id, await resume("0" * 24), await resume(mine_id, api_key=unique("another-key")),
                await resume(mine_id))

    mine_id, unknown, foreign, own = run(scenario())
    assert unknown == f"Server error while waiting for session_connected: session {'0' * 24} not found"
    assert foreign == f"Server error while waiting for session_connected: session {mine_id} not found"
    assert own is None  # the owner's key resumes it


def test_a_session_for_an_unknown_chatbot_fails_fast_with_session_error(bot):
    async def scenario():
        session = Session(owner_type="chatbot", owner_id="f" * 24)
        started = time.monotonic()
        try:
            await session.connect()
        except SessionError as error:
            return str(error), time.monotonic() - started
        finally:
            await zombie_teardown(session)

    error, took = run(scenario())
    assert error == f"Server error while waiting for session_created: chatbot {'f' * 24} not found"
    assert took < 5  # an error frame, not the 30 s wait a failed create ack would cause


def test_with_api_keys_a_bad_key_fails_connect_with_session_error(sdk, new_daemon, monkeypatch):
    d = new_daemon("--api-key", "good-key")
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", d.url)
    point_sdk(d, "good-key")
    pipeline = build_llm_pipeline(sdk, unique("keyed"))
    good = Chatbot.new(name=unique("keyed-bot"), description="", pipeline_id=pipeline.id)

    async def scenario():
        bad = Session(owner_type="chatbot", owner_id=good.id, api_key="bad-key")
        try:
            await bad.connect()
        except SessionError as error:
            message = str(error)
        async with await good.create_session() as session:
            return message, session.session_id

    message, session_id = run(scenario())
    assert message.startswith("Failed to connect to session WebSocket: 401")
    assert session_id


def test_sessions_survive_a_restart_and_a_terminated_one_stays_terminated(sdk, new_daemon, monkeypatch, tmp_path, api_key):
    db = tmp_path / "sessions.sqlite3"
    first = new_daemon(db=db)
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", first.url)
    point_sdk(first, api_key)
    pipeline = build_llm_pipeline(sdk, unique("restart"))
    chatbot = Chatbot.new(name=unique("restart-bot"), description="", pipeline_id=pipeline.id)

    async def make_two():
        async with await chatbot.create_session() as kept:
            pass
        ended = await chatbot.create_session()
        await ended.connect()
        await ended.terminate()
        return kept.session_id, ended.session_id

    kept, ended = run(make_two())
    assert first.stop() == 0
    second = new_daemon(db=db)
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", second.url)
    point_sdk(second, api_key)

    async def resume_both():
        resumed = Session(session_id=kept)
        await resumed.connect()
        history = await resumed.get_messages()
        await resumed.disconnect()
        refused = Session(session_id=ended)
        try:
            await refused.connect()
        except SessionError as error:
            return history, str(error)
        finally:
            await zombie_teardown(refused)

    history, error = run(resume_both())
    assert history == []
    assert error.endswith(f"session {ended} was terminated")


def test_reset_forgets_the_keys_sessions(bot, daemon, api_key):
    async def make():
        async with await bot.create_session() as session:
            return session.session_id

    session_id = run(make())
    assert requests.post(f"{daemon.root}/_mock/reset", headers={"Authorization": f"Bearer {api_key}"}, timeout=10).ok
    ws = raw(daemon, api_key)
    ws.send_json({"type": "connect_session", "session_id": session_id})
    assert ws.recv_json() == {"type": "connect_session", "session_id": session_id, "success": False,
                              "error": f"session {session_id} not found"}
    assert ws.close() == 1000


# MARK: The protocol, raw


def test_every_answer_puts_type_first_and_session_id_second(bot, daemon, api_key):
    ws = raw(daemon, api_key)
    ws.send_json({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})
    created = ws.recv_json()
    session_id = created["session_id"]
    assert created == {"type": "session_created", "session_id": session_id, "object_type": "chatbot",
                       "object_id": bot.id}
    answers = [created]
    for request in ["connect_session", "get_messages", "ping_session", "post_message", "post_messages",
                    "disconnect_session", "terminate_session", "connect_session"]:
        ws.send_json({"type": request, "session_id": session_id})
        answers.append(ws.recv_json())
    ws.send_json({"type": "no_such_frame", "session_id": session_id})
    answers.append(ws.recv_json())
    for answer in answers:
        assert list(answer)[:2] == ["type", "session_id"], answer
        assert answer["session_id"] == session_id
    assert answers[1:] == [
        {"type": "connect_session", "session_id": session_id, "success": True},
        {"type": "get_messages", "session_id": session_id, "messages": []},
        {"type": "pong", "session_id": session_id},
        {"type": "error", "session_id": session_id, "error": "post_message needs content (a string or an object)",
         "request_type": "post_message"},
        {"type": "error", "session_id": session_id, "error": "post_messages needs messages (a list)",
         "request_type": "post_messages"},
        {"type": "disconnect_session", "session_id": session_id, "success": True},
        {"type": "terminate_session", "session_id": session_id, "success": True},
        {"type": "connect_session", "session_id": session_id, "success": False,
         "error": f"session {session_id} was terminated"},
        {"type": "error", "session_id": session_id, "error": "unknown frame type no_such_frame",
         "request_type": "no_such_frame"},
    ]
    assert ws.close() == 1000


@pytest.mark.parametrize("request_frame, error", [
    ({"type": "connect_session"}, "connect_session needs session_id (a string)"),
    ({"type": "ping_session", "session_id": 7}, "ping_session needs session_id (a string)"),
    ({"type": "get_messages", "session_id": ""}, "get_messages needs session_id (a string)"),
    ({"type": "create_session", "object_type": "chatbot"}, "create_session needs object_type (chatbot or agent) and object_id"),
    ({"type": "create_session", "object_type": "pipeline", "object_id": "x"}, "object_type must be chatbot or agent, not pipeline"),
    ({"session_id": "s"}, "frame has no type (a string)"),
])
def test_a_frame_missing_a_field_gets_an_error_frame_and_the_socket_stays(daemon, api_key, request_frame, error):
    ws = raw(daemon, api_key)
    ws.send_json(request_frame)
    answer = ws.recv_json()
    assert answer["type"] == "error" and answer["error"] == error
    request_type = request_frame.get("type")
    assert answer["request_type"] == request_type
    ws.send_json({"type": "ping_session", "session_id": "still-open"})
    assert ws.recv_json() == {"type": "pong", "session_id": "still-open"}
    assert ws.close() == 1000


def test_frames_before_the_clients_close_are_handled_before_the_close_is_answered(bot, daemon, api_key):
    """What `Session.terminate()` does, with work queued ahead: the frame and the Close in one go. Once the
    server's Close arrives, a resume from another socket must already see the session terminated, however much
    the socket still had to handle (here 300 session creations first)."""
    ws = raw(daemon, api_key)
    ws.send_json({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})
    session_id = ws.recv_json()["session_id"]
    busy = frame(1, json.dumps({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})) * 300
    ws.send(busy + frame(1, json.dumps({"type": "terminate_session", "session_id": session_id}))
            + frame(CLOSE, close_payload(1000)))
    assert ws.recv_close()[0] == 1000
    other = raw(daemon, api_key)
    other.send_json({"type": "connect_session", "session_id": session_id})
    assert other.recv_json()["error"] == f"session {session_id} was terminated"
    assert other.close() == 1000
