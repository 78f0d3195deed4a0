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
