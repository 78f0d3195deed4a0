"""`webhook_url` (issue 11 item 6): when a background run ends, its final status JSON is POSTed to the URL the SDK's
`pipeline.start(..., webhook_url=...)` sent, retried on connection errors and 5xx, and the outcome is in the run's
timeline (`webhook_delivered` / `webhook_failed`). A local receiver on 127.0.0.1 records every request."""
import http.server
import json
import signal
import socket
import threading
import time

import pytest
import requests
from vectorshift.request import BadRequestError

from conftest import build_llm_pipeline, point_sdk, unique, wait_for


class Receiver:
    """An HTTP server on 127.0.0.1 (port 0) in a thread. Answers POSTs with `statuses` in turn (then 200), or
    holds them unanswered while `hold` is set; records each request as (headers, body bytes)."""

    def __init__(self, statuses=(), hold=False):
        self.statuses = list(statuses)
        self.requests = []
        self.hold = threading.Event()
        if hold:
            self.hold.set()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.headers, body, self.path))  # headers: case-insensitive
                while receiver.hold.is_set():
                    time.sleep(0.05)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # only a followed redirect would GET
                receiver.requests.append((self.headers, b"", self.path))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.hold.clear()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def closed_port_url():
    """A URL on 127.0.0.1 whose port nobody listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/hook"


def timeline(daemon, key, run_id):
    r = requests.get(f"{daemon.root}/_mock/runs/{run_id}/events", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def webhook_entry(daemon, key, run_id, timeout=15):
    """Waits for the run's `webhook_delivered` or `webhook_failed` timeline entry and returns it."""
    def found():
        entries = [e for e in timeline(daemon, key, run_id) if e["event"].startswith("webhook_")]
        return entries[0] if entries else None
    return wait_for(found, timeout, interval=0.05, message=f"a webhook entry in run {run_id}'s timeline")


def raw_status(daemon, key, pipeline_id, run_id):
    r = requests.get(f"{daemon.url}/pipeline/{pipeline_id}/run/status/{run_id}",
                     headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.content


def assert_one_post_of_the_final_status(daemon, key, pipeline, run_id, hook, final):
    wait_for(lambda: hook.requests, 15, message="the webhook POST")
    entry = webhook_entry(daemon, key, run_id)
    assert entry["event"] == "webhook_delivered" and entry["status_code"] == 200 and entry["attempts"] == 1, entry
    assert len(hook.requests) == 1, f"expected one POST, got {len(hook.requests)}"
    headers, body, path = hook.requests[0]
    assert path == "/hook"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("mockshift/")
    assert headers["X-MockShift-Run-Id"] == run_id and headers["X-MockShift-Attempt"] == "1"
    assert body == raw_status(daemon, key, pipeline.id, run_id), "the payload is the run's status answer, byte for byte"
    payload = json.loads(body)
    assert payload["status"] == final and payload["run_id"] == run_id
    assert payload == pipeline.run_status(run_id)
    return payload


def test_completed_background_run_posts_its_final_status_once(sdk, daemon, api_key, receiver):
    hook = receiver()
    pipeline = build_llm_pipeline(sdk, unique("hook-done"))
    handler = pipeline.start(inputs={"input_0": "Write 3 words."}, webhook_url=hook.url)
    payload = assert_one_post_of_the_final_status(daemon, api_key, pipeline, handler.task_id, hook, "completed")
    assert payload["result"]["output_0"] and payload["webhook_url"] == hook.url


def test_failed_background_run_posts_its_final_status_once(sdk, daemon, api_key, receiver):
    hook = receiver()
    pipeline = build_llm_pipeline(sdk, unique("hook-failed"))
    r = requests.post(f"{daemon.root}/_mock/faults", headers={"Authorization": f"Bearer {api_key}"}, timeout=10,
                      json={"pipeline_id": pipeline.id, "llm_fail_after_tokens": 2, "message": "provider overloaded"})
    assert r.status_code == 200, r.text
    handler = pipeline.start(inputs={"input_0": "Write 20 words."}, webhook_url=hook.url)
    payload = assert_one_post_of_the_final_status(daemon, api_key, pipeline, handler.task_id, hook, "failed")
    assert payload["error"] == "node llm: provider overloaded"


def test_terminated_background_run_posts_its_final_status_once(sdk, daemon, api_key, receiver):
    hook = receiver()
    pipeline = build_llm_pipeline(sdk, unique("hook-stopped"))
    handler = pipeline.start(inputs={"input_0": "Write 300 words about robots."}, webhook_url=hook.url)
    assert pipeline.terminate(run_id=handler.task_id)["run_status"] == "terminated"
    payload = assert_one_post_of_the_final_status(daemon, api_key, pipeline, handler.task_id, hook, "terminated")
    assert "result" not in payload


def test_webhook_answered_500_twice_is_retried_and_delivered_on_the_third_attempt(sdk, daemon, api_key, receiver):
    hook = receiver(statuses=[500, 503])
    pipeline = build_llm_pipeline(sdk, unique("hook-retry"))
    handler = pipeline.start(inputs={"input_0": "Write 2 words."}, webhook_url=hook.url)
    entry = webhook_entry(daemon, api_key, handler.task_id)
    assert entry["event"] == "webhook_delivered" and entry["status_code"] == 200 and entry["attempts"] == 3, entry
    assert [h["X-MockShift-Attempt"] for h, _, _ in hook.requests] == ["1", "2", "3"]
    assert len({body for _, body, _ in hook.requests}) == 1, "every attempt sends the same payload"


@pytest.mark.parametrize("status", [404, 302])
def test_webhook_answered_4xx_or_a_redirect_fails_without_retry(sdk, daemon, api_key, receiver, status):
    hook = receiver(statuses=[status])
    pipeline = build_llm_pipeline(sdk, unique(f"hook-{status}"))
    handler = pipeline.start(inputs={"input_0": "Write 2 words."}, webhook_url=hook.url)
    entry = webhook_entry(daemon, api_key, handler.task_id)
    assert entry["event"] == "webhook_failed" and entry["status_code"] == status and entry["attempts"] == 1, entry
    assert [path for _, _, path in hook.requests] == ["/hook"], "neither retried nor redirected (as a GET)"


def test_dead_webhook_url_fails_in_the_timeline_and_the_daemon_carries_on(sdk, daemon, api_key):
    url = closed_port_url()
    pipeline = build_llm_pipeline(sdk, unique("hook-dead"))
    handler = pipeline.start(inputs={"input_0": "Write 2 words."}, webhook_url=url)
    entry = webhook_entry(daemon, api_key, handler.task_id)
    assert entry["event"] == "webhook_failed" and entry["attempts"] == 3, entry
    assert entry["url"] == url and "refused" in entry["error"], entry
    assert pipeline.run_status(handler.task_id)["status"] == "completed", "the run is not changed by its webhook"
    assert requests.get(f"{daemon.root}/_mock/health", timeout=10).json()["status"] == "ok"
    assert pipeline.run(inputs={"input_0": "Write 2 words."})["status"] == "success"
    wait_for(lambda: any("webhook for run " + handler.task_id in line and "failed" in line for line in daemon.stderr_lines),
             5, message="the failure in the daemon's log")


def test_a_webhook_to_a_host_off_this_machine_is_not_called_unless_allowed(sdk, daemon, api_key):
    """A local mock does not send made-up URLs (a test's, a fuzzer's) out to the network: only loopback hosts are
    called unless `serve --webhook-host` names the host. 192.0.2.1 is a documentation address (never routed)."""
    url = "http://192.0.2.1/hook"
    pipeline = build_llm_pipeline(sdk, unique("hook-remote"))
    handler = pipeline.start(inputs={"input_0": "Write 2 words."}, webhook_url=url)
    entry = webhook_entry(daemon, api_key, handler.task_id)
    assert entry["event"] == "webhook_failed" and entry["attempts"] == 0, entry
    assert "not allowed" in entry["error"] and "--webhook-host" in entry["error"], entry


def no_runs(daemon, key):
    r = requests.get(f"{daemon.root}/_mock/runs", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return r.json()["runs"] == []


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1/hook", "not a url", "/relative/hook", "http://", "http://[::1]:9/hook", "http://127.0.0.1:99999/hook"])
def test_start_with_a_webhook_url_that_is_no_http_url_is_400_naming_the_field(sdk, daemon, api_key, bad):
    pipeline = build_llm_pipeline(sdk, unique("hook-bad"))
    with pytest.raises(BadRequestError) as err:
        pipeline.start(inputs={"input_0": "Write 2 words."}, webhook_url=bad)
    assert "webhook_url" in str(err.value)
    assert no_runs(daemon, api_key), "no run was started"


@pytest.mark.parametrize("bad", ["", 42])
def test_empty_or_non_string_webhook_url_is_400_naming_the_field(daemon, http, api_key, bad):
    # The SDK leaves an empty webhook_url out and never sends a number: raw requests.
    pipeline = build_llm_pipeline(point_sdk(daemon, api_key), unique("hook-bad-raw"))
    r = http("POST", f"/pipeline/{pipeline.id}/run",
             json={"inputs": {"input_0": "x"}, "background": True, "webhook_url": bad})
    assert r.status_code == 400 and "webhook_url" in r.json()["error"], r.text
    assert no_runs(daemon, api_key)


def test_shutdown_posts_interrupted_runs_and_does_not_hang_on_a_stuck_receiver(new_daemon, api_key, receiver):
    daemon = new_daemon()
    Pipeline = point_sdk(daemon, api_key)
    hook, stuck = receiver(), receiver(hold=True)
    pipeline = build_llm_pipeline(Pipeline, unique("hook-shutdown"))
    done = pipeline.start(inputs={"input_0": "Write 2 words."}, webhook_url=stuck.url)
    wait_for(lambda: stuck.requests, 15, message="the stuck receiver's request")  # its delivery is now in flight
    live = pipeline.start(inputs={"input_0": "Write 300 words about robots."}, webhook_url=hook.url)
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - started < 4, "shutdown waits for webhooks a bounded time only"
    wait_for(lambda: hook.requests, 5, message="the interrupted run's webhook")
    payload = json.loads(hook.requests[0][1])
    assert payload["status"] == "failed" and payload["error"] == "run interrupted: server shut down"
    assert payload["run_id"] == live.task_id
    wait_for(lambda: any("abandoned 1 webhook" in line for line in daemon.stderr_lines), 5,
             message="the abandoned delivery in the daemon's log")
    # The abandoned delivery is in the stuck run's timeline, as the next daemon on the same file shows.
    stuck.hold.clear()
    again = new_daemon(db=daemon.db)
    entry = webhook_entry(again, api_key, done.task_id, timeout=5)
    assert entry["event"] == "webhook_failed" and entry["error"] == "abandoned: server shut down", entry
    assert len(stuck.requests) == 1
