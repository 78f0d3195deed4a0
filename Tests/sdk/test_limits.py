"""Retention and security basics (issue 5, items 5 and 6): bounded journal and run tables, keys kept out of
logs, the journal and error bodies, a warning for non-loopback addresses, JSON logs, header and connection
limits."""
import json
import socket
import time

import pytest
import requests

from conftest import Http, build_llm_pipeline, point_sdk, unique, wait_for


def start_runs(http, pipeline_id, count):
    ids = []
    for i in range(count):
        r = http("POST", f"/pipeline/{pipeline_id}/run", json={"inputs": {"input_0": f"run {i}"}, "background": True})
        assert r.status_code == 200, r.text
        ids.append(r.json()["task_id"])
    return ids


def run_status(http, pipeline_id, task):
    return http("GET", f"/pipeline/{pipeline_id}/run/status/{task}")


def test_keep_runs_deletes_the_oldest_finished_runs_of_each_key_only(new_daemon, api_key):
    d = new_daemon("--time-scale", "0", "--keep-runs", "5")
    Pipeline = point_sdk(d, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("keep"))
    http = Http(d, api_key)
    other = Http(d, api_key + "-other")
    other_pipeline = build_llm_pipeline(point_sdk(d, api_key + "-other"), unique("keep-other"))
    theirs = start_runs(other, other_pipeline.id, 3)
    mine = start_runs(http, pipeline.id, 12)

    def kept():
        runs = http("GET", "/_mock/runs", params={"limit": 100}).json()["runs"]
        return len(runs) == 5 and runs

    runs = wait_for(kept, message="retention down to 5 runs")
    assert [r["run_id"] for r in runs] == list(reversed(mine[-5:]))  # the newest five, newest first
    # A deleted run is gone for good (404), a kept one still answers; the other key's three runs are untouched.
    assert run_status(http, pipeline.id, mine[-1]).json()["status"] == "completed"
    old = run_status(http, pipeline.id, mine[0])
    assert old.status_code == 404 and old.json()["status"] == "failed"
    assert len(other("GET", "/_mock/runs").json()["runs"]) == 3
    assert all(run_status(other, other_pipeline.id, t).json()["status"] == "completed" for t in theirs)


def test_journal_size_bounds_the_journal(new_daemon, api_key):
    d = new_daemon("--journal-size", "3")
    http = Http(d, api_key)
    for i in range(6):
        http("GET", "/pipeline", params={"name": f"missing-{i}"})
    entries = http("GET", "/_mock/requests").json()["requests"]
    assert [e["query"]["name"] for e in entries] == ["missing-3", "missing-4", "missing-5"]


def test_api_keys_never_appear_in_logs_journal_or_error_bodies(new_daemon):
    secret = "sk-live-" + "9f3c2a7e5b1d4c8a" * 2
    d = new_daemon("--api-key", secret, "--log-level", "trace", "--log-format", "json")
    good = Http(d, secret)
    pipeline = good("POST", "/pipeline", json={"name": unique("secret")}).json()["id"]
    good("GET", f"/pipeline/{pipeline}/run/status/{'0' * 24}")  # a 404
    bad = Http(d, secret + "x")
    answers = [bad("GET", "/pipelines"), bad("GET", "/_mock/requests"),
               requests.get(d.url + "/pipelines", headers={"Authorization": secret}, timeout=10)]
    assert all(r.status_code == 401 for r in answers)
    journal = good("GET", "/_mock/requests").json()
    assert journal["requests"], "the journal recorded the requests"
    assert all(e["authorization"] == "Bearer …" + secret[-4:] for e in journal["requests"])
    texts = [r.text for r in answers] + [json.dumps(journal, ensure_ascii=False)]
    d.stop()
    texts.append("".join(d.stderr_lines))
    for text in texts:
        assert secret not in text and secret[:-4] not in text
    # The logs really were written, one JSON object per line.
    lines = [json.loads(line) for line in d.stderr_lines if line.strip()]
    assert lines and all({"at", "level", "message"} <= set(line) for line in lines)


def test_a_non_loopback_address_is_warned_about(new_daemon):
    d = new_daemon("--host", "0.0.0.0")
    wait_for(lambda: any("not a loopback address" in line for line in d.stderr_lines), message="the warning")
    local = new_daemon()
    assert requests.get(local.root + "/_mock/health", timeout=10).status_code == 200
    assert not any("not a loopback address" in line for line in local.stderr_lines), local.stderr_lines


def test_request_heads_over_the_limit_are_refused_and_the_daemon_carries_on(new_daemon, api_key):
    d = new_daemon("--max-header-kb", "8")
    http = Http(d, api_key)
    r = http("GET", "/pipelines", headers={"X-Padding": "a" * 12_000})
    assert r.status_code == 431
    assert http("GET", "/pipelines", headers={"X-Padding": "a" * 2_000}).status_code == 200


def test_slow_clients_hold_at_most_max_connections_and_only_until_the_timeout(new_daemon):
    # On loopback every client has the same address, so the daemon-wide limit is the per-client one.
    d = new_daemon("--max-connections", "4", "--connection-timeout", "2")
    host, port = d.root.removeprefix("http://").rsplit(":", 1)
    held = []
    for _ in range(4):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"GET /_mock/health HTTP/1.1\r\nHost: x\r\n")  # a slow client: the head never ends
        held.append(s)
    try:
        # A fifth client is not served while the four hold every connection...
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            requests.get(d.root + "/_mock/health", timeout=(5, 0.8))
        # ...and is served once the silent four are closed by the connection timeout.
        r = requests.get(d.root + "/_mock/health", timeout=15)
        assert r.status_code == 200
        assert time.monotonic() - started < 12
        assert all(s.recv(1024) == b"" for s in held)  # the daemon closed them
    finally:
        for s in held:
            s.close()


def test_a_silent_client_is_disconnected_after_the_connection_timeout(new_daemon):
    d = new_daemon("--connection-timeout", "1")
    host, port = d.root.removeprefix("http://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"GET /_mock/health HTTP/1.1\r\n")  # and then nothing
    started = time.monotonic()
    try:
        assert s.recv(1024) == b""  # closed by the daemon
    except ConnectionResetError:
        pass
    assert time.monotonic() - started < 8
    s.close()


@pytest.mark.parametrize("flag,value", [("--keep-runs", "-1"), ("--journal-size", "x"), ("--max-header-kb", "1"),
                                        ("--connection-timeout", "0"), ("--log-format", "xml"), ("--max-connections", "1")])
def test_bad_limits_are_refused_at_start(flag, value, tmp_path):
    import subprocess
    from conftest import BIN
    done = subprocess.run([str(BIN), "serve", "--port", "0", "--db", str(tmp_path / "x.sqlite3"), f"{flag}={value}"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 64 and flag in done.stderr


def test_keep_runs_keeps_the_runs_that_finished_last_even_if_they_started_first(new_daemon, api_key):
    d = new_daemon("--clock", "manual", "--keep-runs", "3")
    http = Http(d, api_key)
    slow = build_llm_pipeline(point_sdk(d, api_key), unique("slow")).id
    quick = http("POST", "/pipeline", json={"name": unique("quick"), "nodes": {
        "input_0": {"id": "input_0", "name": "input_0", "type": "input", "inputs": {"input_type": "string"}, "outputs": ["text"]},
        "text_0": {"id": "text_0", "type": "text", "inputs": {"text": "echo {{ input_0.text }}"}, "outputs": ["text"]},
        "output_0": {"id": "output_0", "name": "output_0", "type": "output", "inputs": {"value": "{{ text_0.text }}"}}}}).json()["id"]
    long_run = start_runs(http, slow, 1)[0]  # waits for the manual clock
    start_runs(http, quick, 6)  # finish at once
    assert http("POST", "/_mock/clock/advance", json={"ms": 600_000}).status_code == 200

    def kept():
        ids = [r["run_id"] for r in http("GET", "/_mock/runs", params={"limit": 100}).json()["runs"]]
        return len(ids) == 3 and ids

    assert long_run in wait_for(kept, message="retention down to 3 runs")
    assert run_status(http, slow, long_run).json()["status"] == "completed"


@pytest.mark.parametrize("name,value", [("MOCKSHIFT_STRICT_NODES", "maybe"), ("MOCKSHIFT_CANCEL_ON_DISCONNECT", "2"),
                                        ("MOCKSHIFT_API_KEY", " , ")])
def test_bad_environment_values_are_refused_at_start(name, value, tmp_path):
    import os
    import subprocess
    from conftest import BIN
    env = dict(os.environ, **{name: value})
    done = subprocess.run([str(BIN), "serve", "--port", "0", "--db", str(tmp_path / "x.sqlite3")],
                          capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 64 and name in done.stderr


def test_a_database_that_cannot_be_opened_is_one_clear_line(tmp_path):
    import subprocess
    from conftest import BIN
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = subprocess.run([str(BIN), "serve", "--port", "0", "--db", str(blocker / "x.sqlite3")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "cannot open database" in done.stderr and "Usage" not in done.stderr


def test_a_key_holds_at_most_a_thousand_fault_rules(new_daemon, api_key):
    d = new_daemon()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {api_key}"}
    for i in range(1000):
        r = session.post(f"{d.root}/_mock/faults", headers=headers, json={"path": f"/v1/x{i}", "status": 503}, timeout=10)
        assert r.status_code == 200, r.text
    r = session.post(f"{d.root}/_mock/faults", headers=headers, json={"path": "/v1/one-more", "status": 503}, timeout=10)
    assert r.status_code == 400 and "1000 rules" in r.json()["error"]
    # The same rule again replaces itself; another key is not affected.
    assert session.post(f"{d.root}/_mock/faults", headers=headers, json={"path": "/v1/x7", "status": 503}, timeout=10).status_code == 200
    other = {"Authorization": f"Bearer {api_key}-other"}
    assert session.post(f"{d.root}/_mock/faults", headers=other, json={"path": "/v1/y", "status": 503}, timeout=10).status_code == 200
