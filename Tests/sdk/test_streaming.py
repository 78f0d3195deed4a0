"""Streaming runs through the SDK (SPEC §5, issue 3): tokens spread over time, "Stop generating" mid-stream,
terminal-event framing on the raw bytes, disconnects, pause/resume, bulk runs."""
import asyncio
import json
import signal
import socket
import time

import pytest
import requests
from vectorshift.request import BadRequestError

from conftest import (build_llm_pipeline, build_streaming_pipeline, open_sockets, point_sdk, stats, unique,
                      wait_for)

FORTY = "Write 40 words about tape drives."


def test_stream_tokens_arrive_spread_over_time_and_join_to_the_output(sdk):
    pipeline = build_streaming_pipeline(sdk, unique("stream"))
    arrivals, tokens, result = [], [], None
    for chunk in pipeline.stream(inputs={"input_0": FORTY}):
        if chunk.type == "stream":
            arrivals.append(time.monotonic())
            tokens.append(chunk.output_value)
            assert chunk.output_name == "output_0"
        elif chunk.type == "result":
            result = chunk
    assert result is not None and result.status == "completed"
    assert "".join(tokens) == result.outputs["output_0"]
    assert 32 <= len(tokens) <= 48
    # 40 tokens at 40 tokens/s: about 1 s from first to last; a burst at the end would take a few ms.
    assert arrivals[-1] - arrivals[0] > 0.5, f"tokens came in a burst over {arrivals[-1] - arrivals[0]:.3f} s"
    sync = pipeline.run(inputs={"input_0": FORTY})
    assert sync["outputs"]["output_0"] == result.outputs["output_0"], "streamed text equals the synchronous one"


def test_first_event_is_start_with_the_run_id(sdk):
    pipeline = build_streaming_pipeline(sdk, unique("start"))
    chunks = pipeline.stream(inputs={"input_0": "Write 3 words."})
    first = next(chunks)
    assert first.type == "start" and first.status == "in_progress" and len(first.run_id) == 24
    rest = list(chunks)
    assert rest[-1].type == "result" and rest[-1].run_id == first.run_id


def test_stop_generating_from_the_reading_loop_ends_the_stream_with_terminated(sdk):
    pipeline = build_streaming_pipeline(sdk, unique("stop"))
    seen, terminated_at, result = [], None, None
    for chunk in pipeline.stream(inputs={"input_0": "Write a 500 word essay about robots."}):
        if chunk.type == "stream":
            assert terminated_at is None or time.monotonic() - terminated_at < 1.0
            seen.append(chunk.output_value)
            if len(seen) == 3 and terminated_at is None:
                answer = pipeline.terminate(run_id=chunk.run_id)
                terminated_at = time.monotonic()
                assert answer["run_status"] == "terminated"
        elif chunk.type == "result":
            result = chunk
            result_at = time.monotonic()
    assert result is not None and result.status == "terminated"
    assert result_at - terminated_at < 1.0, "the terminal event follows the terminate promptly (generous slack)"
    partial = result.outputs  # the SDK parses `outputs`; ours are in partial_outputs
    status = pipeline.run_status(result.run_id)
    assert status["status"] == "terminated" and "result" not in status
    assert status["partial_outputs"]["output_0"].startswith("".join(seen))
    assert partial in ({}, None)


def test_stop_before_the_first_token(sdk):
    pipeline = build_streaming_pipeline(sdk, unique("early-stop"))
    chunks = pipeline.stream(inputs={"input_0": "Write 20 words."})
    first = next(chunks)
    pipeline.terminate(run_id=first.run_id)
    rest = list(chunks)
    assert [c.type for c in rest] == ["result"], [c.type for c in rest]
    assert rest[0].status == "terminated"


def test_astream_stop_generating(sdk):
    pipeline = build_streaming_pipeline(sdk, unique("astream"))

    async def read():
        types, stopped = [], False
        async for chunk in pipeline.astream(inputs={"input_0": "Write a 300 word essay."}):
            types.append((chunk.type, chunk.status))
            if chunk.type == "stream" and not stopped:
                stopped = True
                await asyncio.to_thread(pipeline.terminate, run_id=chunk.run_id)
        # The SDK keeps one aiohttp session per event loop and never closes it: close it before the loop ends.
        session = getattr(asyncio.get_running_loop(), "_vectorshift_aiohttp_session", None)
        if session is not None:
            await session.close()
        return types

    types = asyncio.run(read())
    assert types[0][0] == "start" and types[-1] == ("result", "terminated"), types


def raw_stream(daemon, api_key, pipeline_id, body, on_event=None):
    """Sends a streaming run over a plain socket and returns (head, decoded body, raw body bytes)."""
    host, port = daemon.root.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps(body).encode()
    request = (f"POST /v1/pipeline/{pipeline_id}/run HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload
    data = b""
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
            if on_event:
                on_event(data)
    head, _, raw = data.partition(b"\r\n\r\n")
    decoded, rest = b"", raw
    while True:  # undo chunked encoding, checking its framing
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n", f"bad chunked terminator: {rest!r}"
            break
        decoded += rest[:size]
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]
    return head.decode(), decoded.decode(), raw


def events(decoded):
    out = []
    for block in decoded.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ") and len(lines) == 2, block
        data = json.loads(lines[1][len("data: "):])
        assert data["type"] == lines[0][len("event: "):]
        assert len(data["run_id"]) == 24 and data["task_id"] == data["run_id"]
        out.append(data)
    return out


def test_terminal_event_framing_completed_and_terminated(sdk, daemon, api_key):
    pipeline = build_streaming_pipeline(sdk, unique("framing"))
    head, decoded, _ = raw_stream(daemon, api_key, pipeline.id, {"inputs": {"input_0": "Write 4 words."}, "stream": True})
    assert "Content-Type: text/event-stream" in head and "Transfer-Encoding: chunked" in head
    evs = events(decoded)
    assert evs[0]["type"] == "start" and [e["type"] for e in evs].count("result") == 1
    assert evs[-1] == {"type": "result", "status": "completed", "outputs": evs[-1]["outputs"],
                       "run_id": evs[0]["run_id"], "task_id": evs[0]["run_id"]}
    assert decoded.split("event: result\ndata: ")[1].startswith('{"status":"completed","type":"result"'), "status first"
    assert "".join(e["output_value"] for e in evs if e["type"] == "stream") == evs[-1]["outputs"]["output_0"]

    stopped = {}

    def stop_after_start(data):
        if not stopped and b'"type":"start"' in data:
            run_id = data.split(b'"run_id":"')[1][:24].decode()
            stopped["answer"] = requests.post(f"{daemon.url}/pipeline/{pipeline.id}/terminate", json={"run_id": run_id},
                                              headers={"Authorization": f"Bearer {api_key}"}, timeout=10).json()

    _, decoded, _ = raw_stream(daemon, api_key, pipeline.id,
                               {"inputs": {"input_0": "Write 300 words."}, "stream": True}, on_event=stop_after_start)
    evs = events(decoded)
    assert stopped["answer"]["run_status"] == "terminated"
    assert evs[-1]["type"] == "result" and evs[-1]["status"] == "terminated" and "partial_outputs" in evs[-1]


def test_terminal_event_framing_failed_on_shutdown(new_daemon, api_key):
    daemon = new_daemon()
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("failed"))
    sent = {}

    def stop_daemon(data):
        if not sent and data.count(b"event: stream") >= 2:
            sent["at"] = time.monotonic()
            daemon.proc.send_signal(signal.SIGTERM)

    _, decoded, _ = raw_stream(daemon, api_key, pipeline.id,
                               {"inputs": {"input_0": "Write 300 words."}, "stream": True}, on_event=stop_daemon)
    evs = events(decoded)
    assert evs[-1]["type"] == "result" and evs[-1]["status"] == "failed"
    assert evs[-1]["error"] == "run interrupted: server shut down"
    assert daemon.proc.wait(10) == 0


def test_non_llm_stream_still_starts_and_streams_all_outputs(sdk):
    p = sdk.new(name=unique("no-llm"))
    q = p.add(name="q", id="q").input(input_type="string")
    t = p.add(name="t", id="t").text(text="echo {{ q.text }}")
    p.add(name="echo", id="echo").output(output_type="string", value=t.text)
    p.save(deploy=True)
    chunks = list(p.stream(inputs={"q": "hi"}, stream_all_outputs=True))
    assert [c.type for c in chunks] == ["start", "stream", "result"], [c.type for c in chunks]
    assert chunks[1].output_name == "echo" and chunks[1].output_value == "echo hi"
    assert [c.type for c in p.stream(inputs={"q": "hi"})] == ["start", "result"]


def test_disconnects_free_everything_even_beside_an_idle_keep_alive_connection(new_daemon, api_key):
    daemon = new_daemon()
    pipeline = build_streaming_pipeline(point_sdk(daemon, api_key), unique("idle"))
    host, port = daemon.root.removeprefix("http://").rsplit(":", 1)
    idle = socket.create_connection((host, int(port)), timeout=10)  # a keep-alive connection that stays open
    idle.sendall(b"GET /_mock/health HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.recv(4096)
    payload = json.dumps({"inputs": {"input_0": "Write 200 words."}, "stream": True}).encode()
    request = (f"POST /v1/pipeline/{pipeline.id}/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    for _ in range(100):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(request)
            data = b""
            while b'"run_id":"' not in data:
                data += s.recv(4096)
    try:
        wait_for(lambda: stats(daemon)["daemon"]["connections"] <= 2, timeout=3, message="sockets released beside the idle one")
    finally:
        idle.close()


def test_disconnects_free_everything_and_runs_keep_going(new_daemon, api_key):
    # Runs of ~200 tokens last ~5.4 s: their connections must be released long before, while they still run.
    daemon = new_daemon()
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("drop"))
    host, port = daemon.root.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps({"inputs": {"input_0": "Write 200 words."}, "stream": True}).encode()
    request = (f"POST /v1/pipeline/{pipeline.id}/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    wait_for(lambda: stats(daemon)["daemon"]["open_streams"] == 0)
    sockets = open_sockets(daemon)
    run_ids = []
    for _ in range(1000):  # SPEC §5 / issue 3: after 1,000 connect-and-drop cycles nothing is held
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(request)
            first = b""
            while b'"run_id":"' not in first:  # the start event: then hang up at once
                piece = s.recv(4096)
                assert piece, first
                first += piece
            run_ids.append(first.split(b'"run_id":"')[1][:24].decode())
    wait_for(lambda: stats(daemon)["daemon"]["open_streams"] == 0, timeout=3, message="streams released after disconnects")
    wait_for(lambda: open_sockets(daemon) <= sockets, timeout=3, message="sockets back to where they were")
    assert stats(daemon, api_key)["live_runs"] > 0, "the check above must happen while the runs still go on"
    # By default the runs go on (the real service keeps running): they complete.
    wait_for(lambda: all(pipeline.run_status(r)["status"] == "completed" for r in run_ids[-5:]),
             timeout=30, message="runs to complete after their clients left")
    chunks = list(pipeline.stream(inputs={"input_0": "Write 5 words."}))
    assert chunks[-1].type == "result" and chunks[-1].status == "completed"


def test_cancel_on_disconnect_terminates_the_run(new_daemon, api_key):
    daemon = new_daemon("--cancel-on-disconnect")
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("cancel"))
    chunks = pipeline.stream(inputs={"input_0": "Write 300 words."})
    run_id = next(chunks).run_id
    next(chunks)
    chunks.close()  # drops the connection
    wait_for(lambda: pipeline.run_status(run_id)["status"] == "terminated", timeout=5,
             message="the run to be terminated by the disconnect")


def test_pause_stops_tokens_and_resume_continues_from_the_same_token(sdk, http):
    pipeline = build_streaming_pipeline(sdk, unique("pause"))
    prompt = "Write 30 words about memory."
    tokens, result, paused_gap = [], None, None
    chunks = pipeline.stream(inputs={"input_0": prompt})
    for chunk in chunks:
        if chunk.type == "stream":
            tokens.append((time.monotonic(), chunk.output_value))
            if len(tokens) == 5:
                run_id = chunk.run_id
                r = http("POST", f"/pipeline/{pipeline.id}/pause", json={"run_id": run_id})
                assert r.status_code == 200 and r.json()["run_status"] == "paused", r.text
                status = pipeline.run_status(run_id)
                assert status["status"] == "paused"
                time.sleep(0.6)  # deliberately paused for a while: no token may arrive meanwhile
                resumed_at = time.monotonic()
                r = http("POST", f"/pipeline/{pipeline.id}/resume", json={"run_ids": [run_id]})
                assert r.status_code == 200, r.text
        elif chunk.type == "result":
            result = chunk
    assert result.status == "completed"
    after = [t for t, _ in tokens[5:]]
    assert after and after[0] >= resumed_at - 0.05, "no token while paused"
    assert "".join(v for _, v in tokens) == result.outputs["output_0"]
    assert result.outputs["output_0"] == pipeline.run(inputs={"input_0": prompt})["outputs"]["output_0"]


def test_pause_of_finished_run_is_400_and_terminate_works_on_paused_run(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("pause-final"))
    done = pipeline.start(inputs={"input_0": "Write 2 words."})
    done.result(poll_interval=0.05, timeout=30)
    r = http("POST", f"/pipeline/{pipeline.id}/pause", json={"run_id": done.task_id})
    assert r.status_code == 400 and "already completed" in r.json()["error"]
    r = http("POST", f"/pipeline/{pipeline.id}/resume", json={"run_ids": [done.task_id]})
    assert r.status_code == 400
    live = pipeline.start(inputs={"input_0": "Write 300 words."})
    assert http("POST", f"/pipeline/{pipeline.id}/pause", json={"run_id": live.task_id}).json()["run_status"] == "paused"
    assert live.terminate()["run_status"] == "terminated"
    assert live.run_status()["status"] == "terminated"


def test_bulk_run_on_both_spellings(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("bulk"))
    inputs = [{"input_0": f"Write {n} words."} for n in (3, 4, 5)]
    started = time.monotonic()
    answer = pipeline.bulk_run(inputs)
    took = time.monotonic() - started
    assert answer["status"] == "success" and len(answer["run_outputs"]) == 3
    for entry, one in zip(answer["run_outputs"], inputs):
        assert entry["outputs"] == pipeline.run(inputs=one)["outputs"]
    assert took < 3 * 0.5, "runs execute concurrently, not one after another"
    r = http("POST", f"/pipeline/{pipeline.id}/bulk_run", json={"runs": [{"inputs": inputs[0]}]})
    assert r.status_code == 200 and r.json()["run_outputs"][0]["outputs"] == answer["run_outputs"][0]["outputs"]


def test_run_options_are_recorded_and_trace_id_echoed(sdk):
    pipeline = build_llm_pipeline(sdk, unique("options"))
    handler = pipeline.start(inputs={"input_0": "Write 2 words."}, session_id="s-1", trace_id="t-1",
                             webhook_url="http://127.0.0.1:9/hook",
                             node_input_overrides={"llm": {"prompt": "Write 6 words about overrides."}})
    assert handler.trace_id == "t-1"
    status = handler.result(poll_interval=0.05, timeout=30)
    assert status["session_id"] == "s-1" and status["trace_id"] == "t-1" and status["webhook_url"].endswith("/hook")
    assert 5 <= len(status["result"]["output_0"].split()) <= 7, "the override replaced the prompt"


def test_a_client_that_does_not_read_is_cut_off_not_buffered_without_end(new_daemon, api_key):
    daemon = new_daemon("--tokens-per-second", "50000", "--ttft-ms", "10")
    pipeline = build_streaming_pipeline(point_sdk(daemon, api_key), unique("slow"))
    host, port = daemon.root.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps({"inputs": {"input_0": "Write 100000 words."}, "stream": True}).encode()
    request = (f"POST /v1/pipeline/{pipeline.id}/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(port)))
    s.sendall(request)  # and never read
    try:
        wait_for(lambda: stats(daemon)["daemon"]["open_streams"] == 1, timeout=10, message="the stream to open")
        wait_for(lambda: stats(daemon)["daemon"]["open_streams"] == 0, timeout=20, message="the slow client to be cut off")
        rss_kb = int(next(l for l in open(f"/proc/{daemon.proc.pid}/status") if l.startswith("VmRSS")).split()[1])
        assert rss_kb < 200_000, f"{rss_kb} kB: the backlog is bounded (8 MiB a stream)"
    finally:
        s.close()
    assert requests.get(f"{daemon.root}/_mock/health").json()["status"] == "ok"
