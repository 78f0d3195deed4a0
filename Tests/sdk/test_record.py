"""`serve --record URL --record-dir DIR` (issue 15 items 2 and 5): a daemon that forwards every /v1 request to an
upstream (here a second MockShift daemon) with the caller's key, relays the answers (streams as they arrive,
terminate forwarded), and keeps the objects and the runs' answers it saw as fixture files."""
import json
import shutil
import time
import uuid

import pytest
import requests
from vectorshift.agent import Agent, IoConfig, LlmInfo
from vectorshift.chatbot import Chatbot
from vectorshift.request import InternalServerError, NotFoundError

from conftest import build_streaming_pipeline, point_sdk, unique, wait_for

SECRET = "sk-record-" + uuid.uuid4().hex


def headers(key):
    return {"Authorization": f"Bearer {key}"}


def script(daemon, key, **rule):
    r = requests.post(f"{daemon.root}/_mock/llm", json=rule, headers=headers(key), timeout=10)
    assert r.status_code == 200, r.text


def recorded_rules(folder, pipeline_name):
    path = folder / f"llm-{pipeline_name}.json"
    return json.loads(path.read_text())["llm"] if path.exists() else []


@pytest.fixture
def pair(new_daemon, tmp_path):
    """An upstream daemon (LLM: 100 ms to first token, 20 tokens/s) and a recording daemon in front of it."""
    upstream = new_daemon("--ttft-ms", "100", "--tokens-per-second", "20")
    folder = tmp_path / "recording"
    recorder = new_daemon("--record", upstream.root, "--record-dir", str(folder))
    return upstream, recorder, folder, f"rec-{uuid.uuid4().hex[:8]}"


def test_the_sdk_through_the_recorder_gets_the_upstreams_answers_and_streams_as_they_come(pair, new_daemon, tmp_path):
    upstream, recorder, folder, key = pair
    Pipeline = point_sdk(recorder, key)
    name = unique("relayed")
    pipeline = build_streaming_pipeline(Pipeline, name)  # created, saved and deployed on the upstream
    assert [p.name for p in point_sdk(upstream, key).list(verbose=True)] == [name]
    Pipeline = point_sdk(recorder, key)
    with pytest.raises(NotFoundError):
        Pipeline.fetch(name="no-such-pipeline")
    script(upstream, key, pipeline_name=name, prompt_pattern="owls", response="Owls fly at night without a sound.",
           ttft_ms=300, tokens_per_second=10)
    started, arrivals, chunks = time.monotonic(), [], []
    for chunk in pipeline.stream(inputs={"input_0": "Tell me about owls."}):
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)
    tokens = [(c.output_value, t) for c, t in zip(chunks, arrivals) if c.type == "stream"]
    assert "".join(text for text, _ in tokens) == "Owls fly at night without a sound."
    assert chunks[0].type == "start" and chunks[-1].type == "result" and chunks[-1].status == "completed"
    # Seven tokens at 10 tokens/s: the first came at least 0.3 s before the last (relayed as they came, not at the end).
    assert tokens[-1][1] - tokens[0][1] >= 0.3, arrivals
    assert tokens[0][1] >= 0.25, "the first token came after the upstream's time to first token"
    sync = pipeline.run(inputs={"input_0": "Say hello in 10 words."})
    assert sync["outputs"] == point_sdk(upstream, key).fetch(name=name).run(inputs={"input_0": "Say hello in 10 words."})["outputs"]
    Pipeline = point_sdk(recorder, key)
    handler = Pipeline.fetch(name=name).start(inputs={"input_0": "Write 10 words in the background."})
    background = handler.result(poll_interval=0.1, timeout=30)

    # The recording: the pipeline, and one scripted answer per run, keyed by the prompt as MockShift resolves it.
    wait_for(lambda: len(recorded_rules(folder, name)) == 3, timeout=10, message="three recorded answers")
    rules = {rule["prompt_pattern"]: rule for rule in recorded_rules(folder, name)}
    streamed = rules["^Tell me about owls\\.$"]
    assert streamed["pipeline_name"] == name and streamed["node_id"] == "llm"
    assert streamed["response"] == "Owls fly at night without a sound."
    assert streamed["tokens"] == [text for text, _ in tokens]
    offsets = streamed["token_offsets_ms"]
    assert len(offsets) == 7 and offsets == sorted(offsets) and offsets[0] >= 250, offsets
    assert "ttft_ms" not in streamed and "tokens_per_second" not in streamed, "the offsets are the timing"
    assert rules["^Say hello in 10 words\\.$"]["response"] == sync["outputs"]["output_0"]
    assert "tokens" not in rules["^Say hello in 10 words\\.$"], "a synchronous run shows no token timing"
    assert rules["^Write 10 words in the background\\.$"]["response"] == background["result"]["output_0"]
    assert json.loads((folder / f"pipeline-{name}.json").read_text())["versions"] == [{"version": "1.0.0"}]

    # The recorded pipeline and answer replay: a fresh daemon with the pipeline file and the rule answers what the
    # upstream answered, token by token, at the recorded offsets (issue 15 item 6: same text and timing within a
    # tolerance: 1 s late at most, 0.25 s early at most: the start event goes out once the run is stored).
    fixtures = tmp_path / "replay"
    fixtures.mkdir()
    shutil.copy(folder / f"pipeline-{name}.json", fixtures)
    replay = new_daemon("--fixtures", str(fixtures))
    script(replay, key, **streamed)
    replayed = point_sdk(replay, key).fetch(name=name)
    began, replayed_tokens = None, []
    for chunk in replayed.stream(inputs={"input_0": "Tell me about owls."}):
        if chunk.type == "start":
            began = time.monotonic()
        elif chunk.type == "stream":
            replayed_tokens.append((chunk.output_value, (time.monotonic() - began) * 1000))
    assert [text for text, _ in replayed_tokens] == streamed["tokens"]
    for (_, at), recorded in zip(replayed_tokens, offsets):
        assert recorded - 250 <= at <= recorded + 1000, (replayed_tokens, offsets)


def test_a_stop_pressed_during_a_recorded_stream_stops_the_upstream_run(pair):
    upstream, recorder, folder, key = pair
    name = unique("stopped")
    pipeline = build_streaming_pipeline(point_sdk(recorder, key), name)
    tokens, final = [], None
    for chunk in pipeline.stream(inputs={"input_0": "Write 300 words about robots."}):
        if chunk.type == "stream":
            tokens.append(chunk.output_value)
            if len(tokens) == 3:
                pipeline.terminate(run_id=chunk.run_id)  # through the recorder
        elif chunk.type == "result":
            final = chunk
    assert final.status == "terminated" and len(tokens) < 20
    runs = requests.get(f"{upstream.root}/_mock/runs", headers=headers(key), timeout=10).json()["runs"]
    assert [(r["run_id"], r["status"]) for r in runs] == [(final.run_id, "terminated")]
    wait_for(lambda: (folder / f"pipeline-{name}.json").exists(), message="the pipeline recorded")
    time.sleep(0.3)  # a terminated run must add nothing: give the recorder's queue the time it would need
    assert recorded_rules(folder, name) == []


def test_an_upstream_that_fails_mid_stream_gives_a_clear_error_and_the_recording_keeps_what_it_had(pair, new_daemon):
    upstream, recorder, folder, key = pair
    name = unique("cut")
    pipeline = build_streaming_pipeline(point_sdk(recorder, key), name)
    list(pipeline.stream(inputs={"input_0": "Write 10 words about owls."}))
    wait_for(lambda: len(recorded_rules(folder, name)) == 1, message="the first answer recorded")
    before = (folder / f"llm-{name}.json").read_bytes()
    fault = {"path": "/v1/pipeline/*/run", "cut_stream_after_events": 3, "times": 1}
    assert requests.post(f"{upstream.root}/_mock/faults", json=fault, headers=headers(key)).status_code == 200
    chunks = list(pipeline.stream(inputs={"input_0": "Second question, cut short."}))
    assert [c.type for c in chunks] == ["start", "stream", "stream", "result"], chunks
    assert chunks[-1].status == "failed" and "broke off the stream" in chunks[-1].error, chunks[-1]
    assert chunks[-1].run_id == chunks[0].run_id
    time.sleep(0.3)  # the failed run must add nothing: give the recorder's queue the time it would need
    assert (folder / f"llm-{name}.json").read_bytes() == before
    assert (folder / f"pipeline-{name}.json").exists()

    # No upstream at all: a clear 502 in the API's error format.
    nowhere = new_daemon("--record", "http://127.0.0.1:9", "--record-dir", str(folder.parent / "nowhere"))
    Pipeline = point_sdk(nowhere, key)
    with pytest.raises(InternalServerError) as raised:
        Pipeline.new(name="unreachable")
    assert raised.value.status_code == 502 and "upstream http://127.0.0.1:9/v1 gave no answer" in str(raised.value)


def test_objects_seen_through_the_recorder_are_fixture_files_without_secrets(pair, new_daemon):
    upstream, recorder, folder, key = pair
    Pipeline = point_sdk(recorder, key)
    pipeline = Pipeline.new(name="with_key")
    question = pipeline.add(name="question", id="question").input(input_type="string")
    llm = pipeline.add(name="llm", id="llm").llm(provider="openai", model="gpt-4o", prompt=question.text,
                                                 use_personal_api_key=True, api_key=SECRET)
    pipeline.add(name="answer", id="answer").output(output_type="string", value=llm.response)
    pipeline.save(deploy=True)
    bot = Chatbot.new(name="rec_bot", description="", pipeline_id=pipeline.id)
    Agent.new(name="rec_agent", llm_info=LlmInfo(provider="openai", model_id="gpt-4o"), instructions="Summarise [[inputs.t]].",
              inputs={"t": IoConfig(io_type="string")}, outputs={"s": IoConfig(io_type="string")})
    expected = {"pipeline-with_key.json", "chatbot-rec_bot.json", "agent-rec_agent.json"}
    wait_for(lambda: expected <= {p.name for p in folder.iterdir()} if folder.exists() else False, timeout=10,
             message="the three objects recorded")
    wait_for(lambda: b"1.0.0" in (folder / "pipeline-with_key.json").read_bytes(), message="the deploy recorded")
    for path in folder.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path.name
    assert any("record: redacted pipeline 'with_key' node 'llm' field 'api_key'" in line for line in recorder.stderr_lines)
    served = new_daemon("--fixtures", str(folder))
    point_sdk(served, key)
    assert Chatbot.fetch(name="rec_bot").pipeline_id == point_sdk(served, key).fetch(name="with_key").id
    assert Agent.fetch(name="rec_agent").name == "rec_agent"
    point_sdk(recorder, key)
    bot.delete()
    wait_for(lambda: not (folder / "chatbot-rec_bot.json").exists(), message="the deleted chatbot's file removed")


def test_the_readme_record_and_replay_example_runs_as_written(new_daemon, tmp_path):
    """README "Snapshot, record, replay": the record-example block, run by bash against a local upstream MockShift."""
    import os
    import pathlib
    import re
    import socket
    import subprocess
    import sys
    from conftest import BIN, REPO
    blocks = re.findall(r"<!-- record-example -->\s*```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "README.md must hold exactly one record example block"
    upstream = new_daemon("--time-scale", "0")
    key = f"rec-{uuid.uuid4().hex[:8]}"
    name = unique("orders")
    build_streaming_pipeline(point_sdk(upstream, key), name)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "mockshift").symlink_to(BIN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    venv_bin = pathlib.Path(sys.executable).parent  # python3 with the SDK
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{venv_bin}:{os.environ['PATH']}", UPSTREAM=upstream.root, PORT=str(port),
               PIPELINE=name, VECTORSHIFT_API_KEY=key)
    env.pop("VECTORSHIFT_BASE_URL", None)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"the example failed:\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "replayed what was recorded" in done.stdout, done.stdout
    recorded = (tmp_path / "recorded.txt").read_text()
    assert "Where is my order" not in recorded and recorded.strip(), recorded  # the upstream's simulated answer
    assert (tmp_path / "recording" / f"llm-{name}.json").exists() and (tmp_path / "recording" / "fidelity-report.json").exists()
