"""pytest plugin for MockShift.

Fixtures:
  mockshift         an API key of its own for this test (so tests are isolated without restarts), the official
                    SDK pointed at a MockShift daemon on the real clock, and helpers (see MockShift below):
                    advance, fault, script_llm, requests, events, runs, conversations, conversation, sessions,
                    session, stats, reset, wait_for.
  mockshift_manual  the same on a daemon with `--clock manual`: simulated time moves only with `advance(ms)`.

Each pytest process (each pytest-xdist worker too) starts its own daemons on port 0, lazily, once, with an
in-memory database; nothing is shared between workers, so `pytest -n 4` needs no configuration. A daemon stops
with the process that started it, however that process ends (`serve --exit-with-parent --exit-on-stdin-close`).

A failed test's report has a `mockshift` section with its API key, the daemon's URL and its dashboard.

The daemon binary: `--mockshift-bin PATH`, else $MOCKSHIFT_BIN, else `mockshift` on PATH, else
`.build/release/mockshift` or `.build/debug/mockshift` under the rootdir. Extra `serve` options:
`--mockshift-args "--ttft-ms 100"`.
"""
import os
import pathlib
import shlex
import shutil
import subprocess
import threading
import time
import uuid

import pytest
import requests


def pytest_addoption(parser):
    group = parser.getgroup("mockshift")
    group.addoption("--mockshift-bin", default=None, help="path of the mockshift binary")
    group.addoption("--mockshift-args", default="", help="extra options for `mockshift serve`")


def _find_binary(config):
    candidates = [config.getoption("--mockshift-bin"), os.environ.get("MOCKSHIFT_BIN"), shutil.which("mockshift")]
    root = pathlib.Path(str(config.rootpath))
    for base in [root, *root.parents]:
        candidates += [base / ".build" / "release" / "mockshift", base / ".build" / "debug" / "mockshift"]
    for candidate in candidates:
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    raise pytest.UsageError("mockshift binary not found: pass --mockshift-bin or set MOCKSHIFT_BIN")


class MockShiftServer:
    """One `mockshift serve --port 0 --db :memory:` process. `url` ends in /v1, `root` does not."""

    def __init__(self, binary, *args):
        # stdin is a pipe nobody writes to: it closes when this process ends, however it ends (kill -9, a
        # pytest-xdist worker's os._exit), and the daemon stops then (--exit-on-stdin-close); --exit-with-parent
        # covers the pipe surviving in a forked child.
        self.proc = subprocess.Popen([binary, "serve", "--port", "0", "--db", ":memory:",
                                      "--exit-with-parent", "--exit-on-stdin-close", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        line = {}
        reader = threading.Thread(target=lambda: line.setdefault("ready", self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        ready = line.get("ready", "")
        if not ready.startswith("mockshift listening on "):
            self.proc.kill()
            raise RuntimeError(f"mockshift did not start: {ready!r} {''.join(self.stderr)}")
        self.url = ready.split()[-1]
        self.root = self.url[: -len("/v1")]

    @property
    def pid(self):
        """The daemon's process id."""
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class MockShift:
    """What a test gets: its own key on a daemon, the SDK pointed at both, and the test controls."""

    def __init__(self, server, api_key):
        self.server = server
        self.url = server.url
        self.api_key = api_key
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {api_key}"

    @property
    def pid(self):
        """The process id of this test's daemon."""
        return self.server.pid

    @property
    def dashboard(self):
        """The daemon's dashboard (open it and enter `api_key` to see this test's pipelines and runs)."""
        return f"{self.server.root}/"

    def describe(self):
        """One line for a failed test's report: the key, the daemon and its dashboard."""
        return (f"api key {self.api_key}  url {self.url}  dashboard {self.dashboard} (enter the key there; "
                f"the daemon, pid {self.pid}, stops when this pytest process ends)")

    def _control(self, method, path, **kw):
        r = self._session.request(method, f"{self.server.root}/_mock/{path}", timeout=60, **kw)
        if r.status_code >= 400:
            raise AssertionError(f"/_mock/{path}: {r.status_code} {r.text}")
        return r.json()

    def advance(self, ms):
        """Manual clock: moves simulated time by `ms` and returns once everything due has happened."""
        return self._control("POST", "clock/advance", json={"ms": ms})

    def fault(self, **rule):
        """Adds a fault rule for this test's requests, e.g. `fault(method="POST", path="/v1/pipeline/*/run",
        status=503)`, `fault(path="/v1/pipelines", delay_ms=500)`, `fault(drop=True, times=1)` or
        `fault(pipeline_id=p.id, llm_fail_after_tokens=3, message="overloaded")`. Returns the stored rule."""
        return self._control("POST", "faults", json=rule)

    def script_llm(self, **rule):
        """Adds a scripted LLM answer for this test's runs, e.g. `script_llm(prompt_pattern="weather",
        response="It is sunny.", ttft_ms=100, tokens_per_second=20)` or `script_llm(fail_after_tokens=2)`."""
        return self._control("POST", "llm", json=rule)

    def requests(self, kind=None, session_id=None):
        """This test's journal, oldest first: its /v1 requests (`kind` "request": method, path, query, body, status,
        duration_ms) and the WebSocket frames of its sessions (`kind` "ws_frame": direction "in"/"out", the frame's
        type, session_id and size, no body); only those of `kind`, and frames of `session_id`, when given."""
        params = {k: v for k, v in {"kind": kind, "session_id": session_id}.items() if v}
        return self._control("GET", "requests", params=params or None)["requests"]

    def runs(self, pipeline_id=None, status=None):
        """This test's runs, newest first, as run status dicts."""
        params = {k: v for k, v in {"pipeline_id": pipeline_id, "status": status}.items() if v}
        return self._control("GET", "runs", params=params)["runs"]

    def events(self, run_id):
        """The run's timeline: created, node_started, first_token, tokens, paused, terminated, completed, ..."""
        return self._control("GET", f"runs/{run_id}/events")["events"]

    def conversations(self, chatbot_id=None):
        """This test's chatbot conversations, oldest first, each with its turns (user text, answer, run id, outcome:
        completed, stopped or failed); only `chatbot_id`'s when given."""
        params = {"chatbot_id": chatbot_id} if chatbot_id else None
        return self._control("GET", "conversations", params=params)["conversations"]

    def conversation(self, conversation_id):
        """One conversation with its turns, as `conversations()` gives them."""
        return self._control("GET", f"conversations/{conversation_id}")["conversation"]

    def sessions(self, owner_id=None, status=None):
        """This test's WebSocket sessions (chatbot or agent), oldest first: id, owner_type, owner_id, status (open or
        terminated), created_at, terminated_at, message_count; only `owner_id`'s, or those in `status`, when given."""
        params = {k: v for k, v in {"owner_id": owner_id, "status": status}.items() if v}
        return self._control("GET", "sessions", params=params or None)["sessions"]

    def session(self, session_id):
        """One session as `sessions()` gives it, plus its stored `messages` (as the SDK's `get_messages()` receives
        them) and its `turns`: each user message with the answer after it, `user_text`, `answer` and `outcome`
        (completed, terminated, failed, in_progress or awaiting_approval)."""
        return self._control("GET", f"sessions/{session_id}")["session"]

    def stats(self):
        return self._control("GET", "stats")

    def reset(self):
        """Deletes this test's pipelines and runs (other tests' keys are untouched); with `--fixtures` in
        `--mockshift-args`, the key then holds the fixtures again, as at its first request."""
        return self._control("POST", "reset")

    def wait_for(self, condition, timeout=10.0, interval=0.02):
        """Polls `condition()` until truthy (returned) or fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            time.sleep(interval)


def _point_sdk(url, api_key):
    os.environ["VECTORSHIFT_BASE_URL"] = url
    os.environ["VECTORSHIFT_API_KEY"] = api_key
    import vectorshift  # imported after the environment is set, so its clients read our URL
    from vectorshift import request as vs_request

    vs_request.request_client.base_url = url
    vs_request.async_request_client.base_url = url
    vectorshift.api_key = api_key


class _Servers:
    def __init__(self, config):
        self.config = config
        self.started = {}

    def get(self, *args):
        if args not in self.started:
            extra = shlex.split(self.config.getoption("--mockshift-args"))
            self.started[args] = MockShiftServer(_find_binary(self.config), *extra, *args)
        return self.started[args]

    def stop(self):
        for server in self.started.values():
            server.stop()


@pytest.fixture(scope="session")
def _mockshift_servers(request):
    servers = _Servers(request.config)
    yield servers
    servers.stop()


_SHIFTS = pytest.StashKey[list]()
_FAILED = pytest.StashKey[bool]()


def _fixture(request, servers, *args):
    server = servers.get(*args)
    shift = MockShift(server, f"pytest-{uuid.uuid4().hex}")
    _point_sdk(server.url, shift.api_key)
    request.node.stash.setdefault(_SHIFTS, []).append(shift)  # for the failure report
    return shift


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds a `mockshift` section (key, URL, dashboard) to the report of a test that failed (setup, call or
    teardown), shown with the failure under `pytest`'s default `--show-capture=all`."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.stash[_FAILED] = True
        for shift in item.stash.get(_SHIFTS, []):
            report.sections.append(("mockshift", shift.describe()))


def _tidy(request, shift):
    """Resets the test's namespace unless the test failed: then its pipelines and runs stay for the dashboard."""
    if not request.node.stash.get(_FAILED, False):
        shift.reset()


@pytest.fixture
def mockshift(request, _mockshift_servers):
    """A MockShift daemon on the real clock, with an API key of this test's own."""
    shift = _fixture(request, _mockshift_servers)
    yield shift
    _tidy(request, shift)


@pytest.fixture
def mockshift_manual(request, _mockshift_servers):
    """A MockShift daemon on the manual clock (`advance(ms)` moves time), with an API key of this test's own."""
    shift = _fixture(request, _mockshift_servers, "--clock", "manual")
    yield shift
    _tidy(request, shift)
