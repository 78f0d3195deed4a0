"""Persistence across restarts (SPEC §1): pipelines and completed runs survive; runs cut off by a crash or a
shutdown are failed with the reason."""
import signal
import threading
import time

import requests

from conftest import build_llm_pipeline, point_sdk, unique, wait_for

LONG_PROMPT = "Write a 1000 word essay about the history of computing."


def test_crash_restart_keeps_pipelines_and_completed_runs_and_fails_interrupted_ones(new_daemon, api_key, tmp_path):
    db = tmp_path / "crash.sqlite3"
    first = new_daemon(db=db)
    Pipeline = point_sdk(first, api_key)
    name = unique("persist")
    pipeline = build_llm_pipeline(Pipeline, name)
    done = pipeline.start(inputs={"input_0": "Write 4 words."})
    completed = done.result(poll_interval=0.05, timeout=30)
    cut = pipeline.start(inputs={"input_0": LONG_PROMPT})
    assert cut.run_status()["status"] == "in_progress"
    first.stop(signal.SIGKILL)

    second = new_daemon(db=db)
    Pipeline = point_sdk(second, api_key)
    fetched = Pipeline.fetch(name=name)
    assert fetched.id == pipeline.id
    assert fetched.run_status(done.task_id)["result"] == completed["result"]
    status = fetched.run_status(cut.task_id)
    assert status["status"] == "failed"
    assert status["error"] == "run interrupted: server restarted"
    # The LLM was running when the daemon died; the output never started: stopped, not an untaken path.
    assert status["nodes"] == {"input_0": "completed", "llm": "failed", "output_0": "terminated"}, status["nodes"]
    assert fetched.run(inputs={"input_0": "Write 4 words."})["outputs"] == completed["result"], \
        "the same input gives the same text after a restart"


def test_sigterm_fails_live_runs_answers_waiters_and_exits_0(new_daemon, api_key, tmp_path):
    db = tmp_path / "graceful.sqlite3"
    first = new_daemon(db=db)
    Pipeline = point_sdk(first, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("graceful"))
    background = pipeline.start(inputs={"input_0": LONG_PROMPT})
    answer = {}

    def sync_run():
        answer["r"] = requests.post(f"{first.url}/pipeline/{pipeline.id}/run", json={"inputs": {"input_0": LONG_PROMPT}},
                                    headers={"Authorization": f"Bearer {api_key}"}, timeout=30)

    thread = threading.Thread(target=sync_run)
    thread.start()
    wait_for(lambda: requests.get(f"{first.root}/_mock/health", headers={"Authorization": f"Bearer {api_key}"},
                                  timeout=10).json()["live_runs"] == 2, message="both runs live")
    started = time.monotonic()
    code = first.stop(signal.SIGTERM)
    # Its standard error on failure: a newcomer's full-suite run once saw SIGABRT here (-6), not reproduced since.
    assert code == 0, "".join(first.stderr_lines[-40:])
    assert time.monotonic() - started < 2.0 + 1.0, "exit within 2 s (SPEC §1), with slack"
    thread.join(10)
    r = answer["r"]
    assert r.status_code == 500 and r.json()["status"] == "failed", r.text
    assert "server shut down" in r.json()["error"]

    second = new_daemon(db=db)
    Pipeline = point_sdk(second, api_key)
    status = Pipeline.fetch(id=pipeline.id).run_status(background.task_id)
    assert status["status"] == "failed"
    assert status["error"] == "run interrupted: server shut down"
