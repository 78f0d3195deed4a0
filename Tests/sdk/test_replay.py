"""Replay of recorded answers (issue 15 item 3): scripted answers with their own tokens and token offsets, served
from a fixture folder, stream exactly those tokens at those moments (manual clock, --time-scale); --replay-strict
fails what was not recorded, naming it, and still replays what was; bad recorded rules are refused."""
import json
import threading
import time

import pytest
import requests
from vectorshift.agent import Agent
from vectorshift.chatbot import Chatbot

from conftest import point_sdk, wait_for
from test_fixtures import refused_start
from test_session_turns import Client, is_idle

PROMPT = "What is the capital of France?"
TOKENS = ["The", " capital", " of France", " is Pa", "ris."]
OFFSETS = [600, 650, 650, 4000, 8000]  # ms from the LLM node's start; two tokens came together
UNRECORDED = "Tell me a joke."


def node(node_id, node_type, inputs, outputs, name=None):
    return {"id": node_id, "name": name or node_id, "type": node_type, "inputs": inputs, "outputs": outputs}


@pytest.fixture
def recording(tmp_path):
    """A folder as a recording gives it: a pipeline (its LLM node `llm_0` named `writer`), a chatbot and an agent,
    and the recorded answers: one for the pipeline's node by name, one by id with the exact prompt."""
    folder = tmp_path / "recording"
    folder.mkdir()
    (folder / "pipeline_recorded_chat.json").write_text(json.dumps({
        "name": "recorded_chat", "deploy": True, "nodes": {
            "question": node("question", "input", {"input_type": "string"}, ["text"]),
            "llm_0": node("llm_0", "llm", {"provider": "openai", "model": "gpt-4o", "prompt": "{{ question.text }}",
                                           "stream": True}, ["response"], name="writer"),
            "answer": node("answer", "output", {"output_type": "stream<string>", "value": "{{ llm_0.response }}"}, []),
        }}))
    (folder / "objects.json").write_text(json.dumps({
        "chatbots": [{"name": "recorded_bot", "pipeline": "recorded_chat", "input": "question", "output": "answer"}],
        "agents": [{"name": "recorded_agent", "agent_type": "conversational", "instructions": "Answer briefly."}],
    }))
    (folder / "llm_recorded_chat.json").write_text(json.dumps({"llm": [
        {"pipeline_name": "recorded_chat", "node": "writer", "prompt": PROMPT, "tokens": TOKENS, "token_offsets_ms": OFFSETS},
        {"pipeline_name": "recorded_chat", "node": "llm_0", "prompt": "Hi", "response": "Hello there!",
         "tokens": ["Hel", "lo there", "!"], "token_offsets_ms": [10, 20, 30]},
        {"agent_name": "recorded_agent", "prompt": "User: Hi agent", "tokens": ["Hi", " human"], "token_offsets_ms": [5, 9]},
    ]}))
    return folder


def mock(daemon, key, method, path, **kw):
    return requests.request(method, daemon.root + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw)


class Reader:
    """Reads a pipeline's stream in a thread (on the manual clock the test moves time meanwhile): chunks as they come."""

    def __init__(self, pipeline, inputs):
        self.chunks = []
        self.error = None
        self.thread = threading.Thread(target=self._read, args=(pipeline, inputs), daemon=True)
        self.thread.start()

    def _read(self, pipeline, inputs):
        try:
            for chunk in pipeline.stream(inputs=inputs):
                self.chunks.append((time.monotonic(), chunk))
        except Exception as error:  # reported by the test
            self.error = error

    def tokens(self):
        return [c.output_value for _, c in self.chunks if c.type == "stream"]

    def has_tokens(self, n):
        assert self.error is None, self.error
        return len(self.tokens()) >= n

    def result(self):
        self.thread.join(30)
        assert self.error is None and not self.thread.is_alive(), self.error
        return self.chunks[-1][1]


def test_a_recorded_answer_streams_exactly_its_tokens_at_their_offsets_on_the_manual_clock(new_daemon, api_key, recording):
    daemon = new_daemon("--fixtures", str(recording), "--clock", "manual")
    pipeline = point_sdk(daemon, api_key).fetch(name="recorded_chat")
    advance = lambda ms: mock(daemon, api_key, "POST", "/_mock/clock/advance", json={"ms": ms}).raise_for_status()
    reader = Reader(pipeline, {"question": PROMPT})
    wait_for(lambda: reader.chunks, message="the start event")
    start = reader.chunks[0][1]
    assert start.type == "start"
    advance(599)
    events = lambda: mock(daemon, api_key, "GET", f"/_mock/runs/{start.run_id}/events").json()["events"]
    assert "first_token" not in [e["event"] for e in events()], "nothing before the first recorded offset"
    advance(1)  # 600 ms: the first token
    wait_for(lambda: reader.has_tokens(1), message="the first token")
    advance(50)  # 650 ms: the two recorded together
    wait_for(lambda: reader.has_tokens(3), message="tokens 2 and 3")
    assert reader.tokens() == TOKENS[:3], "only the tokens due, with their recorded boundaries"
    advance(3349)  # 3,999 ms
    advance(1)  # 4,000 ms
    wait_for(lambda: reader.has_tokens(4), message="token 4")
    assert reader.tokens() == TOKENS[:4]
    advance(4000)
    result = reader.result()
    assert reader.tokens() == TOKENS, "each recorded token is one stream event"
    assert result.type == "result" and result.status == "completed"
    assert result.outputs["answer"] == "The capital of France is Paris."
    timeline = {e["event"]: e["clock_ms"] for e in events() if e.get("node") == "llm_0"}
    assert timeline["first_token"] - timeline["node_started"] == 600, timeline


def test_recorded_offsets_are_scaled_by_the_time_scale(new_daemon, api_key, recording):
    daemon = new_daemon("--fixtures", str(recording), "--time-scale", "0.25")  # 8,000 ms recorded: 2 s
    pipeline = point_sdk(daemon, api_key).fetch(name="recorded_chat")
    reader = Reader(pipeline, {"question": PROMPT})
    result = reader.result()
    assert result.status == "completed" and reader.tokens() == TOKENS
    started = reader.chunks[0][0]
    arrived = [at - started for at, c in reader.chunks if c.type == "stream"]
    for offset, at in zip(OFFSETS, arrived):
        expected = offset * 0.25 / 1000
        assert expected - 0.2 <= at <= expected + 1.0, f"token due at {expected:.3f} s came at {at:.3f} s: {arrived}"
    # The simulator's pace (400 ms, then 40 tokens/s, scaled) would have sent all five within 0.2 s.
    assert arrived[-1] - arrived[0] >= (OFFSETS[-1] - OFFSETS[0]) * 0.25 / 1000 - 0.2
    unrecorded = pipeline.run(inputs={"question": UNRECORDED})
    assert unrecorded["outputs"]["answer"], "without --replay-strict an unrecorded prompt is simulated"


def test_replay_strict_fails_an_unrecorded_prompt_naming_it_and_replays_a_recorded_one(new_daemon, api_key, recording):
    daemon = new_daemon("--fixtures", str(recording), "--replay-strict", "--time-scale", "0")
    pipeline = point_sdk(daemon, api_key).fetch(name="recorded_chat")
    expected = f'no recorded answer for pipeline "recorded_chat" node "llm_0" prompt "{UNRECORDED}"'

    assert pipeline.run(inputs={"question": PROMPT})["outputs"]["answer"] == "The capital of France is Paris."
    assert [c.output_value for c in pipeline.stream(inputs={"question": "Hi"}) if c.type == "stream"] == ["Hel", "lo there", "!"]

    background = pipeline.start(inputs={"question": UNRECORDED})
    status = wait_for(lambda: (s := background.run_status())["status"] != "in_progress" and s, message="the run's end")
    assert status["status"] == "failed" and status["error"] == expected
    assert status["nodes"]["llm_0"] == "failed"
    streamed = list(pipeline.stream(inputs={"question": UNRECORDED}))
    assert [c.type for c in streamed] == ["start", "result"], "no token is made up"
    assert streamed[-1].status == "failed" and streamed[-1].error == expected

    # A chatbot turn and a session turn on the recorded pipeline fail alike; a recorded prompt is replayed there too.
    bot = Chatbot.fetch(name="recorded_bot")
    turn = mock(daemon, api_key, "POST", f"/v1/chatbot/{bot.id}/run", json={"text": UNRECORDED})
    assert turn.status_code == 500 and expected in turn.json()["error"], turn.text
    client = Client(daemon, api_key)
    session_id = client.create(bot.id)
    client.send({"type": "post_message", "session_id": session_id, "content": UNRECORDED})
    frames = client.until(is_idle)
    error = frames[-2]["message"]["content"]
    assert error["type"] == "error_message" and expected in error["error"], frames[-2]
    client.send({"type": "post_message", "session_id": session_id, "content": PROMPT})
    frames = client.until(is_idle)
    assert "".join(f["value"] for f in frames if f["type"] == "message_delta") == "The capital of France is Paris."

    # A conversational agent's session turn: its prompt is the history and the user's text (node `llm`).
    agent = Agent.fetch(name="recorded_agent")
    client.send({"type": "create_session", "object_type": "agent", "object_id": agent.id})
    agent_session = client.recv()["session_id"]
    client.send({"type": "post_message", "session_id": agent_session, "content": "Hi agent"})
    frames = client.until(is_idle)
    assert "".join(f["value"] for f in frames if f["type"] == "message_delta") == "Hi human"
    client.send({"type": "post_message", "session_id": agent_session, "content": UNRECORDED})
    frames = client.until(is_idle)
    error = frames[-2]["message"]["content"]
    assert error["type"] == "error_message", frames[-2]
    assert error["error"] == ('no recorded answer for agent "recorded_agent" node "llm" prompt '
                              f'"User: Hi agent\\nAssistant: Hi human\\nUser: {UNRECORDED}"')
    client.close()


@pytest.mark.parametrize("rule, error", [
    ({"tokens": "Hello"}, "tokens must be"),
    ({"tokens": ["Hel", 5]}, "tokens[1] must be a string"),
    ({"tokens": ["Hel", ""]}, "tokens[1] is empty"),
    ({"response": "Hello!", "tokens": ["Hel", "lo"]}, "tokens do not concatenate to response"),
    ({"response": "a b", "token_offsets_ms": [1, 2]}, "token_offsets_ms needs tokens"),
    ({"tokens": ["a", "b"], "token_offsets_ms": [1]}, "token_offsets_ms has 1 offset(s) for 2 token(s)"),
    ({"tokens": ["a", "b"], "token_offsets_ms": [5, 4]}, "token_offsets_ms[1] (4.0) is less than token_offsets_ms[0]"),
    ({"tokens": ["a", "b"], "token_offsets_ms": [1, "2"]}, "token_offsets_ms[1] must be a number"),
    ({"tokens": ["a"], "token_offsets_ms": [1], "ttft_ms": 100}, "ttft_ms cannot be combined with token_offsets_ms"),
    ({"node": "llm", "node_id": "llm", "response": "x"}, "node and node_id cannot both be given"),
    ({"prompt": "a", "prompt_pattern": "a", "response": "x"}, "prompt and prompt_pattern cannot both be given"),
    ({"prompt": 5, "response": "x"}, "prompt must be a string"),
])
def test_bad_recorded_rules_are_400_naming_the_field(daemon, api_key, rule, error):
    r = mock(daemon, api_key, "POST", "/_mock/llm", json=rule)
    assert r.status_code == 400 and r.json()["status"] == "failed" and r.json()["error"].startswith(error), r.text
    assert mock(daemon, api_key, "GET", "/_mock/llm").json()["scripts"] == [], "nothing was added"


def test_a_recorded_rule_is_listed_as_given(daemon, api_key):
    rule = {"pipeline_name": "p", "node": "writer", "prompt": PROMPT, "tokens": TOKENS, "token_offsets_ms": OFFSETS}
    added = mock(daemon, api_key, "POST", "/_mock/llm", json=rule).json()
    assert added["status"] == "success"
    assert mock(daemon, api_key, "GET", "/_mock/llm").json()["scripts"] == [dict(rule, script_id=added["script_id"])]


def test_a_bad_recorded_rule_in_a_fixture_stops_the_start_naming_file_and_field(tmp_path):
    done = refused_start(tmp_path, "llm_recorded.json",
                         json.dumps({"llm": [{"tokens": ["a", "b"]}, {"tokens": ["a", "b"], "token_offsets_ms": [3, 1]}]}))
    assert "llm_recorded.json: llm[1]: token_offsets_ms[1] (1.0) is less than token_offsets_ms[0] (3.0)" in done.stderr, done.stderr
