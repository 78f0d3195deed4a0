"""The live feed `GET /_mock/events` (issue 7): one Server-Sent-Events stream of the caller's run events, read
here with `requests` (stream=True) while the SDK starts, pauses and terminates runs. Every wait has a deadline;
"nothing more came" is shown by a later event (a run started afterwards), never by sleeping."""
import json
import queue
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import build_llm_pipeline, build_streaming_pipeline, point_sdk, stats, unique, wait_for

LONG = "Write a 300 word essay about robots."


class Feed:
    """A reader of `/_mock/events` on a thread of its own: parsed events go to a queue, in order."""

    def __init__(self, root, key=None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.response = requests.get(f"{root}/_mock/events", headers=headers, stream=True, timeout=(5, 60))
        assert self.response.status_code == 200, self.response.text
        assert self.response.headers["Content-Type"] == "text/event-stream"
        self.queue = queue.Queue()
        self.seen = []
        self.ended = threading.Event()
        self.error = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buffer, kind, data = "", "message", []
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                buffer += chunk.decode()
                while "\n" in buffer:
                    line, buffer = buffer.split("\n", 1)
                    if line == "":
                        if data:
                            self.queue.put((kind, json.loads("\n".join(data))))
                        kind, data = "message", []
                    elif line.startswith(":"):
                        self.queue.put((":", line))
                    elif line.startswith("event: "):
                        kind = line[len("event: "):]
                    elif line.startswith("data: "):
                        data.append(line[len("data: "):])
        except Exception as error:  # noqa: BLE001  (a closed socket ends the reader; the test decides)
            self.error = error
        self.ended.set()

    def until(self, predicate, timeout=15.0, what="an event"):
        """Reads events until `predicate(type, data)` holds; returns that event. Fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout}s; seen: {[t for t, _ in self.seen][-30:]}")
            try:
                kind, data = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append((kind, data))
            if kind != ":" and predicate(kind, data):
                return data

    def of(self, run_id):
        """The types seen so far for one run, in order."""
        return [t for t, d in self.seen if t != ":" and d.get("run_id") == run_id]

    def close(self):
        try:  # end the connection under the reader at once (urllib3 2: the connection of the stream)
            self.response.raw.connection.sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001
            pass
        self.response.close()


def test_feed_starts_with_ready_and_reports_a_streaming_run_until_stop_generating(daemon, api_key):
    Pipeline = point_sdk(daemon, api_key)
    feed = Feed(daemon.root, api_key)
    ready = feed.until(lambda t, d: t == "ready", what="ready")
    assert ready["at"].endswith("Z")
    pipeline = build_streaming_pipeline(Pipeline, unique("feed-stream"))

    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(pipeline.stream(inputs={"input_0": LONG})), daemon=True)
    reader.start()
    created = feed.until(lambda t, d: t == "created", what="created")
    run_id = created["run_id"]
    assert created["pipeline_id"] == pipeline.id and created["mode"] == "stream" and created["status"] == "in_progress"
    assert created["nodes"] == ["input_0", "llm", "output_0"]
    tokens = []
    feed.until(lambda t, d: t == "stream" and d["run_id"] == run_id and tokens.append(d) is None and len(tokens) == 5,
               what="5 stream events")
    assert all(t["node"] == "llm" and t["outputs"] == ["output_0"] and t["tokens"] >= 1 for t in tokens)

    answer = pipeline.terminate(run_id=run_id)
    assert answer["run_status"] == "terminated"
    end = feed.until(lambda t, d: d.get("run_id") == run_id and t == "terminated", what="terminated")
    assert end["status"] == "terminated" and end["pipeline_id"] == pipeline.id
    # The feed is never ahead of SQLite: the final event came after the commit.
    assert pipeline.run_status(run_id)["status"] == "terminated"
    reader.join(10)
    assert chunks and chunks[-1].type == "result" and chunks[-1].status == "terminated"

    # In order, each type where it belongs.
    types = feed.of(run_id)
    assert types[:3] == ["created", "node_completed", "node_started"], types
    assert types.index("first_token") < types.index("stream"), types
    assert types[-2:] == ["tokens", "terminated"], types
    streamed = "".join(d["text"] for t, d in feed.seen if t == "stream" and d["run_id"] == run_id)
    assert pipeline.run_status(run_id)["partial_outputs"]["output_0"] == streamed, "the feed had every token"

    # No token after the stop: a run started afterwards ends, and the stopped run said nothing more meanwhile.
    quick = build_llm_pipeline(Pipeline, unique("feed-after"))
    later = quick.start(inputs={"input_0": "Write 3 words."})
    feed.until(lambda t, d: d.get("run_id") == later.task_id and t == "completed", what="the later run's end")
    assert feed.of(run_id)[-1] == "terminated", feed.of(run_id)
    feed.close()


def test_feed_reports_a_background_run_with_pause_resume_and_result(daemon, api_key, http):
    Pipeline = point_sdk(daemon, api_key)
    feed = Feed(daemon.root, api_key)
    feed.until(lambda t, d: t == "ready")
    pipeline = build_llm_pipeline(Pipeline, unique("feed-background"))
    handler = pipeline.start(inputs={"input_0": "Write 40 words about tape drives."})
    run_id = handler.task_id
    feed.until(lambda t, d: d.get("run_id") == run_id and t == "node_started", what="node_started")
    paused = http("POST", f"/pipeline/{pipeline.id}/pause", json={"run_id": run_id})
    assert paused.status_code == 200, paused.text
    event = feed.until(lambda t, d: d.get("run_id") == run_id and t == "paused", what="paused")
    assert event["status"] == "paused"
    resumed = http("POST", f"/pipeline/{pipeline.id}/resume", json={"run_ids": [run_id]})
    assert resumed.status_code == 200, resumed.text
    assert feed.until(lambda t, d: d.get("run_id") == run_id and t == "resumed")["status"] == "in_progress"
    done = feed.until(lambda t, d: d.get("run_id") == run_id and t == "completed", what="completed")
    status = pipeline.run_status(run_id)
    assert status["status"] == "completed", "committed before the feed said so"
    assert done["result"] == status["result"] and done["output_tokens"] == status["output_tokens"]
    types = feed.of(run_id)
    assert "stream" not in types, "a background run streams no tokens"
    assert types[0] == "created" and types[-4:] == ["tokens", "node_completed", "node_completed", "completed"], types
    for _, d in feed.seen:
        if d.get("run_id") == run_id:
            assert isinstance(d["clock_ms"], (int, float)) and d["at"].endswith("Z") and d["pipeline_id"] == pipeline.id
    feed.close()


def test_feed_shows_only_the_callers_namespace(daemon):
    mine, theirs = unique("key-mine"), unique("key-theirs")
    feed = Feed(daemon.root, mine)
    feed.until(lambda t, d: t == "ready")
    their_feed = Feed(daemon.root, theirs)
    their_feed.until(lambda t, d: t == "ready")
    Pipeline = point_sdk(daemon, theirs)
    their_run = build_llm_pipeline(Pipeline, unique("theirs")).start(inputs={"input_0": "Write 3 words."})
    their_feed.until(lambda t, d: d.get("run_id") == their_run.task_id and t == "completed")
    Pipeline = point_sdk(daemon, mine)
    my_run = build_llm_pipeline(Pipeline, unique("mine")).start(inputs={"input_0": "Write 3 words."})
    feed.until(lambda t, d: d.get("run_id") == my_run.task_id and t == "completed")
    assert {d.get("run_id") for t, d in feed.seen if t not in (":", "ready")} == {my_run.task_id}
    feed.close()
    their_feed.close()


def test_a_reader_that_hangs_up_is_released(new_daemon):
    d = new_daemon()
    feed = Feed(d.root, "k")
    feed.until(lambda t, data: t == "ready")
    assert stats(d, "k")["feed_subscribers"] == 1
    feed.close()
    wait_for(lambda: stats(d, "k")["feed_subscribers"] == 0 and stats(d)["daemon"]["open_streams"] == 0, timeout=5,
             message="the feed's subscription and stream released")


def test_feed_ends_cleanly_at_shutdown_after_the_interrupted_runs_end(new_daemon):
    d = new_daemon()
    feed = Feed(d.root, "k")
    feed.until(lambda t, data: t == "ready")
    Pipeline = point_sdk(d, "k")
    run = build_llm_pipeline(Pipeline, unique("shutdown")).start(inputs={"input_0": LONG})
    feed.until(lambda t, data: data.get("run_id") == run.task_id and t == "node_started")
    assert d.stop(signal.SIGTERM) == 0
    end = feed.until(lambda t, data: data.get("run_id") == run.task_id and t == "failed", timeout=5)
    assert end["error"] == "run interrupted: server shut down"
    assert feed.ended.wait(5), "the feed ends with the daemon"
    assert feed.error is None, f"the body ended cleanly (chunked end), not with {feed.error!r}"


def test_feed_needs_the_key_and_the_dashboard_files_do_not(new_daemon):
    d = new_daemon("--api-key", "secret")
    refused = requests.get(f"{d.root}/_mock/events", timeout=10)
    assert refused.status_code == 401 and "error" in refused.json()
    wrong = requests.get(f"{d.root}/_mock/events", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    feed = Feed(d.root, "secret")
    feed.until(lambda t, data: t == "ready")
    feed.close()
    for path, kind in [("/", "text/html"), ("/_mock/ui", "text/html"), ("/_mock/ui/index.html", "text/html"),
                       ("/_mock/ui/app.js", "text/javascript"), ("/_mock/ui/style.css", "text/css")]:
        r = requests.get(d.root + path, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(kind), (path, r.status_code, r.headers)
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert "http://" not in r.text and "https://" not in r.text, f"{path} loads nothing from elsewhere (no CDN)"
    assert '<script src="/_mock/ui/app.js"' in requests.get(d.root + "/", timeout=10).text
    missing = requests.get(f"{d.root}/_mock/ui/nothing.js", timeout=10)
    assert missing.status_code == 404 and missing.json()["status"] == "failed"
    assert requests.post(f"{d.root}/", timeout=10).status_code == 401, "only GET is public"


def test_keep_alive_comments_come_in_real_time_under_the_manual_clock(new_daemon, api_key):
    """Keep-alives are for clients and proxies that time out: they follow the wall clock even when simulated time
    stands still (found by a newcomer: the dashboard reconnected every 45 s under --clock manual)."""
    d = new_daemon("--clock", "manual")
    started = time.monotonic()
    with requests.get(f"{d.root}/_mock/events", headers={"Authorization": f"Bearer {api_key}"}, stream=True,
                      timeout=(5, 30)) as response:
        seen = b""
        for chunk in response.iter_content(chunk_size=None):
            seen += chunk
            if b": keep-alive" in seen:
                break
    assert b": keep-alive" in seen and time.monotonic() - started < 25
