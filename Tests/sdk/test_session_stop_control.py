"""`POST /_mock/sessions/{id}/terminate` (issue 13 item 5, the dashboard's Stop on a session turn): a session
stopped from outside stops as if its client had sent `terminate_session` (SPEC §10: the turn stops at once, is
stored `Terminated`, the session is terminated for good), and then every socket attached to it gets Close 1000
`session terminated`, so the SDK's `listen()` ends. Driven by the real SDK and by our raw client (`wsclient.py`)."""
import asyncio
import time

import pytest
import requests
from vectorshift.chatbot import Chatbot
from vectorshift.events import SessionEventType
from vectorshift.session import Session, SessionError

from conftest import build_llm_pipeline, point_sdk, unique
from wsclient import RawWebSocket

ESSAY = "Write a 300 word essay about robots."


@pytest.fixture
def slow(new_daemon, monkeypatch):
    """A daemon whose answers stream for a while (first token at 300 ms, then 10 a second), a key and a chatbot
    of that key; the SDK's sessions go to this daemon."""
    d = new_daemon("--tokens-per-second", "10", "--ttft-ms", "300")
    key = unique("session-controls")
    monkeypatch.setenv("VECTORSHIFT_BASE_URL", d.url)
    monkeypatch.delenv("VECTORSHIFT_WS_URL", raising=False)
    pipeline = build_llm_pipeline(point_sdk(d, key), unique("controls-chat"))
    bot = Chatbot.new(name=unique("controls-bot"), description="", pipeline_id=pipeline.id)
    return d, key, bot


def terminate(d, key, session_id):
    return requests.post(f"{d.root}/_mock/sessions/{session_id}/terminate", headers={"Authorization": f"Bearer {key}"},
                         timeout=10)


def stored_messages(d, key, session_id):
    """The session's stored messages, read over a socket of its own (get_messages needs no connect)."""
    ws = RawWebSocket(d.root, key=key)
    assert ws.connect().status == 101
    ws.send_json({"type": "get_messages", "session_id": session_id})
    answer = ws.recv_json()
    ws.close()
    return answer["messages"]


def test_a_session_terminated_from_outside_stops_its_turn_and_ends_the_sdks_listen(slow):
    d, key, bot = slow

    async def scenario():
        session = await bot.create_session()
        await session.connect()
        saved = session.session_id
        await session.send(ESSAY)
        deltas, others, answer = [], [], None
        async for event in session.listen():
            if event.type == SessionEventType.MESSAGE_DELTA:
                deltas.append(event.data["delta"])
                if len(deltas) == 3 and answer is None:
                    answer = await asyncio.to_thread(terminate, d, key, saved)
            elif answer is not None:
                others.append(event.type)
        # listen() ended by itself: the server closed the socket.
        closed = not session.is_connected
        await session._teardown()
        resumed = Session(session_id=saved)
        try:
            await resumed.connect()
            resume_error = None
        except SessionError as error:
            resume_error = str(error)
        finally:
            await resumed._teardown()
        return saved, deltas, others, answer, closed, resume_error

    saved, deltas, others, answer, closed, resume_error = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "success", "session_id": saved, "session_status": "terminated",
                             "stopped_turn": True, "closed_sockets": 1}
    # Deltas sent before the stop may still be on their way when the terminate answers; none is sent after it:
    # what the client got is exactly the stored answer, and the turn's end frames never come.
    assert others == [], f"frames after the terminate: {others}"
    assert closed
    assert resume_error == f"Server error while waiting for session_connected: session {saved} was terminated"
    messages = stored_messages(d, key, saved)
    assert [m["content"]["status"] for m in messages] == ["Complete", "Terminated"]
    assert len(deltas) >= 3 and messages[1]["content"]["value"] == "".join(deltas), "the stored answer is what the client saw"
    turns = requests.get(f"{d.root}/_mock/conversations/{saved}", headers={"Authorization": f"Bearer {key}"},
                         timeout=10).json()["conversation"]["turns"]
    assert [(t["outcome"], t["answer"]) for t in turns] == [("stopped", "".join(deltas))]


def test_terminating_an_idle_session_closes_its_socket_with_1000_session_terminated(slow):
    d, key, bot = slow
    ws = RawWebSocket(d.root, key=key)
    assert ws.connect().status == 101
    ws.send_json({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})
    session_id = ws.recv_json()["session_id"]
    started = time.monotonic()
    answer = terminate(d, key, session_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["stopped_turn"] is False and answer.json()["closed_sockets"] == 1
    assert ws.recv_close() == (1000, "session terminated")
    assert time.monotonic() - started < 2
    ws.send(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # our Close answer (1000)
    assert ws.at_eof()
    again = terminate(d, key, session_id)  # harmless twice
    assert again.status_code == 200 and again.json()["closed_sockets"] == 0


def test_terminating_an_unknown_or_another_keys_session_is_404_json(slow):
    d, key, bot = slow
    ws = RawWebSocket(d.root, key=key)
    assert ws.connect().status == 101
    ws.send_json({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})
    session_id = ws.recv_json()["session_id"]
    for who, sid in ((key, "0" * 24), (unique("another-key"), session_id)):
        answer = terminate(d, who, sid)
        assert answer.status_code == 404, answer.text
        assert answer.json() == {"status": "failed", "error": f"Session {sid} not found"}
    # The owner's session was left alone: still open, the socket too.
    ws.send_json({"type": "ping_session", "session_id": session_id})
    assert ws.recv_json() == {"type": "pong", "session_id": session_id}
    assert ws.close() == 1000
