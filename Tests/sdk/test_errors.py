"""Bad input gets a JSON error in the VectorShift format with the right code, and the daemon keeps serving
(SPEC §2)."""
import socket

import pytest
import requests
from vectorshift.request import AuthenticationError, NotFoundError, UnprocessableEntityError

from conftest import build_llm_pipeline, point_sdk, unique


def assert_failed(r, code, fragment=""):
    assert r.status_code == code, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["status"] == "failed" and fragment in body["error"], body


def assert_serving(http):
    assert http("GET", "/_mock/health").json()["status"] == "ok"


def test_malformed_json_is_400_and_stored_data_survives(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("malformed"))
    bad = '{"inputs": {"input_0": "x"'
    headers = {"Content-Type": "application/json"}
    assert_failed(http("POST", f"/pipeline/{pipeline.id}/run", data=bad, headers=headers), 400, "Invalid JSON body")
    assert_failed(http("POST", f"/update/pipeline/{pipeline.id}", data=b"\xff\xfe", headers=headers), 400, "Invalid JSON body")
    assert_failed(http("POST", "/pipeline", data="[1, 2]", headers=headers), 400, "Invalid JSON body")
    assert_failed(http("POST", f"/update/pipeline/{pipeline.id}", json={"nodes": [1]}), 400, "nodes")
    assert_failed(http("POST", f"/update/pipeline/{pipeline.id}", json={"nodes": {"x": {"name": "no type"}}}), 400, "no type")
    assert_failed(http("POST", f"/pipeline/{pipeline.id}/run", json={"inputs": "not an object"}), 400, "inputs")
    assert_serving(http)
    fetched = sdk.fetch(id=pipeline.id)
    assert sorted(n.id for n in fetched.nodes) == ["input_0", "llm", "output_0"]
    assert pipeline.run(inputs={"input_0": "Write 3 words."})["status"] == "success"


def test_oversized_body_is_413_with_and_without_content_length(new_daemon, api_key):
    daemon = new_daemon("--max-body-mb", "1")
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    big = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = requests.post(f"{daemon.url}/pipeline", data=big, headers=headers, timeout=30)
    assert_failed(r, 413, "limit")

    def chunks():
        for _ in range(32):
            yield b"x" * 65536

    r = requests.post(f"{daemon.url}/pipeline", data=chunks(), headers=headers, timeout=30)
    assert_failed(r, 413, "limit")
    ok = requests.post(f"{daemon.url}/pipeline", json={"name": "small"}, headers=headers, timeout=30)
    assert ok.status_code == 200 and ok.json()["status"] == "success"


def test_unknown_ids_are_404(sdk, http):
    missing = "0123456789abcdef01234567"
    with pytest.raises(NotFoundError):
        sdk.fetch(id=missing)
    with pytest.raises(NotFoundError):
        sdk.fetch(name=unique("never-created"))
    assert_failed(http("GET", f"/pipeline/{missing}/run/status/{missing}"), 404)
    assert_failed(http("POST", f"/pipeline/{missing}/run", json={"inputs": {}}), 404, "Pipeline not found")
    assert_failed(http("DELETE", f"/pipeline/{missing}"), 404)
    assert_failed(http("POST", f"/update/pipeline/{missing}", json={"folder_id": "f"}), 404)
    assert_failed(http("GET", "/no/such/route"), 404)
    assert_serving(http)


def test_wrong_method_is_405(http):
    assert_failed(http("PUT", "/pipeline"), 405)
    assert_failed(http("GET", "/pipeline/0123456789abcdef01234567/terminate"), 405)
    # The answer says which methods the path takes (RFC 9110 requires the Allow header on a 405).
    # HEAD goes with GET and OPTIONS is served everywhere (issue 11 item 4), so both are named too.
    assert set(http("PUT", "/pipeline").headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert http("HEAD", "/pipeline/0123456789abcdef01234567/terminate").headers["Allow"] == "POST, OPTIONS"


def test_cycle_or_missing_node_is_422_naming_it(sdk):
    pipeline = sdk.new(name=unique("bad-graph"))
    inp = pipeline.add(name="input_0", id="input_0").input(input_type="string")
    pipeline.add(name="output_0", id="output_0").output(output_type="string", value=inp.text)
    pipeline.save(deploy=False)
    from vectorshift.request import request_client
    doc = request_client.request("GET", "/pipeline", query={"id": pipeline.id})["object"]
    doc["nodes"]["output_0"]["inputs"]["value"] = "{{ ghost.text }}"
    request_client.request("POST", f"/update/pipeline/{pipeline.id}", json={"nodes": doc["nodes"]})
    with pytest.raises(UnprocessableEntityError) as err:
        pipeline.run(inputs={"input_0": "x"})
    assert "ghost" in str(err.value)
    doc["nodes"]["output_0"]["inputs"]["value"] = "{{ loop_b.text }}"
    doc["nodes"]["loop_a"] = {"id": "loop_a", "name": "loop_a", "type": "text", "inputs": {"text": "{{ loop_b.text }}"}, "outputs": ["text"]}
    doc["nodes"]["loop_b"] = {"id": "loop_b", "name": "loop_b", "type": "text", "inputs": {"text": "{{ loop_a.text }}"}, "outputs": ["text"]}
    request_client.request("POST", f"/update/pipeline/{pipeline.id}", json={"nodes": doc["nodes"]})
    with pytest.raises(UnprocessableEntityError) as err:
        pipeline.run(inputs={"input_0": "x"})
    assert "cycle" in str(err.value) and "loop_a" in str(err.value)


def test_api_keys_are_enforced_when_configured(new_daemon):
    daemon = new_daemon("--api-key", "good-key")
    r = requests.get(f"{daemon.url}/pipelines")
    assert r.status_code == 401 and r.json() == {"error": "Missing authorization header"}
    r = requests.get(f"{daemon.url}/pipelines", headers={"Authorization": "Token abc"})
    assert r.status_code == 401 and r.json() == {"error": "Invalid authorization header format"}
    Pipeline = point_sdk(daemon, "wrong-key")
    with pytest.raises(AuthenticationError):
        Pipeline.list()
    Pipeline = point_sdk(daemon, "good-key")
    pipeline = build_llm_pipeline(Pipeline, unique("authed"))
    assert Pipeline.fetch(id=pipeline.id).id == pipeline.id


def test_each_key_sees_only_its_own_pipelines(daemon):
    Pipeline = point_sdk(daemon, unique("key-a"))
    pipeline = build_llm_pipeline(Pipeline, unique("private"))
    Pipeline = point_sdk(daemon, unique("key-b"))
    with pytest.raises(NotFoundError):
        Pipeline.fetch(id=pipeline.id)
    assert pipeline.id not in [p.id for p in Pipeline.list()]


def test_garbage_on_the_socket_does_not_hurt_the_daemon(http, daemon):
    host, port = daemon.root.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x00\x01GARBAGE / HTTP/9.9\r\n\r\n")
        try:
            s.recv(1024)
        except OSError:
            pass
    assert_serving(http)


def test_wrongly_typed_fields_are_400_naming_the_field_and_change_nothing(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("types"))
    pipeline.move_to_folder("kept-folder")
    cases = [
        ("POST", "/pipeline", {"name": 5}, "name must be a string"),
        ("POST", f"/update/pipeline/{pipeline.id}", {"folder_id": 5}, "folder_id must be a string"),
        ("POST", f"/update/pipeline/{pipeline.id}", {"deploy": "yes"}, "deploy must be true or false"),
        ("POST", f"/update/pipeline/{pipeline.id}", {"canvas_metadata": 5}, "canvas_metadata must be"),
        ("POST", f"/update/pipeline/{pipeline.id}", {"description": {"a": 1}}, "description must be a string"),
        ("POST", f"/update/pipeline/{pipeline.id}", {"nodes": {"a": {"id": "b", "type": "text"}}}, "must have id 'a'"),
        ("POST", f"/update/pipeline/{pipeline.id}", {"nodes": {"a": {"type": "text", "inputs": 5}}}, "inputs must be an object"),
        ("POST", f"/pipeline/{pipeline.id}/duplicate", {"name": 5}, "name must be a string"),
        ("POST", f"/pipeline/{pipeline.id}/run", {"inputs": {"input_0": "x"}, "background": "yes"}, "background must be true or false"),
        ("POST", f"/pipeline/{pipeline.id}/terminate", {"run_id": 5}, "run_id must be a string"),
        ("POST", f"/pipeline/{pipeline.id}/revert", {"version": 1}, "version must be a string"),
        ("GET", "/pipelines?limit=-1", None, "must not be negative"),
    ]
    for method, path, body, message in cases:
        assert_failed(http(method, path, json=body), 400, message)
    assert [p.id for p in sdk.list(folder_id="kept-folder")] == [pipeline.id]
    assert sorted(n.id for n in sdk.fetch(id=pipeline.id).nodes) == ["input_0", "llm", "output_0"]


def test_nul_characters_are_stored_whole(sdk, http):
    name = unique("nul") + "\u0000tail"
    r = http("POST", "/pipeline", json={"name": name})
    assert r.status_code == 200
    fetched = http("GET", "/pipeline", params={"id": r.json()["id"]}).json()["object"]
    assert fetched["name"] == name


def test_bad_timing_options_are_refused_at_start(tmp_path):
    import subprocess
    from conftest import BIN
    for option in (["--time-scale", "inf"], ["--time-scale", "nan"], ["--ttft-ms", "1e20"], ["--api-key", ""]):
        done = subprocess.run([str(BIN), "serve", "--port", "0", "--db", str(tmp_path / "x.sqlite3"), *option],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 64, (option, done.returncode, done.stderr)
        assert "must" in done.stderr
