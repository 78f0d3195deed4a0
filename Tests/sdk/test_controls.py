"""Test controls under /_mock/ (SPEC §6–7, issue 4): manual clock, reset, runs, journal, readiness, isolation."""
import requests

from conftest import build_llm_pipeline, build_streaming_pipeline, point_sdk, unique


def mock(daemon, key, method, path, **kw):
    return requests.request(method, f"{daemon.root}/_mock/{path}", headers={"Authorization": f"Bearer {key}"},
                            timeout=30, **kw)


def test_manual_clock_moves_runs_exactly_by_the_advanced_time(new_daemon, api_key):
    daemon = new_daemon("--clock", "manual")  # defaults: 400 ms to first token, 40 tokens/s
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("clock"))
    handler = pipeline.start(inputs={"input_0": "Write 100 words."})
    assert mock(daemon, api_key, "GET", "clock").json()["clock"] == "manual"
    assert handler.run_status()["nodes"]["llm"] == "running"
    r = mock(daemon, api_key, "POST", "clock/advance", json={"ms": 400 + 10 * 25 + 10})
    assert r.status_code == 200, r.text
    assert handler.run_status()["status"] == "in_progress", "nothing moves by itself on the manual clock"
    handler.terminate()
    status = handler.run_status()
    assert status["output_tokens"] == 10, "max(0, ms - ttft) x rate / 1000 tokens (SPEC §6)"
    assert len(status["partial_outputs"]["output_0"].split()) == 10

    done = pipeline.start(inputs={"input_0": "Write 8 words."})
    mock(daemon, api_key, "POST", "clock/advance", json={"ms": 60_000})
    finished = done.run_status()
    assert finished["status"] == "completed"
    assert finished["output_tokens"] == len(finished["result"]["output_0"].split())
    assert mock(daemon, api_key, "POST", "clock/advance", json={"ms": -1}).status_code == 400


def test_advance_is_refused_on_the_real_clock(daemon, api_key):
    r = mock(daemon, api_key, "POST", "clock/advance", json={"ms": 10})
    assert r.status_code == 400 and "--clock manual" in r.json()["error"]


def test_reset_wipes_only_the_callers_namespace(daemon):
    key_a, key_b = unique("reset-a"), unique("reset-b")
    a = build_llm_pipeline(point_sdk(daemon, key_a), unique("mine"))
    a.run(inputs={"input_0": "Write 2 words."})
    b = build_llm_pipeline(point_sdk(daemon, key_b), unique("theirs"))
    r = mock(daemon, key_a, "POST", "reset")
    assert r.status_code == 200 and r.json()["deleted"] == {"pipelines": 1, "runs": 1}
    assert point_sdk(daemon, key_a).list() == []
    assert mock(daemon, key_a, "GET", "runs").json()["runs"] == []
    Pipeline = point_sdk(daemon, key_b)
    assert [p.id for p in Pipeline.list()] == [b.id]


def test_runs_listing_filters_by_pipeline_and_status(sdk, daemon, api_key):
    one = build_llm_pipeline(sdk, unique("runs-1"))
    two = build_llm_pipeline(sdk, unique("runs-2"))
    first = one.run(inputs={"input_0": "Write 2 words."})["run_id"]
    live = two.start(inputs={"input_0": "Write 300 words."})
    live.terminate()
    runs = mock(daemon, api_key, "GET", "runs").json()["runs"]
    assert [r["run_id"] for r in runs] == [live.task_id, first]
    only_one = mock(daemon, api_key, "GET", "runs", params={"pipeline_id": one.id}).json()["runs"]
    assert [r["run_id"] for r in only_one] == [first]
    terminated = mock(daemon, api_key, "GET", "runs", params={"status": "terminated"}).json()["runs"]
    assert [r["run_id"] for r in terminated] == [live.task_id]
    assert mock(daemon, api_key, "GET", "runs", params={"status": "nope"}).status_code == 400


def test_journal_records_requests_with_masked_keys_per_namespace(sdk, daemon, api_key):
    pipeline = build_llm_pipeline(sdk, unique("journal"))
    pipeline.run(inputs={"input_0": "Write 2 words."})
    entries = mock(daemon, api_key, "GET", "requests").json()["requests"]
    run = [e for e in entries if e["path"] == f"/v1/pipeline/{pipeline.id}/run"]
    assert len(run) == 1 and run[0]["method"] == "POST" and run[0]["status"] == 200
    assert run[0]["body"] == {"inputs": {"input_0": "Write 2 words."}}
    assert run[0]["duration_ms"] >= 0
    assert all(api_key not in str(e) for e in entries), "keys are masked"
    assert all(e["authorization"] == "Bearer …" + api_key[-4:] for e in entries)
    other = mock(daemon, unique("other-key"), "GET", "requests").json()["requests"]
    assert all(e["path"] != f"/v1/pipeline/{pipeline.id}/run" for e in other)


def test_ready_and_stats(daemon, api_key):
    assert mock(daemon, api_key, "GET", "ready").json() == {"status": "ready"}
    stats = mock(daemon, api_key, "GET", "stats").json()
    assert {"live_runs", "live_timers", "open_streams", "feed_subscribers", "runs_by_status", "daemon"} <= set(stats)
    assert {"connections", "parked_requests", "open_streams", "live_timers", "scheduler_lateness"} <= set(stats["daemon"])


def test_stats_and_health_count_the_callers_runs_only(new_daemon):
    """Issue 11 item 14: key B, which has nothing, saw key A's live run, timers and runs by status."""
    import threading

    d = new_daemon("--tokens-per-second", "5")  # a 300-word answer takes a minute: the runs stay live
    key_a, key_b = unique("stats-a"), unique("stats-b")
    Pipeline = point_sdk(d, key_a)
    pipeline = build_llm_pipeline(Pipeline, unique("a-runs"))
    done = pipeline.start(inputs={"input_0": "Write 2 words."})
    stopped = pipeline.start(inputs={"input_0": "Write 300 words."})
    stopped.terminate()
    live = pipeline.start(inputs={"input_0": "Write 300 words."})
    chat = build_streaming_pipeline(Pipeline, unique("a-stream"))
    stream = requests.post(f"{d.url}/pipeline/{chat.id}/run", json={"inputs": {"input_0": "Write 300 words."}, "stream": True},
                           headers={"Authorization": f"Bearer {key_a}"}, stream=True, timeout=30)

    def drain():  # reads the stream until the test closes it
        try:
            for _ in stream.iter_content(1024):
                pass
        except Exception:  # noqa: BLE001  closed under the reader
            pass

    threading.Thread(target=drain, daemon=True).start()

    from conftest import wait_for
    wait_for(lambda: done.run_status()["status"] == "completed", message="A's short run to complete")
    a = wait_for(lambda: (s := mock(d, key_a, "GET", "stats").json())["open_streams"] == 1 and s, message="A's stream")
    assert a["live_runs"] == 2 and a["live_timers"] >= 2, a  # the background run and the streaming one
    assert a["runs_by_status"] == {"completed": 1, "terminated": 1, "in_progress": 2}, a
    assert mock(d, key_a, "GET", "health").json()["live_runs"] == 2

    b = mock(d, key_b, "GET", "stats").json()
    assert (b["live_runs"], b["live_timers"], b["open_streams"], b["feed_subscribers"], b["runs_by_status"]) == (0, 0, 0, 0, {}), b
    assert mock(d, key_b, "GET", "health").json() == {"status": "ok", "live_runs": 0}
    # The transport's and the scheduler's own figures are the whole daemon's, and say so.
    assert b["daemon"]["open_streams"] == 1 and b["daemon"]["connections"] >= 1, b
    assert b["daemon"]["live_timers"] >= a["live_timers"] and "p99_ms" in b["daemon"]["scheduler_lateness"], b

    live.terminate()
    stream.close()
    a = wait_for(lambda: (s := mock(d, key_a, "GET", "stats").json())["open_streams"] == 0 and s["live_runs"] == 1 and s,
                 timeout=5, message="A's background run stopped and its stream closed")
    assert a["runs_by_status"]["terminated"] == 2, a


def test_first_token_is_on_the_timeline_while_the_run_goes_on(new_daemon, api_key):
    daemon = new_daemon("--clock", "manual")
    pipeline = build_llm_pipeline(point_sdk(daemon, api_key), unique("live-timeline"))
    handler = pipeline.start(inputs={"input_0": "Write 100 words."})
    mock(daemon, api_key, "POST", "clock/advance", json={"ms": 650})
    events = mock(daemon, api_key, "GET", f"runs/{handler.task_id}/events").json()["events"]
    first = [e for e in events if e["event"] == "first_token"]
    assert len(first) == 1 and first[0]["clock_ms"] == 425.0, events
    created = next(e for e in events if e["event"] == "created")
    assert first[0]["at"] >= created["at"], "wall stamps never go back"
    assert handler.run_status()["status"] == "in_progress"


def test_run_timeline_on_the_manual_clock(new_daemon, api_key):
    daemon = new_daemon("--clock", "manual")
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("timeline"))
    handler = pipeline.start(inputs={"input_0": "Write 20 words."})
    mock(daemon, api_key, "POST", "clock/advance", json={"ms": 500})
    assert requests.post(f"{daemon.url}/pipeline/{pipeline.id}/pause", json={"run_id": handler.task_id},
                         headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
    live = mock(daemon, api_key, "GET", f"runs/{handler.task_id}/events").json()["events"]
    assert [e["event"] for e in live][-1] == "paused"
    mock(daemon, api_key, "POST", "clock/advance", json={"ms": 1000})  # paused: nothing moves
    requests.post(f"{daemon.url}/pipeline/{pipeline.id}/resume", json={"run_ids": [handler.task_id]},
                  headers={"Authorization": f"Bearer {api_key}"})
    mock(daemon, api_key, "POST", "clock/advance", json={"ms": 60_000})
    assert handler.run_status()["status"] == "completed"
    events = mock(daemon, api_key, "GET", f"runs/{handler.task_id}/events").json()["events"]
    names = [(e["event"], e.get("node")) for e in events]
    assert names[0] == ("created", None) and names[-1] == ("completed", None)
    for expected in [("node_started", "llm"), ("paused", None), ("resumed", None), ("first_token", "llm"),
                     ("tokens", "llm"), ("node_completed", "llm"), ("node_completed", "output_0")]:
        assert expected in names, (expected, names)
    first = next(e for e in events if e["event"] == "first_token")
    assert first["clock_ms"] == 425.0, "400 ms to first token, then 25 ms a token at 40 tokens/s"
    tokens = next(e for e in events if e["event"] == "tokens")
    assert tokens["count"] == handler.run_status()["output_tokens"]
    assert mock(daemon, api_key, "GET", "runs/0123456789abcdef01234567/events").status_code == 404


def test_metrics_in_prometheus_text(new_daemon, api_key):
    daemon = new_daemon()
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("metrics"))
    pipeline.run(inputs={"input_0": "Write 2 words."})
    r = requests.get(f"{daemon.root}/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    assert 'mockshift_runs_started_total{mode="sync"} 1' in text, text
    assert 'mockshift_runs_finished_total{status="completed"} 1' in text
    assert 'mockshift_http_requests_total{method="POST",status="200"}' in text
    assert "mockshift_live_runs 0" in text
    assert "# TYPE mockshift_http_request_duration_seconds histogram" in text


def test_reset_all_needs_the_admin_key(new_daemon):
    daemon = new_daemon("--admin-key", "boss-key")
    a, b = unique("key-a"), unique("key-b")
    build_llm_pipeline(point_sdk(daemon, a), unique("a"))
    build_llm_pipeline(point_sdk(daemon, b), unique("b"))
    r = mock(daemon, a, "POST", "reset", params={"all": "true"})
    assert r.status_code == 403 and "admin key" in r.json()["error"]
    assert len(point_sdk(daemon, b).list()) == 1
    # A key with nothing but a fault rule is reset too; the answer shows keys masked (they are API keys).
    c = unique("key-c")
    assert mock(daemon, c, "POST", "faults", json={"path": "/v1/pipelines", "status": 503}).status_code == 200
    assert mock(daemon, "boss-key", "POST", "reset", params={"all": "maybe"}).status_code == 400
    r = mock(daemon, "boss-key", "POST", "reset", params={"all": "TRUE"})
    assert r.status_code == 200 and {"…" + a[-4:], "…" + b[-4:], "…" + c[-4:]} <= set(r.json()["namespaces"])
    assert a not in r.text and b not in r.text and c not in r.text
    assert point_sdk(daemon, a).list() == [] and point_sdk(daemon, b).list() == []
    assert mock(daemon, c, "GET", "faults").json()["faults"] == []
