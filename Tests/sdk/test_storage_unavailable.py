"""Storage that cannot write for a while (issue 11 item 2): another process holds the database's write lock while a
stream runs and the user presses Stop. The run stops at once, nothing final is reported before it is stored, the
transport stays responsive, and everything heals by itself once the lock is gone."""
import sqlite3
import threading
import time

import requests

from conftest import REPO, build_streaming_pipeline, point_sdk, unique, wait_for

ESSAY = "Write a 500 word essay about lighthouses."


class Lock:
    """`BEGIN IMMEDIATE` on the daemon's database from this (another) process, held until `release()`."""

    def __init__(self, db):
        self.connection = sqlite3.connect(str(db), isolation_level=None, timeout=5, check_same_thread=False)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self):
        self.connection.execute("ROLLBACK")
        self.connection.close()


def read_stream(pipeline, events):
    for chunk in pipeline.stream(inputs={"input_0": ESSAY}):
        events.append((time.monotonic(), chunk))


def in_thread(call):
    """Runs `call()` in a thread; the returned dict gets `answer` (or `error`) and `at` when it returns."""
    box = {}

    def run():
        try:
            box["answer"] = call()
        except Exception as error:  # noqa: BLE001 - the test reports it
            box["error"] = error
        box["at"] = time.monotonic()

    threading.Thread(target=run, daemon=True).start()
    return box


def timed(call):
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def test_stop_while_the_database_is_locked_is_stored_once_the_lock_goes(new_daemon, tmp_path, api_key):
    db = tmp_path / "locked.sqlite3"
    daemon = new_daemon("--tokens-per-second", "20", db=db)
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("locked"))
    headers = {"Authorization": f"Bearer {api_key}"}
    url = daemon.url

    events = []
    threading.Thread(target=read_stream, args=(pipeline, events), daemon=True).start()
    wait_for(lambda: sum(1 for _, c in events if c.type == "stream") >= 3, timeout=15, message="three tokens")
    run_id = events[0][1].run_id

    lock = Lock(db)
    try:
        terminate = in_thread(lambda: requests.post(f"{url}/pipeline/{pipeline.id}/terminate", headers=headers,
                                                    json={"run_id": run_id}, timeout=60))
        time.sleep(1.0)  # let the stop reach the run (the checks below are about what does NOT happen)
        tokens_then = sum(1 for _, c in events if c.type == "stream")

        # The transport is not held by the storage: several requests at once answer quickly.
        answers = [in_thread(lambda: requests.get(f"{daemon.root}/_mock/health", headers=headers, timeout=30))
                   for _ in range(6)]
        wait_for(lambda: all("at" in a for a in answers), timeout=5, message="health answers while locked")
        assert all(a["answer"].status_code == 200 for a in answers)

        # Nothing final is reported before it is stored: the status read from SQLite still says in_progress,
        # the terminate has not answered, the stream has no result event.
        status, took = timed(lambda: requests.get(f"{url}/pipeline/{pipeline.id}/run/status/{run_id}",
                                                  headers=headers, timeout=30))
        assert status.status_code == 200 and took < 2.0, (status.status_code, took)
        assert status.json()["status"] == "in_progress"
        assert "at" not in terminate, f"terminate answered before its commit: {terminate}"
        assert not any(c.type == "result" for _, c in events)
        timeline = requests.get(f"{daemon.root}/_mock/runs/{run_id}/events", headers=headers, timeout=30).json()["events"]
        assert not any(e["event"] == "terminated" for e in timeline), "the timeline shows a stop not stored yet"
        daemon_stats = requests.get(f"{daemon.root}/_mock/stats", headers=headers, timeout=30).json()["daemon"]
        assert daemon_stats["pending_commits"] == 1 and daemon_stats["storage"] == "unavailable", daemon_stats

        # Writes that cannot wait answer 503 at once, in the VectorShift error format, and store nothing.
        saved, took = timed(lambda: requests.post(f"{url}/update/pipeline/{pipeline.id}", headers=headers,
                                                  json={"name": "renamed"}, timeout=30))
        assert saved.status_code == 503 and took < 2.0, (saved.status_code, saved.text, took)
        assert saved.json()["status"] == "failed" and "storage unavailable" in saved.json()["error"]
        assert saved.headers.get("Retry-After") == "1"
        started, took = timed(lambda: requests.post(f"{url}/pipeline/{pipeline.id}/run", headers=headers,
                                                    json={"inputs": {"input_0": "hi"}, "background": True}, timeout=30))
        assert started.status_code == 503 and took < 2.0, (started.status_code, started.text, took)

        # The run stopped when Stop was pressed: no token afterwards (at 20 tokens/s, 1.5 s would bring ~30),
        # however long the lock stays.
        time.sleep(1.5)
        assert sum(1 for _, c in events if c.type == "stream") == tokens_then, "tokens came after Stop"
    finally:
        lock.release()

    # Heals by itself: the pending commit lands, then everyone hears "terminated".
    wait_for(lambda: "at" in terminate, timeout=10, message="the terminate answer after the lock went")
    assert "error" not in terminate, terminate
    assert terminate["answer"].status_code == 200, terminate["answer"].text
    assert terminate["answer"].json()["run_status"] == "terminated"
    wait_for(lambda: any(c.type == "result" for _, c in events), timeout=10, message="the stream's result event")
    results = [c for _, c in events if c.type == "result"]
    assert len(results) == 1 and results[0].status == "terminated"
    assert pipeline.run_status(run_id)["status"] == "terminated"
    timeline = requests.get(f"{daemon.root}/_mock/runs/{run_id}/events", headers=headers, timeout=30).json()["events"]
    assert [e["event"] for e in timeline].count("terminated") == 1, timeline
    again = requests.post(f"{url}/pipeline/{pipeline.id}/terminate", headers=headers, json={"run_id": run_id}, timeout=30)
    assert again.status_code == 200 and again.json()["run_status"] == "terminated"
    health = requests.get(f"{daemon.root}/_mock/health", headers=headers, timeout=30).json()
    assert health["live_runs"] == 0, health
    daemon_stats = requests.get(f"{daemon.root}/_mock/stats", headers=headers, timeout=30).json()["daemon"]
    assert daemon_stats["pending_commits"] == 0 and daemon_stats["storage"] == "ok", daemon_stats
    # Writes work again.
    renamed = requests.post(f"{url}/update/pipeline/{pipeline.id}", headers=headers, json={"name": "renamed"}, timeout=30)
    assert renamed.status_code == 200, renamed.text

    # And the stored state survives a restart as it was answered.
    assert daemon.stop() == 0
    again = new_daemon(db=db)
    point_sdk(again, api_key)
    assert requests.get(f"{again.url}/pipeline/{pipeline.id}/run/status/{run_id}", headers=headers,
                        timeout=30).json()["status"] == "terminated"


def test_a_run_that_ends_while_the_database_is_locked_completes_after_the_lock(new_daemon, tmp_path, api_key):
    """The end of a run (not a stop) that cannot be stored: its waiters (a synchronous request, the stream) hear
    nothing until the commit lands, then `completed` with the result."""
    db = tmp_path / "ends-locked.sqlite3"
    daemon = new_daemon("--ttft-ms", "0", "--tokens-per-second", "40", db=db)
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("ends"))
    headers = {"Authorization": f"Bearer {api_key}"}
    events = []
    threading.Thread(target=lambda: [events.append((time.monotonic(), c)) for c in
                                     pipeline.stream(inputs={"input_0": "Write 20 words."})], daemon=True).start()
    wait_for(lambda: events, timeout=10, message="the start event")
    run_id = events[0][1].run_id
    lock = Lock(db)
    try:
        wait_for(lambda: sum(1 for _, c in events if c.type == "stream") >= 16, timeout=10, message="most tokens")
        time.sleep(1.5)  # the run's last token is long due: it ended in memory, but cannot be stored
        assert not any(c.type == "result" for _, c in events), "a result event before the final commit"
        status = requests.get(f"{daemon.url}/pipeline/{pipeline.id}/run/status/{run_id}", headers=headers, timeout=30)
        assert status.json()["status"] == "in_progress"
    finally:
        lock.release()
    wait_for(lambda: any(c.type == "result" for _, c in events), timeout=10, message="the result after the lock")
    result = [c for _, c in events if c.type == "result"][0]
    assert result.status == "completed"
    assert pipeline.run_status(run_id)["status"] == "completed"


def test_reset_and_delete_refused_for_storage_change_nothing(new_daemon, tmp_path, api_key):
    """A 503 "nothing was stored" must be true of memory too: a reset keeps the key's rules and live runs, a delete
    keeps the pipeline's live runs (found by review: both had stopped runs and cleared rules before their write
    failed). Health and readiness answer a key never seen before although seeding it from the fixtures must wait."""
    db = tmp_path / "refused.sqlite3"
    daemon = new_daemon("--fixtures", str(REPO / "fixtures"), db=db)
    Pipeline = point_sdk(daemon, api_key)
    headers = {"Authorization": f"Bearer {api_key}"}
    pipeline = build_streaming_pipeline(Pipeline, unique("kept"))
    live = pipeline.start(inputs={"input_0": ESSAY})
    rule = requests.post(f"{daemon.root}/_mock/faults", headers=headers, timeout=30,
                         json={"path": "/v1/nothing-here", "status": 418})
    assert rule.status_code == 200, rule.text
    faults_before = requests.get(f"{daemon.root}/_mock/faults", headers=headers, timeout=30).json()["faults"]
    scripts_before = requests.get(f"{daemon.root}/_mock/llm", headers=headers, timeout=30).json()

    lock = Lock(db)
    try:
        reset = requests.post(f"{daemon.root}/_mock/reset", headers=headers, timeout=30)
        assert reset.status_code == 503 and "storage unavailable" in reset.json()["error"], reset.text
        deleted = requests.delete(f"{daemon.url}/pipeline/{pipeline.id}", headers=headers, timeout=30)
        assert deleted.status_code == 503, deleted.text
        assert requests.get(f"{daemon.root}/_mock/faults", headers=headers, timeout=30).json()["faults"] == faults_before
        assert requests.get(f"{daemon.root}/_mock/llm", headers=headers, timeout=30).json() == scripts_before
        newcomer = {"Authorization": f"Bearer {unique('first-seen')}"}
        for path in ("/_mock/health", "/_mock/ready"):
            answer = requests.get(f"{daemon.root}{path}", headers=newcomer, timeout=30)
            assert answer.status_code == 200, (path, answer.status_code, answer.text)
    finally:
        lock.release()
    time.sleep(0.5)  # a stop pending behind the lock would land now
    assert live.run_status()["status"] == "in_progress", "the refused reset or delete stopped a live run"
    assert requests.get(f"{daemon.url}/_mock/health".replace("/v1", ""), headers=headers,
                        timeout=30).json()["live_runs"] == 1
    assert Pipeline.fetch(id=pipeline.id).id == pipeline.id
