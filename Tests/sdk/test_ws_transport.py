"""The WebSocket transport (SPEC §10, issue 13 items 1 and 6): the handshake, framing by wslay, the limits, and the
socket thread's hygiene, through a raw-socket client of our own (`wsclient.py`) and aiohttp (the SDK's client).

Frames the server answers here are the session protocol's error frames: an unknown frame type is answered with
`{"type":"error",…,"request_type":T}`, which echoes the type; that is how these tests make the server send."""
import asyncio
import json
import resource
import signal
import socket
import threading
import time

import aiohttp
import pytest
import requests

from conftest import open_sockets, stats, wait_for
from wsclient import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawWebSocket, accept_for, close_payload, frame

MiB = 1024 * 1024


def daemon_figures(daemon):
    return stats(daemon)["daemon"]


# MARK: Handshake


@pytest.mark.parametrize("path", ["/v1/ws/session", "/ws/session"])
def test_upgrade_answers_101_with_the_accept_value_of_the_key_and_no_extension(daemon, path):
    ws = RawWebSocket(daemon.root, path=path)
    ws.extra_headers = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
                        "Sec-WebSocket-Protocol": "chat"}
    answer = ws.connect()
    assert answer.status == 101
    assert answer.headers["upgrade"].lower() == "websocket"
    assert answer.headers["connection"].lower() == "upgrade"
    assert answer.headers["sec-websocket-accept"] == accept_for(ws.client_key)
    assert "sec-websocket-extensions" not in answer.headers  # offered, declined (SPEC §10: no extensions)
    assert "sec-websocket-protocol" not in answer.headers
    assert ws.close() == 1000


@pytest.mark.parametrize("path", ["/v1/ws/session", "/ws/session"])
def test_plain_get_of_the_session_url_is_400_json(daemon, api_key, path):
    answer = requests.get(daemon.root + path, headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"status": "failed",
                             "error": "Not a WebSocket upgrade: the request needs the header Upgrade: websocket"}


def test_another_websocket_version_is_426_naming_version_13(daemon):
    ws = RawWebSocket(daemon.root, headers={"Sec-WebSocket-Version": "8"})
    answer = ws.connect()
    assert answer.status == 426
    assert answer.headers["sec-websocket-version"] == "13"
    assert answer.json() == {"status": "failed", "error": "WebSocket version 8 is not supported; use 13"}


@pytest.mark.parametrize("headers, missing", [
    ({"Sec-WebSocket-Key": "c2hvcnQ="}, "Sec-WebSocket-Key must be the base64 of 16 bytes"),
    ({"Sec-WebSocket-Key": None}, "Sec-WebSocket-Key must be the base64 of 16 bytes"),
    ({"Connection": "keep-alive"}, "Connection: Upgrade"),
    ({"Sec-WebSocket-Version": None}, "Sec-WebSocket-Version: 13"),
])
def test_an_invalid_upgrade_is_400_json_naming_what_is_wrong(daemon, headers, missing):
    answer = RawWebSocket(daemon.root, headers=headers).connect()
    assert answer.status == 400
    assert answer.headers["content-type"] == "application/json"
    assert missing in answer.json()["error"]


def test_with_api_keys_a_bad_key_is_401_json_before_any_upgrade(new_daemon):
    d = new_daemon("--api-key", "good-key")
    answer = RawWebSocket(d.root, key="bad-key").connect()
    assert answer.status == 401
    assert answer.json() == {"error": "Invalid API key: verification failed"}
    assert "upgrade" not in answer.headers
    assert RawWebSocket(d.root, key=None).connect().status == 401  # no key at all
    good = RawWebSocket(d.root, key="good-key")
    assert good.connect().status == 101
    assert good.close() == 1000


def test_frames_sent_right_behind_the_handshake_are_read(daemon):
    """libmicrohttpd may read past the request head (`extra_in`): those bytes are the first frames."""
    ws = RawWebSocket(daemon.root)
    assert ws.connect(extra=frame(TEXT, '{"type":"early-bird"}')).status == 101
    reply = ws.recv_json()
    assert reply["type"] == "error" and reply["request_type"] == "early-bird"
    assert ws.close() == 1000


# MARK: Framing


def connected(daemon, **kw):
    ws = RawWebSocket(daemon.root, **kw)
    assert ws.connect().status == 101
    return ws


def test_a_message_in_three_fragments_is_one_message(daemon):
    ws = connected(daemon)
    text = json.dumps({"type": "fragmented-" + "x" * 300})
    ws.send(frame(TEXT, text[:10], fin=False) + frame(CONTINUATION, text[10:200], fin=False)
            + frame(CONTINUATION, text[200:], fin=True))
    reply = ws.recv_json()
    assert reply["request_type"] == "fragmented-" + "x" * 300
    assert list(reply)[:2] == ["type", "session_id"]
    assert ws.close() == 1000


def test_a_ping_between_fragments_is_answered_with_its_pong_before_the_message(daemon):
    ws = connected(daemon)
    text = json.dumps({"type": "around-a-ping"})
    ws.send(frame(TEXT, text[:5], fin=False))
    ws.send(frame(PING, b"are you there"))
    assert ws.recv_frame() == (True, PONG, b"are you there")  # answered before the message is complete
    ws.send(frame(CONTINUATION, text[5:], fin=True))
    assert ws.recv_json()["request_type"] == "around-a-ping"
    assert ws.close() == 1000


def test_a_message_of_exactly_4_mib_is_taken_and_one_byte_more_closes_with_1009(daemon):
    ws = connected(daemon)
    envelope = len(json.dumps({"type": ""}))
    ws.send_text(json.dumps({"type": "y" * (4 * MiB - envelope)}))
    assert len(ws.recv_json()["request_type"]) == 4 * MiB - envelope
    big = json.dumps({"type": "y" * (4 * MiB - envelope + 1)})
    sender = threading.Thread(target=lambda: _send_quietly(ws, frame(TEXT, big)), daemon=True)
    sender.start()  # the server stops reading at the limit: the rest of the send may never be taken
    code, _ = ws.recv_close()
    assert code == 1009
    assert ws.at_eof()


def _send_quietly(ws, data):
    try:
        ws.send(data)
    except OSError:
        pass  # the server closed first, as it should


def test_the_4_mib_limit_counts_the_fragments_of_one_message_together(daemon):
    ws = connected(daemon)
    half = b"z" * (2 * MiB)
    sender = threading.Thread(target=lambda: _send_quietly(
        ws, frame(TEXT, half, fin=False) + frame(CONTINUATION, half, fin=False) + frame(CONTINUATION, b"!", fin=True)),
        daemon=True)
    sender.start()
    assert ws.recv_close()[0] == 1009


def test_invalid_utf8_text_closes_with_1007(daemon):
    ws = connected(daemon)
    ws.send(frame(TEXT, b'{"type":"\xff\xfe"}'))
    assert ws.recv_close()[0] == 1007
    assert ws.at_eof()


def test_invalid_utf8_split_across_fragments_closes_with_1007(daemon):
    ws = connected(daemon)
    ws.send(frame(TEXT, b'{"type":"\xe2\x82', fin=False) + frame(CONTINUATION, b'"}', fin=True))  # cut € sign
    assert ws.recv_close()[0] == 1007


def test_a_binary_frame_closes_with_1003(daemon):
    ws = connected(daemon)
    ws.send(frame(BINARY, b'{"type":"ping_session"}'))
    code, reason = ws.recv_close()
    assert code == 1003
    assert "binary" in reason
    ws.send(frame(CLOSE, close_payload(1003)))  # the client's answer ends the handshake
    assert ws.at_eof()


def test_non_json_text_gets_an_error_frame_and_the_socket_stays_open(daemon):
    ws = connected(daemon)
    ws.send_text("this is not JSON")
    error = ws.recv_json()
    assert list(error) == ["type", "session_id", "error", "request_type"]
    assert error["type"] == "error" and error["request_type"] is None
    ws.send_text("[1, 2, 3]")  # JSON, but not an object
    assert ws.recv_json()["type"] == "error"
    ws.send_json({"type": "still-here"})
    assert ws.recv_json()["request_type"] == "still-here"
    assert ws.close() == 1000


def test_the_sdk_client_aiohttp_gets_its_close_answered_at_once(daemon):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{daemon.url}/ws/session", headers={"Authorization": "Bearer aio"}) as ws:
                await ws.send_str(json.dumps({"type": "hello"}))
                reply = await ws.receive_json(timeout=10)
                started = time.monotonic()
                await ws.close()  # waits up to 10 s for the server's Close (API-CHAT §2.7)
                return reply, ws.close_code, time.monotonic() - started

    reply, code, took = asyncio.run(scenario())
    assert reply["request_type"] == "hello"
    assert code == 1000
    assert took < 1.0


# MARK: Limits and hygiene


def test_a_client_that_never_reads_is_cut_off_with_1008_after_8_mib_queued(new_daemon):
    d = new_daemon()
    ws = connected(d, rcvbuf=4096)  # a small window: what the server sends piles up on its side
    request = frame(TEXT, json.dumps({"type": "q" * MiB}))  # each answered by a 1 MiB error frame
    sender = threading.Thread(target=lambda: _send_quietly(ws, request * 32), daemon=True)
    sender.start()
    wait_for(lambda: daemon_figures(d)["closing_websockets"] == 1, timeout=60,
             message="the server to give up on the client (Close 1008 queued)")
    code, reason = ws.recv_close()  # now read: what was queued, then the Close
    assert code == 1008, reason
    assert "does not read" in reason
    # Bounded: the 8 MiB queue, the kernel's buffers and the frame in progress; not the 32 MiB asked for.
    assert ws.received_bytes < 20 * MiB, f"{ws.received_bytes} bytes reached the client"
    ws.send(frame(CLOSE, close_payload(1008)))
    wait_for(lambda: daemon_figures(d)["open_websockets"] == 0, timeout=10, message="the socket to be released")


def test_a_thousand_sessions_opened_and_dropped_leave_no_descriptor_or_socket_behind(new_daemon):
    d = new_daemon()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    baseline_sockets = open_sockets(d)
    baseline = daemon_figures(d)
    assert baseline["open_websockets"] == 0

    host, port = d.root.split("//")[1].split(":")

    async def one(i):
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (f"GET /v1/ws/session HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer k{i % 7}\r\n\r\n").encode()
        writer.write(head + frame(TEXT, json.dumps({"type": f"n{i}"})))
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        first = await asyncio.wait_for(reader.readexactly(2), 30)
        assert first[1] < 126
        payload = await asyncio.wait_for(reader.readexactly(first[1]), 30)
        assert json.loads(payload)["request_type"] == f"n{i}"
        if i % 3 == 0:
            writer.write(frame(CLOSE, close_payload(1000)))  # a polite third: Close, then gone without waiting
            await writer.drain()
        writer.transport.abort()  # the rest just vanish (no Close)

    async def all_of_them():
        for batch in range(0, 1000, 200):
            await asyncio.gather(*(one(i) for i in range(batch, batch + 200)))

    asyncio.run(all_of_them())
    wait_for(lambda: daemon_figures(d)["open_websockets"] == 0, timeout=20, message="every socket released")
    wait_for(lambda: open_sockets(d) <= baseline_sockets, timeout=20,
             message=f"the daemon's sockets back to {baseline_sockets} (now {open_sockets(d)})")
    figures = daemon_figures(d)
    assert figures["closing_websockets"] == 0
    assert figures["requests_in_flight"] <= baseline["requests_in_flight"] + 1  # the stats request itself


def test_sigterm_closes_every_open_socket_with_1001_and_exits_0_within_2_seconds(new_daemon):
    d = new_daemon()
    polite = [connected(d, key=f"p{i}") for i in range(5)]  # answer the Close
    silent = [connected(d, key=f"s{i}") for i in range(5)]  # never answer
    for ws in polite + silent:
        ws.send_json({"type": "hi"})
        assert ws.recv_json()["request_type"] == "hi"
    wait_for(lambda: daemon_figures(d)["open_websockets"] == 10, message="10 open sockets")
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    for ws in polite:
        code, reason = ws.recv_close()
        assert (code, reason) == (1001, "server shutting down")
        ws.send(frame(CLOSE, close_payload(1001)))
    assert d.proc.wait(timeout=10) == 0
    took = time.monotonic() - started
    assert took < 3.0, f"exit took {took:.2f} s (SPEC §1: 2 s; 1 s slack for a loaded machine)"
    for ws in silent:
        assert ws.recv_close()[0] == 1001  # it was sent even though they never answered
        assert ws.at_eof()


def test_an_idle_socket_outlives_the_connection_timeout(new_daemon):
    """--connection-timeout closes idle HTTP connections; an upgraded socket is ours, and idle sessions are normal
    (the SDK pings every 5 s, a browser may not)."""
    d = new_daemon("--connection-timeout", "1")
    ws = connected(d)
    time.sleep(2.5)  # the idleness under test: well past the 1 s timeout
    ws.send_json({"type": "awake"})
    assert ws.recv_json()["request_type"] == "awake"
    assert ws.close() == 1000
