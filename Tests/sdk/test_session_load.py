"""Many sessions at once (issue 13 "Measured"; scripts/bench-sessions runs the full load): a burst of turns must
not stall the daemon. Driven by our raw client (`wsclient.py`)."""
import json

import requests

from conftest import build_llm_pipeline, point_sdk, unique
from wsclient import RawWebSocket

SESSIONS = 300


def test_300_sessions_posting_at_once_each_get_their_whole_turn(new_daemon):
    """Each socket's frames are handled on a Dispatch queue of its own; 300 turns starting together used to block
    every Dispatch worker behind the first turn's commit, which itself waited for a free worker: the daemon
    stopped answering for good (found by scripts/bench-sessions at 1,000 sessions)."""
    from vectorshift.chatbot import Chatbot

    d = new_daemon("--tokens-per-second", "1000", "--ttft-ms", "10")
    key = unique("session-load")
    pipeline = build_llm_pipeline(point_sdk(d, key), unique("load-chat"))
    bot = Chatbot.new(name=unique("load-bot"), description="", pipeline_id=pipeline.id)
    sockets = []
    for _ in range(SESSIONS):
        ws = RawWebSocket(d.root, key=key, timeout=60)
        assert ws.connect().status == 101
        ws.send_json({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})
        sockets.append((ws, ws.recv_json()["session_id"]))
    for ws, session_id in sockets:  # all at once
        ws.send_json({"type": "post_message", "session_id": session_id, "content": "Write 5 words."})
    for ws, session_id in sockets:
        kinds = []
        while not kinds or kinds[-1] != "Idle":
            frame = ws.recv_json()  # fails after 60 s of silence
            kinds.append(frame["message"]["status"] if frame["type"] == "participant_status" else frame["type"])
        assert kinds[:2] == ["post_message", "Processing"] and "message_delta" in kinds, kinds
        assert kinds[-2:] == ["message_notification", "Idle"], kinds
        assert ws.close() == 1000
    stats = requests.get(f"{d.root}/_mock/stats", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert stats["runs_by_status"] == {"completed": SESSIONS}, json.dumps(stats)
