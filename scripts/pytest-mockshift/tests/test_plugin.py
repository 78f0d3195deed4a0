"""The plugin's own tests, run with `-n 4` by scripts/test: per-test keys, helpers, manual clock, and the
example tests of both READMEs (the repository's and the plugin's) extracted at test time and run under pytest-xdist."""
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

from vectorshift.pipeline import Pipeline

REPO = pathlib.Path(__file__).resolve().parents[3]


def build(name):
    pipeline = Pipeline.new(name=name)
    inp = pipeline.add(name="question", id="question").input(input_type="string")
    llm = pipeline.add(name="llm", id="llm").llm(provider="openai", model="gpt-4o", prompt=inp.text, stream=True)
    pipeline.add(name="answer", id="answer").output(output_type="stream<string>", value=llm.response)
    pipeline.save(deploy=True)
    return pipeline


def test_each_test_starts_with_an_empty_workspace_a(mockshift):
    assert Pipeline.list() == []
    build("shared-name")
    assert len(Pipeline.list()) == 1


def test_each_test_starts_with_an_empty_workspace_b(mockshift):
    assert Pipeline.list() == []
    build("shared-name")
    assert len(Pipeline.list()) == 1


def test_helpers_show_this_tests_runs_and_requests(mockshift):
    pipeline = build("helpers")
    run_id = pipeline.run(inputs={"question": "Write 3 words."})["run_id"]
    assert [r["run_id"] for r in mockshift.runs()] == [run_id]
    assert any(e["path"] == f"/v1/pipeline/{pipeline.id}/run" for e in mockshift.requests())
    assert mockshift.stats()["status"] == "ok"


def test_manual_clock_is_exact(mockshift_manual):
    pipeline = build("clock")
    handler = pipeline.start(inputs={"question": "Write 100 words."})
    mockshift_manual.advance(400 + 7 * 25)  # time to first token, then 7 tokens at 40 tokens/s
    handler.terminate()
    assert handler.run_status()["output_tokens"] == 7
    events = [e["event"] for e in mockshift_manual.events(handler.task_id)]
    assert events[0] == "created" and events[-1] == "terminated"


def test_readme_examples_pass_under_xdist(tmp_path):
    """The plugin examples of the repository README and of the plugin's README, each a test file, in one run."""
    expected = 0
    for n, readme in enumerate([REPO / "README.md", REPO / "scripts" / "pytest-mockshift" / "README.md"]):
        blocks = re.findall(r"<!-- plugin-example -->\s*```python\n(.*?)```", readme.read_text(), re.S)
        assert blocks, f"{readme} has no plugin example block"
        for m, code in enumerate(blocks):
            (tmp_path / f"test_readme_example_{n}_{m}.py").write_text(code)
            expected += len(re.findall(r"^def test_", code, re.M))
    env = dict(os.environ, MOCKSHIFT_BIN=os.environ.get("MOCKSHIFT_BIN", str(REPO / ".build" / "debug" / "mockshift")))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "4", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"\b{expected} passed\b", done.stdout), done.stdout


def test_fault_and_script_llm_helpers(mockshift):
    import pytest
    from vectorshift.request import InternalServerError

    pipeline = build("helpers-2")
    mockshift.script_llm(prompt_pattern="weather", response="It is sunny today.")
    assert pipeline.run(inputs={"question": "weather?"})["outputs"]["answer"] == "It is sunny today."
    mockshift.fault(method="POST", path="/v1/pipeline/*/run", status=503, times=1)
    with pytest.raises(InternalServerError):
        pipeline.run(inputs={"question": "weather?"})
    assert pipeline.run(inputs={"question": "weather?"})["status"] == "success"


FIXTURE_TESTS = '''
from vectorshift.pipeline import Pipeline

ALL = ["streaming_chat", "support_chat", "terminate_example", "two_llm_chain"]


def names():
    return sorted(p.name for p in Pipeline.list(verbose=True))


def test_deletes_one_then_reset_brings_it_back(mockshift):
    assert names() == ALL
    Pipeline.fetch(name="two_llm_chain").delete()
    assert names() == ["streaming_chat", "support_chat", "terminate_example"]
    mockshift.reset()
    assert names() == ALL


def test_deletes_one(mockshift):
    Pipeline.fetch(name="terminate_example").delete()
    assert names() == ["streaming_chat", "support_chat", "two_llm_chain"]


def test_still_has_every_fixture(mockshift):
    assert names() == ALL
'''


def test_per_test_keys_start_from_the_daemons_fixtures(tmp_path):
    (tmp_path / "test_with_fixtures.py").write_text(FIXTURE_TESTS)
    env = dict(os.environ, MOCKSHIFT_BIN=os.environ.get("MOCKSHIFT_BIN", str(REPO / ".build" / "debug" / "mockshift")))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "--mockshift-args", "--fixtures " + shlex.quote(str(REPO / "fixtures")), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b3 passed\b", done.stdout), done.stdout


def test_conversation_helpers_show_this_tests_chatbot_turns(mockshift_manual):
    from vectorshift.chatbot import Chatbot

    bot = Chatbot.new(name="helpers-bot", description="", pipeline_id=build("helpers-chat").id)
    lines = bot.run("Write 100 words.", stream=True)
    first = next(line for line in lines if line.startswith(b"data: "))  # the start event: the run exists
    run_id = first.split(b'"run_id":"')[1].split(b'"')[0].decode()
    mockshift_manual.advance(400 + 3 * 25)  # three tokens
    Pipeline.fetch(id=bot.pipeline_id).terminate(run_id=run_id)
    list(lines)
    [conversation] = mockshift_manual.conversations(chatbot_id=bot.id)
    assert mockshift_manual.conversation(conversation["id"]) == conversation
    [turn] = conversation["turns"]
    assert (turn["run_id"], turn["outcome"], turn["user_text"]) == (run_id, "stopped", "Write 100 words.")
    assert len(turn["answer"].split()) == 3
    assert mockshift_manual.conversations(chatbot_id="0" * 24) == []


def test_session_helpers_show_this_tests_sessions_and_their_frames(mockshift):
    import asyncio

    from vectorshift.chatbot import Chatbot

    bot = Chatbot.new(name="helpers-session-bot", description="", pipeline_id=build("helpers-session").id)

    async def open_and_terminate():
        session = await bot.create_session()
        await session.connect()
        session_id = session.session_id
        await session.terminate()
        return session_id

    session_id = asyncio.run(asyncio.wait_for(open_and_terminate(), 60))
    # SDK 0.1.15 drops its socket without waiting for the server's Close: the terminate may be stored a moment
    # after terminate() returned.
    deadline = time.monotonic() + 10
    while mockshift.sessions()[0]["status"] != "terminated" and time.monotonic() < deadline:
        time.sleep(0.02)
    [listed] = mockshift.sessions()
    assert (listed["id"], listed["owner_id"], listed["status"]) == (session_id, bot.id, "terminated")
    assert mockshift.sessions(status="open") == [] and mockshift.sessions(owner_id=bot.id) == [listed]
    shown = mockshift.session(session_id)
    assert shown["status"] == "terminated" and shown["messages"] == [] and shown["turns"] == []
    frames = mockshift.requests(kind="ws_frame", session_id=session_id)
    assert ("in", "terminate_session") in [(f["direction"], f["type"]) for f in frames]
    assert all(e["kind"] == "request" for e in mockshift.requests(kind="request"))
