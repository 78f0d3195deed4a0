"""Injected faults (SPEC §7 /_mock/faults, issue 4): status and body, delay, dropped connection, LLM failure after
N tokens, times and probability; per key; cleared by DELETE."""
import time

import pytest
import requests
from vectorshift.request import ApiConnectionError, InternalServerError, PipelineRunFailedError

from conftest import build_llm_pipeline, build_streaming_pipeline, unique, wait_for


def fault(daemon, key, **rule):
    r = requests.post(f"{daemon.root}/_mock/faults", json=rule, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_status_fault_answers_n_times_then_stops(sdk, daemon, api_key):
    pipeline = build_llm_pipeline(sdk, unique("status-fault"))
    fault(daemon, api_key, method="GET", path="/v1/pipeline", status=503, body={"error": "Service Unavailable"}, times=2)
    for _ in range(2):
        with pytest.raises(InternalServerError) as err:
            sdk.fetch(id=pipeline.id)
        assert err.value.status_code == 503 and "Service Unavailable" in str(err.value)
    assert sdk.fetch(id=pipeline.id).id == pipeline.id


def test_delay_fault_slows_the_answer(sdk, daemon, api_key):
    fault(daemon, api_key, path="/v1/pipelines", delay_ms=400, times=1)
    started = time.monotonic()
    sdk.list()
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    sdk.list()
    assert time.monotonic() - started < 0.4


def test_drop_fault_closes_the_connection(sdk, daemon, api_key):
    pipeline = build_llm_pipeline(sdk, unique("drop-fault"))
    fault(daemon, api_key, method="POST", path="/v1/pipeline/*/run", drop=True, times=1)
    with pytest.raises(ApiConnectionError):
        pipeline.run(inputs={"input_0": "Write 2 words."})
    assert pipeline.run(inputs={"input_0": "Write 2 words."})["status"] == "success"
    journal = requests.get(f"{daemon.root}/_mock/requests", headers={"Authorization": f"Bearer {api_key}"}).json()["requests"]
    assert any(e.get("dropped") for e in journal)


def test_llm_fault_fails_the_run_after_n_tokens_everywhere(sdk, daemon, api_key):
    pipeline = build_streaming_pipeline(sdk, unique("llm-fault"))
    fault(daemon, api_key, pipeline_id=pipeline.id, llm_fail_after_tokens=3, message="provider overloaded")
    with pytest.raises(InternalServerError) as err:
        pipeline.run(inputs={"input_0": "Write 20 words."})
    assert "executor task failed: node llm: provider overloaded" in str(err.value)
    handler = pipeline.start(inputs={"input_0": "Write 20 words."})
    with pytest.raises(PipelineRunFailedError):
        handler.result(poll_interval=0.05, timeout=30)
    status = handler.run_status()
    assert status["status"] == "failed" and status["nodes"]["llm"] == "failed"
    assert status["output_tokens"] == 3 and len(status["partial_outputs"]["output_0"].split()) == 3
    chunks = list(pipeline.stream(inputs={"input_0": "Write 20 words."}))
    assert [c.type for c in chunks].count("stream") == 3
    assert chunks[-1].type == "result" and chunks[-1].status == "failed" and "provider overloaded" in chunks[-1].error


def test_probability_draws_and_faults_are_per_key_and_cleared(sdk, daemon, api_key):
    build_llm_pipeline(sdk, unique("probability"))
    fault(daemon, api_key, path="/v1/pipelines", status=500, probability=0.5)
    outcomes = []
    for _ in range(30):
        try:
            sdk.list()
            outcomes.append("ok")
        except InternalServerError:
            outcomes.append("fault")
    assert 0 < outcomes.count("fault") < 30, outcomes
    other = requests.get(f"{daemon.url}/pipelines", headers={"Authorization": f"Bearer {unique('other')}"})
    assert other.status_code == 200, "another key's requests are not affected"
    listed = requests.get(f"{daemon.root}/_mock/faults", headers={"Authorization": f"Bearer {api_key}"}).json()
    assert len(listed["faults"]) == 1
    cleared = requests.delete(f"{daemon.root}/_mock/faults", headers={"Authorization": f"Bearer {api_key}"}).json()
    assert cleared["removed"] == 1
    for _ in range(10):
        sdk.list()


def test_bad_fault_rules_are_400(daemon, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    r = requests.post(f"{daemon.root}/_mock/faults", json={"status": 503, "times": 1}, headers=headers).json()
    assert r["status"] == "success" and r["fault"]["status"] == 503 and len(r["fault_id"]) == 24
    requests.delete(f"{daemon.root}/_mock/faults", headers=headers)
    for rule, message in [({}, "a fault needs one of"), ({"bogus": 1, "status": 500}, "unknown fault field 'bogus'"), ({"status": 42}, "status"), ({"status": 100}, "200 to 599"), ({"status": 199}, "200 to 599"),
                          ({"status": 500, "times": 0}, "times"),
                          ({"status": 500, "probability": 2}, "probability"), ({"path": "no-slash", "status": 500}, "path")]:
        r = requests.post(f"{daemon.root}/_mock/faults", json=rule, headers=headers)
        assert r.status_code == 400 and message in r.json()["error"], (rule, r.text)


def test_stream_cut_fault_drops_a_pipeline_stream_after_n_events(sdk, daemon, api_key):
    """`cut_stream_after_events`: the client reads the start event and one token, then the connection breaks
    (no result event); the run itself goes on to completion (SPEC §5: a lost client does not stop it)."""
    pipeline = build_streaming_pipeline(sdk, unique("cut-fault"))
    fault(daemon, api_key, method="POST", path="/v1/pipeline/*/run", cut_stream_after_events=2, times=1)
    chunks = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in pipeline.stream(inputs={"input_0": "Write 30 words."}):
            chunks.append(chunk)
    assert [c.type for c in chunks] == ["start", "stream"], [c.type for c in chunks]
    run_id = chunks[0].run_id
    status = wait_for(lambda: (s := pipeline.run_status(run_id))["status"] != "in_progress" and s,
                      message="the cut run to finish")
    assert status["status"] == "completed", status
    # Used up: the next stream ends with its result.
    assert [c.type for c in pipeline.stream(inputs={"input_0": "Write 3 words."})][-1] == "result"
    with pytest.raises(requests.HTTPError) as bad:
        requests.post(f"{daemon.root}/_mock/faults", json={"cut_stream_after_events": -1},
                      headers={"Authorization": f"Bearer {api_key}"}, timeout=10).raise_for_status()
    assert bad.value.response.status_code == 400
