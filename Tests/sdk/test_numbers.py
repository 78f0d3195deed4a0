"""Numbers from users never crash the daemon (issue 11, item 1): a node input that cannot be converted fails its
run naming the node; a bad number in a request field is a 400 naming the field. Each test starts a daemon of its
own, so a crash shows here instead of taking the shared daemon (and every later test) down."""
import pytest
import requests
from vectorshift.request import InternalServerError

from conftest import point_sdk, unique, wait_for


def convert_pipeline(Pipeline):
    """The issue's pipeline: input(string) → convert_type(string → int32, value {{ in.text }}) → output."""
    p = Pipeline.new(name=unique("convert"))
    text = p.add(name="in", id="in").input(input_type="string")
    conv = p.add(name="conv", id="conv").convert_type(source_type="string", target_type="int32", value=text.text)
    p.add(name="out", id="out").output(output_type="int32", value=conv.converted_value)
    p.save(deploy=True)
    return p


@pytest.mark.parametrize("value", ["1e19", "nan", "inf", "1e300"])
def test_int32_conversion_of_an_unfit_number_fails_the_run_naming_the_node_and_the_daemon_lives(new_daemon, api_key, value):
    daemon = new_daemon()
    Pipeline = point_sdk(daemon, api_key)
    p = convert_pipeline(Pipeline)
    with pytest.raises(InternalServerError) as err:
        p.run(inputs={"in": value})
    assert "node conv" in str(err.value) and value in str(err.value), str(err.value)
    assert daemon.alive(), "the daemon died on a run input"
    handler = p.start(inputs={"in": value})
    wait_for(lambda: handler.run_status()["status"] != "in_progress", message="the background run to end")
    status = handler.run_status()
    assert status["status"] == "failed" and status["error"].startswith("node conv: "), status
    assert status["nodes"]["conv"] == "failed" and status["nodes"]["out"] == "terminated", status["nodes"]
    assert p.run(inputs={"in": "12"})["outputs"] == {"out": 12}, "another run works afterwards"


def test_extreme_numbers_in_timed_and_dated_nodes_fail_their_runs_and_leave_the_daemon_alive(new_daemon, api_key):
    daemon = new_daemon("--clock", "manual")
    Pipeline = point_sdk(daemon, api_key)
    p = Pipeline.new(name=unique("extremes"))
    amount = p.add(name="amount", id="amount").input(input_type="string")
    w = p.add(name="w", id="w").wait_node(wait_time=amount.text, wait_time_type="hours")
    p.add(name="waited", id="waited").output(output_type="string", value=w.status)
    p.save(deploy=True)
    for value in ["1e300", "1e19", "-5", "nan", "99999999999999999999"]:
        handler = p.start(inputs={"amount": value})
        wait_for(lambda: handler.run_status()["status"] != "in_progress", message=f"the wait of {value} hours to fail")
        status = handler.run_status()
        assert status["status"] == "failed" and status["error"].startswith("node w: "), (value, status)
    assert daemon.alive()
    handler = p.start(inputs={"amount": "1"})
    requests.post(f"{daemon.root}/_mock/clock/advance", json={"ms": 3_600_000},
                  headers={"Authorization": f"Bearer {api_key}"}).raise_for_status()
    assert handler.run_status()["result"] == {"waited": "completed"}


def test_numeric_request_fields_out_of_range_are_400_naming_the_field(new_daemon, api_key):
    daemon = new_daemon("--clock", "manual")
    headers = {"Authorization": f"Bearer {api_key}"}
    post = lambda path, body: requests.post(f"{daemon.root}{path}", json=body, headers=headers)
    for body, field in [({"path": "/v1/pipelines", "delay_ms": "abc"}, "delay_ms"),
                        ({"path": "/v1/pipelines", "status": 503, "probability": "nan"}, "probability"),
                        ({"llm_fail_after_tokens": 1e300}, "llm_fail_after_tokens"),
                        ({"status": 503, "times": "99999999999999999999"}, "times")]:
        answer = post("/_mock/faults", body)
        assert answer.status_code == 400 and field in answer.json()["error"], (body, answer.text)
    for body, field in [({"ttft_ms": "inf"}, "ttft_ms"), ({"fail_after_tokens": 2.5}, "fail_after_tokens")]:
        answer = post("/_mock/llm", body)
        assert answer.status_code == 400 and field in answer.json()["error"], (body, answer.text)
    for ms in [1e12] * 20:  # each step is allowed; together they would wrap the clock's nanoseconds around
        answer = post("/_mock/clock/advance", {"ms": ms})
        if answer.status_code == 400:
            assert "ms" in answer.json()["error"], answer.text
            break
    else:
        pytest.fail("twenty advances of 1e12 ms were all accepted: the clock's nanoseconds wrapped around")
    now = requests.get(f"{daemon.root}/_mock/clock", headers=headers).json()["now_ms"]
    assert now >= 1e12, "the clock never went backwards"
    answer = requests.get(f"{daemon.root}/v1/pipelines", params={"limit": "99999999999999999999"}, headers=headers)
    assert answer.status_code == 400 and "limit" in answer.json()["error"], answer.text
    assert daemon.alive()
