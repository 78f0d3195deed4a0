"""Runs through the official SDK: synchronous, background, terminate (SPEC §3–4)."""
import re
import threading
import time

import pytest
from vectorshift.request import BadRequestError, NotFoundError

from conftest import build_llm_pipeline, point_sdk, unique, wait_for

LONG_PROMPT = "Write a 1000 word essay about the history of computing."


def test_sync_run_is_deterministic_per_input(sdk):
    pipeline = build_llm_pipeline(sdk, unique("sync"))
    first = pipeline.run(inputs={"input_0": "Write 5 words about robots."})
    again = pipeline.run(inputs={"input_0": "Write 5 words about robots."})
    other = pipeline.run(inputs={"input_0": "Write 5 words about tape drives."})
    assert first["status"] == "success"
    assert re.fullmatch(r"[0-9a-f]{24}", first["run_id"])
    assert first["run_id"] != again["run_id"]
    assert first["outputs"] == again["outputs"], "same input must give the same text"
    assert other["outputs"]["output_0"] != first["outputs"]["output_0"]
    words = first["outputs"]["output_0"].split()
    assert 4 <= len(words) <= 6, first


def test_background_run_result_returns_completed_status_with_outputs(sdk):
    pipeline = build_llm_pipeline(sdk, unique("background"))
    handler = pipeline.start(inputs={"input_0": "Write 8 words about memory."})
    assert re.fullmatch(r"[0-9a-f]{24}", handler.task_id)
    status = handler.result(poll_interval=0.05, timeout=30)
    assert status["status"] == "completed"
    assert list(status)[0] == "status", "status is the first key (SPEC §3)"
    assert status["task_id"] == handler.task_id
    answer = status["result"]["output_0"]
    assert 6 <= len(answer.split()) <= 10
    assert status["output_tokens"] == len(answer.split())
    assert status["tokens_used"] == status["input_tokens"] + status["output_tokens"]
    assert status["nodes"] == {"input_0": "completed", "llm": "completed", "output_0": "completed"}
    assert status["ended_at"] is not None
    sync = pipeline.run(inputs={"input_0": "Write 8 words about memory."})
    assert sync["outputs"] == status["result"], "background and synchronous runs give the same text"


def start_long_run(pipeline):
    handler = pipeline.start(inputs={"input_0": LONG_PROMPT})
    wait_for(lambda: handler.run_status()["nodes"]["llm"] == "running", message="the LLM node to run")
    return handler


def test_terminate_via_handler_stops_the_run(sdk):
    pipeline = build_llm_pipeline(sdk, unique("term-handler"))
    handler = start_long_run(pipeline)
    answer = handler.terminate()
    assert answer == {"status": "success", "run_id": handler.task_id, "run_status": "terminated"}
    status = handler.run_status()
    assert status["status"] == "terminated"
    assert "result" not in status
    assert status["nodes"]["llm"] == "terminated"
    assert status["ended_at"] is not None


def test_terminate_via_pipeline_with_run_id(sdk):
    pipeline = build_llm_pipeline(sdk, unique("term-pipeline"))
    handler = start_long_run(pipeline)
    answer = pipeline.terminate(run_id=handler.task_id)
    assert answer["status"] == "success"
    assert pipeline.run_status(handler.task_id)["status"] == "terminated"


def test_second_terminate_gives_the_same_answer(sdk):
    pipeline = build_llm_pipeline(sdk, unique("double"))
    handler = start_long_run(pipeline)
    first = handler.terminate()
    second = handler.terminate()
    assert first == second
    assert handler.run_status()["status"] == "terminated"


def test_terminate_of_finished_run_is_400_and_keeps_result(sdk):
    pipeline = build_llm_pipeline(sdk, unique("finished"))
    handler = pipeline.start(inputs={"input_0": "Write 3 words."})
    done = handler.result(poll_interval=0.05, timeout=30)
    with pytest.raises(BadRequestError) as err:
        handler.terminate()
    assert err.value.status_code == 400
    assert f"run {handler.task_id} already completed" in str(err.value)
    after = handler.run_status()
    assert after["status"] == "completed"
    assert after["result"] == done["result"]


def test_terminate_of_unknown_run_is_404(sdk):
    pipeline = build_llm_pipeline(sdk, unique("unknown-run"))
    with pytest.raises(NotFoundError):
        pipeline.terminate(run_id="0123456789abcdef01234567")
    with pytest.raises(NotFoundError):
        pipeline.run_status("0123456789abcdef01234567")


def test_terminate_without_run_id_is_400(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("no-run-id"))
    r = http("POST", f"/pipeline/{pipeline.id}/terminate", json={})
    assert r.status_code == 400
    assert r.json() == {"status": "failed", "error": "run_id is required"}


def test_terminate_accepts_urlencoded_and_multipart_bodies(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("form"))
    urlencoded = start_long_run(pipeline)
    r = http("POST", f"/pipeline/{pipeline.id}/terminate", data={"run_id": urlencoded.task_id})
    assert r.status_code == 200 and r.json()["run_status"] == "terminated", r.text
    multipart = start_long_run(pipeline)
    r = http("POST", f"/pipeline/{pipeline.id}/terminate", files={"run_id": (None, multipart.task_id)})
    assert r.status_code == 200 and r.json()["run_status"] == "terminated", r.text
    assert multipart.run_status()["status"] == "terminated"


def test_terminated_run_never_completes_later(new_daemon, api_key):
    # Time scaled down 20×: the long run would end after about 1.3 s; watch it until well past that.
    daemon = new_daemon("--time-scale", "0.05")
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("never"))
    handler = start_long_run(pipeline)
    handler.terminate()
    terminated = handler.run_status()
    watch_until = time.monotonic() + 3.0
    while time.monotonic() < watch_until:
        status = handler.run_status()
        assert status["status"] == "terminated" and "result" not in status, status
        assert status["partial_outputs"] == terminated["partial_outputs"]
        time.sleep(0.1)


def test_terminate_sweep_around_the_end_of_a_run(new_daemon, api_key):
    # A run of ~5 tokens at 100 ms TTFT and 100 tokens/s lasts ~150 ms; terminates land from 0 to 400 ms in.
    daemon = new_daemon("--ttft-ms", "100", "--tokens-per-second", "100")
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("sweep"))
    outcomes = []
    for step in range(21):
        handler = pipeline.start(inputs={"input_0": "Write 5 words."})
        time.sleep(step * 0.02)
        try:
            answer = handler.terminate()
            assert answer["run_status"] == "terminated"
            outcome = "terminated"
        except BadRequestError as err:
            assert "already completed" in str(err)
            outcome = "completed"
        outcomes.append(outcome)
        first = handler.run_status()
        assert first["status"] == outcome, (step, first)
        if outcome == "terminated":
            assert "result" not in first
        else:
            assert "output_0" in first["result"]
        # The final status never changes afterwards, even past the moment the run would have ended.
        watch_until = time.monotonic() + 0.3
        while time.monotonic() < watch_until:
            later = handler.run_status()
            assert later["status"] == first["status"] and later.get("result") == first.get("result"), (step, later)
            time.sleep(0.05)
    assert outcomes[0] == "terminated" and outcomes[-1] == "completed", outcomes


def test_sync_request_waiting_on_a_terminated_run_answers_409(new_daemon, api_key):
    # The synchronous caller never learns its run id before the end; deleting the pipeline terminates its runs
    # (SPEC §3), which is how this test stops it.
    daemon = new_daemon()
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("sync-409"))
    import requests
    result = {}

    def sync_run():
        r = requests.post(f"{daemon.url}/pipeline/{pipeline.id}/run", json={"inputs": {"input_0": LONG_PROMPT}},
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=60)
        result["response"] = r
        result["at"] = time.monotonic()

    thread = threading.Thread(target=sync_run)
    thread.start()
    wait_for(lambda: requests.get(f"{daemon.root}/_mock/health", headers={"Authorization": f"Bearer {api_key}"},
                                  timeout=10).json()["live_runs"] == 1, message="the run to start")
    deleted_at = time.monotonic()
    pipeline.delete()
    thread.join(10)
    response = result["response"]
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["status"] == "failed" and re.fullmatch(r"[0-9a-f]{24}", body["run_id"])
    assert "terminated" in body["error"]
    assert result["at"] - deleted_at < 1.0, "the waiting request must be answered at once (generous slack)"
