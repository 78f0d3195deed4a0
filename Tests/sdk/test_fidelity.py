"""The fidelity report of record mode (issue 15 item 4): while `serve --record URL --record-dir DIR` relays an
exchange, it also answers the request itself (a shadow namespace, with the ids the upstream minted mapped to its
own) and writes the comparison of shapes per endpoint into DIR (`fidelity-report.json`, `fidelity-report.md`).
The upstream here is a second MockShift daemon, so every answer has the same shape unless a fault rule alters one."""
import json
import signal
import uuid

import pytest
import requests

from conftest import point_sdk, unique, wait_for

SECRET = "sk-fidelity-" + uuid.uuid4().hex  # an OpenAI-shaped key in an LLM node's api_key

RUN = "POST /v1/pipeline/:id/run"
SESSION_ENDPOINTS = {
    "POST /v1/pipeline",
    "POST /v1/update/pipeline/:id",
    "GET /v1/pipeline",
    RUN,
    RUN + " (stream)",
    "GET /v1/pipeline/:id/run/status/:task",
}


def headers(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def pair(new_daemon, tmp_path):
    """An upstream daemon whose runs take a little time, and a recording daemon in front of it whose own (shadow)
    runs are instant."""
    upstream = new_daemon("--ttft-ms", "100", "--tokens-per-second", "100")
    folder = tmp_path / "recording"
    recorder = new_daemon("--record", upstream.root, "--record-dir", str(folder), "--time-scale", "0")
    return upstream, recorder, folder, f"fid-{uuid.uuid4().hex[:8]}"


def report(folder):
    path = folder / "fidelity-report.json"
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except ValueError:
        return None


def endpoints(folder):
    return {e["endpoint"]: e for e in (report(folder) or {}).get("endpoints", [])}


def compared(folder, names):
    """True once each endpoint in `names` has at least one compared exchange in the report."""
    seen = endpoints(folder)
    return all(seen.get(name, {}).get("exchanges", 0) > 0 for name in names)


def recording_session(recorder, key):
    """Through the SDK: create a pipeline (an LLM node holding an API key), run it synchronously and streamed,
    fetch it, start a background run and poll it to its end."""
    Pipeline = point_sdk(recorder, key)
    name = unique("fidelity")
    pipeline = Pipeline.new(name=name)
    question = pipeline.add(name="input_0", id="input_0").input(input_type="string")
    llm = pipeline.add(name="llm", id="llm").llm(provider="openai", model="gpt-4o", prompt=question.text, stream=True,
                                                 use_personal_api_key=True, api_key=SECRET)
    pipeline.add(name="output_0", id="output_0").output(output_type="stream<string>", value=llm.response)
    pipeline.save(deploy=True)
    assert pipeline.run(inputs={"input_0": "Say hello in 10 words."})["status"] == "success"
    chunks = list(pipeline.stream(inputs={"input_0": "Tell me about owls in 20 words."}))
    assert chunks[-1].type == "result" and chunks[-1].status == "completed"
    fetched = Pipeline.fetch(id=pipeline.id)
    handler = fetched.start(inputs={"input_0": "Write 30 words in the background."})
    assert handler.result(poll_interval=0.05, timeout=30)["status"] == "completed"
    return name


def test_a_recording_session_through_the_sdk_gives_a_report_of_its_endpoints_with_no_difference(pair):
    upstream, recorder, folder, key = pair
    recording_session(recorder, key)
    # Written while the daemon runs, as exchanges come (not only at the stop).
    wait_for(lambda: compared(folder, SESSION_ENDPOINTS), timeout=20, message=f"a report comparing {SESSION_ENDPOINTS}")
    seen = endpoints(folder)
    for name in SESSION_ENDPOINTS:
        assert seen[name]["differences"] == [], (name, seen[name])
        assert seen[name]["exchanges_differing"] == 0, (name, seen[name])
    whole = report(folder)
    assert whole["format"] == "mockshift-fidelity-report/1" and whole["endpoints_differing"] == 0, whole
    # Two runs started by a POST: the synchronous one and the background one (its status polled to the end).
    assert seen[RUN]["exchanges"] == 2 and seen[RUN + " (stream)"]["exchanges"] == 1, seen
    # The Markdown file is written just after the JSON one: wait for it to catch up.
    markdown = wait_for(lambda: (lambda text: f"`{RUN} (stream)` (1)" in text and text)(
        (folder / "fidelity-report.md").read_text()), message="the Markdown summary")
    assert "0 endpoint(s) answered with another shape than the real service" in markdown, markdown
    # The report holds shapes, never values: the key in the LLM node is in neither file.
    for name in ("fidelity-report.json", "fidelity-report.md"):
        assert SECRET not in (folder / name).read_text(), name

    # A clean stop writes the report once more; what was compared stays.
    before = whole["exchanges"]
    recorder.stop(signal.SIGTERM)
    assert report(folder)["exchanges"] >= before


def test_an_upstream_answer_of_another_shape_is_flagged_on_its_endpoint_alone(pair):
    upstream, recorder, folder, key = pair
    recording_session(recorder, key)
    listing = requests.get(f"{upstream.url}/pipelines", headers=headers(key), timeout=10)
    assert listing.status_code == 200
    real = listing.json()
    listed = next(k for k, v in real.items() if isinstance(v, list))  # object_ids (objects with verbose)
    # The real service "changes": a list becomes a number and a new key appears, then the endpoint fails with 503.
    altered = dict(real, **{listed: 7, "surprise": {"nested": True}})
    fault = {"method": "GET", "path": "/v1/pipelines", "status": 200, "body": altered, "times": 1}
    assert requests.post(f"{upstream.root}/_mock/faults", json=fault, headers=headers(key), timeout=10).status_code == 200
    relayed = requests.get(f"{recorder.url}/pipelines", headers=headers(key), timeout=10)
    assert relayed.status_code == 200 and relayed.json() == altered, "the client gets the upstream's answer unchanged"
    fault = {"method": "GET", "path": "/v1/pipelines", "status": 503, "times": 1}
    assert requests.post(f"{upstream.root}/_mock/faults", json=fault, headers=headers(key), timeout=10).status_code == 200
    assert requests.get(f"{recorder.url}/pipelines", headers=headers(key), timeout=10).status_code == 503

    wait_for(lambda: endpoints(folder).get("GET /v1/pipelines", {}).get("exchanges") == 2
             and compared(folder, SESSION_ENDPOINTS), timeout=20, message="the two listings compared")
    whole = report(folder)
    flagged = [e for e in whole["endpoints"] if e["differences"]]
    assert [e["endpoint"] for e in flagged] == ["GET /v1/pipelines"], whole
    assert whole["endpoints_differing"] == 1
    listing = flagged[0]
    assert listing["exchanges_differing"] == 2
    found = {(d["kind"], d["path"], d["real"], d["mock"]) for d in listing["differences"]}
    assert found == {
        ("type", f"$.{listed}", "number", "array"),
        ("missing", "$.surprise", "object", "absent"),
        ("status", "status", "503", "200"),
    }, listing["differences"]
    markdown = wait_for(lambda: (lambda text: "## `GET /v1/pipelines`" in text and text)(
        (folder / "fidelity-report.md").read_text()), message="the Markdown summary")
    assert "| $.surprise: missing in mock (object) | 1 |" in markdown, markdown
    for name in ("fidelity-report.json", "fidelity-report.md"):
        assert SECRET not in (folder / name).read_text(), name


def test_requests_naming_objects_made_before_the_recording_are_not_compared_and_not_differences(pair):
    upstream, recorder, folder, key = pair
    # Made on the upstream directly: the recorder's shadow never saw it created.
    Pipeline = point_sdk(upstream, key)
    pipeline = Pipeline.new(name=unique("older"))
    assert requests.get(f"{recorder.url}/pipeline", params={"id": pipeline.id}, headers=headers(key), timeout=10).status_code == 200
    run = requests.post(f"{recorder.url}/pipeline/{pipeline.id}/run", json={"inputs": {}, "background": True},
                        headers=headers(key), timeout=10)
    assert run.status_code in (200, 400), run.text
    wait_for(lambda: endpoints(folder).get("GET /v1/pipeline", {}).get("not_compared") == 1
             and endpoints(folder).get(RUN, {}).get("not_compared") == 1, timeout=20, message="two exchanges not compared")
    seen = endpoints(folder)
    for name in ("GET /v1/pipeline", RUN):
        assert seen[name]["exchanges"] == 0 and seen[name]["differences"] == [], seen[name]
        assert [r["count"] for r in seen[name]["not_compared_reasons"]] == [1], seen[name]
        assert "does not know" in seen[name]["not_compared_reasons"][0]["reason"]
    assert report(folder)["endpoints_differing"] == 0
    wait_for(lambda: "Not compared" in (folder / "fidelity-report.md").read_text(), message="the Markdown summary")


def test_a_record_dir_with_its_report_still_loads_as_fixtures(pair, new_daemon):
    upstream, recorder, folder, key = pair
    name = recording_session(recorder, key)
    wait_for(lambda: compared(folder, SESSION_ENDPOINTS) and (folder / "fidelity-report.md").exists(), timeout=20,
             message="the report written")
    served = new_daemon("--fixtures", str(folder))
    assert point_sdk(served, key).fetch(name=name).id
