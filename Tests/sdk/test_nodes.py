"""Basic nodes computed for real through the SDK (API.md §7, SPEC §6; issue 6, part): condition with gating,
merge, text, a terminable wait node, and --strict-nodes."""
import pytest
from vectorshift.pipeline.nodes import Clause, ConditionGroup, Operator
from vectorshift.request import InternalServerError

from conftest import point_sdk, unique


def grading_pipeline(Pipeline, name):
    p = Pipeline.new(name=name)
    score = p.add(name="score", id="score").input(input_type="int32")
    cond = p.add(name="cond", id="cond").condition(conditions=[
        ConditionGroup([Clause(Operator.GREATER_THAN_EQUAL, score.value, 90)]),
        ConditionGroup([Clause(Operator.GREATER_THAN_EQUAL, score.value, 50)]),
    ])
    a = p.add(name="a", id="a").text(text="grade A for {{ score.value }}", dependencies=[cond.path_0])
    b = p.add(name="b", id="b").text(text="grade B", dependencies=[cond.path_1])
    c = p.add(name="c", id="c").text(text="grade C", dependencies=[cond.path_else])
    m = p.add(name="m", id="m").merge(function="first", type="string", fields=[a.text, b.text, c.text])
    p.add(name="grade", id="grade").output(output_type="string", value=m.output)
    p.add(name="only_a", id="only_a").output(output_type="string", value=a.text)
    p.save(deploy=True)
    return p


def test_condition_takes_each_path_once_and_skips_the_others(sdk):
    pipeline = grading_pipeline(sdk, unique("grading"))
    cases = [(95, "grade A for 95", "a"), (60, "grade B", "b"), (10, "grade C", "c")]
    for score, grade, taken in cases:
        answer = pipeline.run(inputs={"score": score})
        assert answer["outputs"]["grade"] == grade, (score, answer)
        assert ("only_a" in answer["outputs"]) == (taken == "a"), "an output on an untaken path is left out"
        nodes = pipeline.run_status(answer["run_id"])["nodes"]
        assert [n for n in "abc" if nodes[n] == "completed"] == [taken]
        assert all(nodes[n] == "skipped" for n in "abc" if n != taken)
        assert nodes["m"] == "completed"


def test_wait_node_waits_and_is_terminable(new_daemon, api_key):
    daemon = new_daemon("--clock", "manual")
    Pipeline = point_sdk(daemon, api_key)
    p = Pipeline.new(name=unique("wait"))
    w = p.add(name="w", id="w").wait_node(wait_time=5, wait_time_type="seconds")
    p.add(name="out", id="out").output(output_type="string", value=w.status)
    p.save(deploy=True)
    import requests
    advance = lambda ms: requests.post(f"{daemon.root}/_mock/clock/advance", json={"ms": ms},
                                       headers={"Authorization": f"Bearer {api_key}"})
    first = p.start(inputs={})
    advance(4999)
    assert first.run_status()["nodes"]["w"] == "running"
    advance(1)
    assert first.run_status()["result"] == {"out": "completed"}
    second = p.start(inputs={})
    advance(1000)
    second.terminate()
    advance(10_000)
    status = second.run_status()
    assert status["status"] == "terminated" and status["nodes"]["w"] == "terminated"


def test_strict_nodes_fails_a_run_naming_the_unsupported_type(new_daemon, api_key):
    daemon = new_daemon("--strict-nodes")
    Pipeline = point_sdk(daemon, api_key)
    p = Pipeline.new(name=unique("strict"))
    inp = p.add(name="q", id="q").input(input_type="string")
    t = p.add(name="t", id="t").text(text="{{ q.text }}!")
    p.add(name="out", id="out").output(output_type="string", value=t.text)
    p.save(deploy=True)
    assert p.run(inputs={"q": "hi"})["outputs"] == {"out": "hi!"}, "basic nodes still run under --strict-nodes"
    from vectorshift.request import request_client
    doc = request_client.request("GET", "/pipeline", query={"id": p.id})["object"]
    doc["nodes"]["kb"] = {"id": "kb", "name": "kb", "type": "knowledge_base", "inputs": {}, "outputs": ["results"]}
    request_client.request("POST", f"/update/pipeline/{p.id}", json={"nodes": doc["nodes"]})
    with pytest.raises(InternalServerError) as err:
        p.run(inputs={"q": "hi"})
    assert "node type 'knowledge_base' is not supported" in str(err.value)


def test_inputs_are_checked_missing_unexpected_and_typed(sdk, http):
    p = sdk.new(name=unique("typed"))
    n = p.add(name="n", id="n").input(input_type="int32")
    flag = p.add(name="flag", id="flag").input(input_type="bool")
    p.add(name="out", id="out").output(output_type="string", value=n.value)
    p.add(name="out_flag", id="out_flag").output(output_type="string", value=flag.value)
    p.save(deploy=True)
    assert p.run(inputs={"n": 7, "flag": True})["outputs"] == {"out": 7, "out_flag": True}
    for body, message in [({"n": 7}, "Missing input(s): flag"), ({"n": 7, "flag": True, "x": 1}, "Unexpected input(s): x"),
                          ({"n": "seven", "flag": True}, "Input 'n' must be of type int32"),
                          ({"n": 7, "flag": "maybe"}, "Input 'flag' must be of type bool")]:
        r = http("POST", f"/pipeline/{p.id}/run", json={"inputs": body})
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)


def test_file_inputs_as_the_sdk_sends_them(sdk, tmp_path):
    p = sdk.new(name=unique("file"))
    doc = p.add(name="doc", id="doc").input(input_type="file")
    q = p.add(name="q", id="q").input(input_type="string")
    t = p.add(name="t", id="t").text(text="{{ q.text }}: {{ doc.file_name }} says {{ doc.processed_text }}")
    p.add(name="out", id="out").output(output_type="string", value=t.text)
    p.save(deploy=True)
    path = tmp_path / "notes.txt"
    path.write_text("hello from a file")
    answer = p.run(inputs={"doc": path, "q": "summary"})
    assert answer["outputs"]["out"] == "summary: notes.txt says hello from a file"
    handler = p.start(inputs={"doc": b"\x00\xff binary", "q": "bin"})
    status = handler.result(poll_interval=0.05, timeout=30)
    assert "[binary file doc, 9 bytes]" in status["result"]["out"]


def test_summarizer_and_translator_use_the_llm_simulator(sdk):
    p = sdk.new(name=unique("ai-text"))
    inp = p.add(name="q", id="q").input(input_type="string")
    s = p.add(name="s", id="s").summarizer(text=inp.text)
    t = p.add(name="t", id="t").translator(text=inp.text, target_language="French")
    p.add(name="summary", id="summary").output(output_type="string", value=s.summary)
    p.add(name="translation", id="translation").output(output_type="string", value=t.translation)
    p.save(deploy=True)
    first = p.run(inputs={"q": "Write 12 words about tape drives."})["outputs"]
    again = p.run(inputs={"q": "Write 12 words about tape drives."})["outputs"]
    assert first == again and first["summary"] != first["translation"]
    assert 9 <= len(first["summary"].split()) <= 15, first
    status = p.run_status(p.start(inputs={"q": "Write 3 words."}).task_id)
    assert set(status["nodes"]) == {"q", "s", "t", "summary", "translation"}


def test_ai_operations_writes_simulated_text_to_its_first_output(sdk, http):
    nodes = {
        "q": {"id": "q", "name": "q", "type": "input", "inputs": {"input_type": "string"}, "outputs": ["text"]},
        "op": {"id": "op", "name": "op", "type": "ai_operations", "inputs": {"sub_type": "extract", "text": "{{ q.text }}"},
               "outputs": ["answer", "complete"]},
        "out": {"id": "out", "name": "out", "type": "output", "inputs": {"value": "{{ op.answer }}"}, "outputs": []},
    }
    pid = http("POST", "/pipeline", json={"name": unique("ai-op"), "nodes": nodes}).json()["id"]
    first = http("POST", f"/pipeline/{pid}/run", json={"inputs": {"q": "Write 6 words."}}).json()
    again = http("POST", f"/pipeline/{pid}/run", json={"inputs": {"q": "Write 6 words."}}).json()
    assert first["outputs"] == again["outputs"] and len(first["outputs"]["out"].split()) > 3, first


def test_nodes_a_terminated_run_never_started_are_terminated_and_an_untaken_path_stays_skipped(sdk):
    p = sdk.new(name=unique("stopped_states"))
    score = p.add(name="score", id="score").input(input_type="int32")
    cond = p.add(name="cond", id="cond").condition(conditions=[
        ConditionGroup([Clause(Operator.GREATER_THAN_EQUAL, score.value, 90)])])
    p.add(name="high", id="high").text(text="high", dependencies=[cond.path_0])
    low = p.add(name="low", id="low").text(text="Write 300 words about a low score.", dependencies=[cond.path_else])
    llm = p.add(name="llm", id="llm").llm(provider="openai", model="gpt-4o", prompt=low.text)
    p.add(name="answer", id="answer").output(output_type="string", value=llm.response)
    p.save(deploy=True)
    handler = p.start(inputs={"score": 10})  # the LLM takes seconds: the stop comes before its output has a value
    handler.terminate()
    status = handler.run_status()
    assert status["status"] == "terminated", status
    nodes = status["nodes"]
    assert nodes["answer"] == "terminated", f"the output never got a value because the run was stopped: {nodes}"
    assert nodes["llm"] == "terminated", nodes
    assert nodes["high"] == "skipped", f"the untaken condition path is still skipped: {nodes}"
    assert nodes["low"] == "completed" and nodes["cond"] == "completed", nodes
