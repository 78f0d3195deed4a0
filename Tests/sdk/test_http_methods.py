"""HEAD, OPTIONS and the favicon (issue 11 item 4): `curl -I`, `wget --spider` and wait-for-ready tools send HEAD,
which answered 405 everywhere.

RFC 9110 §9.3.2: HEAD is GET without the body: the same status and headers, `Content-Length` that of the GET's
body. Read off raw sockets, so that a body sent after a HEAD's head (which an HTTP client would never read) shows.
"""
import http.client
import socket

import requests

from conftest import build_llm_pipeline, point_sdk, unique, wait_for


def raw(daemon, method, path, key=None):
    """(status, headers, bytes after the head) of one request on its own connection, read until the server
    closes it (`Connection: close`)."""
    host, port = daemon.root.removeprefix("http://").rsplit(":", 1)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall((head + "\r\n").encode())
        data = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, rest


def test_head_answers_what_get_answers_without_the_body(new_daemon, api_key):
    d = new_daemon()
    pipeline = build_llm_pipeline(point_sdk(d, api_key), unique("head"))
    run = pipeline.start(inputs={"input_0": "Write 3 words."})
    wait_for(lambda: pipeline.run_status(run.task_id)["status"] == "completed", message="the run to complete")
    paths = ["/_mock/ready", "/_mock/health", "/v1/pipelines", f"/v1/pipeline/{pipeline.id}/run/status/{run.task_id}",
             "/", "/_mock/ui/app.js", "/openapi.json", "/_mock/nowhere", "/v1/pipeline?id=0123456789abcdef01234567"]
    for path in paths:
        get_status, get_headers, get_body = raw(d, "GET", path, api_key)
        status, headers, body = raw(d, "HEAD", path, api_key)
        assert status == get_status, f"HEAD {path}: {status}, GET: {get_status}"
        assert body == b"", f"HEAD {path} sent a body: {body[:80]!r}"
        for h in (get_headers.keys() | headers.keys()) - {"date"}:
            assert headers.get(h) == get_headers.get(h), f"HEAD {path}: header {h} is {headers.get(h)!r}, GET's {get_headers.get(h)!r}"
        assert int(headers["content-length"]) == len(get_body), f"HEAD {path}: Content-Length of the GET's body"
    assert raw(d, "HEAD", "/_mock/ready")[0] == 200, "curl -I of the readiness check, without a key"


def test_head_leaves_a_keep_alive_connection_usable(new_daemon):
    d = new_daemon()
    host, port = d.root.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    for _ in range(3):  # a body after a HEAD's head would be read as the next answer's status line
        connection.request("HEAD", "/_mock/health")
        head = connection.getresponse()
        assert head.status == 200 and head.read() == b""
        connection.request("GET", "/_mock/health")
        got = connection.getresponse()
        assert got.status == 200 and got.read().startswith(b'{"status":"ok"')
    connection.close()


def test_head_of_the_live_feed_starts_no_stream(new_daemon, api_key):
    d = new_daemon()
    status, headers, body = raw(d, "HEAD", "/_mock/events", api_key)  # returns: the server closes at once
    assert status == 200 and headers["content-type"] == "text/event-stream" and body == b""
    stats = requests.get(f"{d.root}/_mock/stats", headers={"Authorization": f"Bearer {api_key}"}, timeout=10).json()
    assert stats["feed_subscribers"] == 0 and stats["open_streams"] == 0, stats
    assert stats["daemon"]["open_streams"] == 0, stats


def test_options_answers_allow_and_the_favicon_needs_no_key(new_daemon):
    d = new_daemon("--api-key", "only-key")
    answer = requests.options(f"{d.root}/_mock/ready", timeout=10)  # no key: a preflight carries none
    assert answer.status_code == 204 and answer.headers["Allow"] == "GET, HEAD, OPTIONS" and answer.content == b""
    assert requests.options(f"{d.url}/pipeline/0123456789abcdef01234567/run", timeout=10).headers["Allow"] == "POST, OPTIONS"
    assert requests.options(f"{d.root}/_mock/faults", timeout=10).headers["Allow"] == "POST, GET, HEAD, DELETE, OPTIONS"
    assert requests.options(f"{d.root}/no/such/path", timeout=10).status_code == 404
    status, headers, _ = raw(d, "OPTIONS", "*")
    assert status == 204 and set(headers["allow"].split(", ")) == {"GET", "HEAD", "POST", "DELETE", "OPTIONS"}
    # A 405 names HEAD and OPTIONS beside GET.
    wrong = requests.put(f"{d.root}/_mock/ready", headers={"Authorization": "Bearer only-key"}, timeout=10)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, HEAD, OPTIONS"
    favicon = requests.get(f"{d.root}/favicon.ico", timeout=10)
    assert favicon.status_code == 204 and favicon.content == b""
    assert raw(d, "HEAD", "/")[0] == 200, "the dashboard is public for HEAD as for GET"
    assert raw(d, "HEAD", "/_mock/health")[0] == 401, "a secured GET stays secured for HEAD"
