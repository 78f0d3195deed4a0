"""Many sessions at once (issue 13 "Measured"; scripts/bench-sessions runs the full load): a burst of turns must
not stall the daemon, and the benchmark's smoke run (50 sessions, generous floors) passes. Driven by raw clients
(`wsclient.py`, and the benchmark's own)."""
import json
import subprocess
import sys

import requests

from conftest import BIN, REPO, build_llm_pipeline, point_sdk, unique
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


def test_the_sessions_benchmark_smoke_meets_its_floors():
    """`scripts/bench-sessions --smoke` on the binary under test: 50 sessions streaming at 20 tokens/s, 5 of them
    terminated midway; delta lateness and terminate -> ack p99 within 1 s, no frame after a terminate's ack,
    every delta index in order, every other turn completed. About 12 s."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench-sessions"), "--smoke", "--bin", str(BIN)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "smoke: ok" in done.stdout, done.stdout + done.stderr
