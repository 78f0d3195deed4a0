"""Shared helpers for the SDK suite: start the built `mockshift` daemon on port 0 with a temporary database,
point the official `vectorshift` SDK at it, and wait for conditions with deadlines (never bare sleeps).

The suite builds nothing: it runs the binary named by MOCKSHIFT_BIN (default: the debug build).
"""
import os
import pathlib
import signal
import subprocess
import threading
import time
import uuid

import pytest
import requests

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("MOCKSHIFT_BIN", REPO / ".build" / "debug" / "mockshift"))
SHARED = pathlib.Path(os.environ.get("MOCKSHIFT_SHARED", REPO.parent / "shared"))


def under_ci():
    """True when the environment says CI (`CI` set to anything but empty, 0, false or no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need_shared(what, path):
    """For tests that read `../shared` (the project's reference files, which CI checks out beside the repository
    and a user's clone lacks): returns `path` when it exists. Otherwise, outside CI (env `CI` unset, empty, 0, false or no), skips
    the test saying what is missing and where it was looked for; under CI (``under_ci``), fails with the same message."""
    if path.exists():
        return path
    message = (f"{what} is missing: looked for {path} (set MOCKSHIFT_SHARED to the folder holding seeds/, "
               f"or place the shared reference files at {REPO.parent / 'shared'})")
    if under_ci():
        pytest.fail(message + "; CI is set, so this test must run", pytrace=False)
    pytest.skip(message)


def wait_for(condition, timeout=10.0, interval=0.02, message="condition"):
    """Polls `condition()` until it returns a truthy value, which is returned; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class Daemon:
    """One `mockshift serve` process. `url` is the base URL the SDK takes (`.../v1`)."""

    def __init__(self, db, *args, env=None):
        self.db = str(db)
        self.args = list(args)
        self.env = env
        self.proc = None
        self.url = None
        self.stderr_lines = []

    def start(self, timeout=15.0):
        assert BIN.exists(), f"{BIN} is missing: build first (scripts/test does)"
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", "0", "--db", self.db, *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        ready = {}

        def read_stdout():
            line = self.proc.stdout.readline()
            ready["line"] = line
            for _ in self.proc.stdout:  # nothing else is expected on stdout; keep the pipe drained
                pass

        def read_stderr():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        line = wait_for(lambda: ready.get("line") is not None and ready["line"], timeout,
                        message="the ready line")
        assert line.startswith("mockshift listening on http://"), f"unexpected ready line {line!r}; stderr: {self.stderr_lines}"
        self.url = line.split()[-1]
        return self

    @property
    def root(self):
        """The server root, without `/v1`."""
        return self.url[: -len("/v1")]

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends `sig` and returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            return self.proc.wait(timeout)
        return self.proc.returncode if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """The daemon shared by most tests: real clock, default LLM timing (400 ms TTFT, 40 tokens/s)."""
    d = Daemon(tmp_path_factory.mktemp("db") / "mockshift.sqlite3").start()
    yield d
    d.stop()


@pytest.fixture
def new_daemon(tmp_path):
    """Starts extra daemons (own database unless given) and stops them after the test."""
    started = []

    def make(*args, db=None, env=None):
        d = Daemon(db or (tmp_path / f"{uuid.uuid4().hex}.sqlite3"), *args, env=env).start()
        started.append(d)
        return d

    yield make
    for d in started:
        if d.alive():
            d.proc.kill()
            d.proc.wait()


@pytest.fixture
def api_key():
    """A key of its own for each test: every key is its own namespace (SPEC §7)."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sdk(daemon, api_key):
    """The official SDK pointed at the shared daemon with this test's key; returns the `Pipeline` class."""
    return point_sdk(daemon, api_key)


def point_sdk(daemon, api_key):
    import vectorshift
    from vectorshift import request as vs_request
    from vectorshift.pipeline import Pipeline

    vs_request.request_client.base_url = daemon.url
    vs_request.async_request_client.base_url = daemon.url
    vectorshift.api_key = api_key
    return Pipeline


class Http:
    """Raw HTTP to a daemon with a key, for what the SDK cannot send (bad bodies, wrong methods)."""

    def __init__(self, daemon, api_key):
        self.daemon = daemon
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def __call__(self, method, path, **kw):
        headers = dict(self.headers)
        headers.update(kw.pop("headers", {}))
        base = self.daemon.root if path.startswith("/_mock") else self.daemon.url
        return requests.request(method, base + path, headers=headers, timeout=30, **kw)


@pytest.fixture
def http(daemon, api_key):
    return Http(daemon, api_key)


def build_llm_pipeline(Pipeline, name, *, stream=False):
    """input_0 → llm → output_0, as in the docs example; saved and deployed."""
    pipeline = Pipeline.new(name=name)
    inp = pipeline.add(name="input_0", id="input_0").input(input_type="string")
    llm = pipeline.add(name="llm", id="llm").llm(provider="openai", model="gpt-4o", prompt=inp.text)
    pipeline.add(name="output_0", id="output_0").output(output_type="string", value=llm.response)
    pipeline.save(deploy=True)
    return pipeline


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def build_streaming_pipeline(Pipeline, name):
    """input_0 → llm (stream=True) → output_0 of type stream<string>, as in the docs' streaming example."""
    pipeline = Pipeline.new(name=name)
    inp = pipeline.add(name="input_0", id="input_0").input(input_type="string")
    llm = pipeline.add(name="llm", id="llm").llm(provider="openai", model="gpt-4o", prompt=inp.text, stream=True)
    pipeline.add(name="output_0", id="output_0").output(output_type="stream<string>", value=llm.response)
    pipeline.save(deploy=True)
    return pipeline


def stats(daemon, key=None):
    """`GET /_mock/stats` with `key` (none: the namespace `default`). Per-key figures are at the top, the whole
    daemon's (transport, every timer, scheduler lateness) under `daemon`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(f"{daemon.root}/_mock/stats", headers=headers, timeout=10).json()


def open_sockets(daemon):
    """Sockets the daemon holds (its SQLite pool may open files as it grows; those are not leaks)."""
    count = 0
    for fd in os.listdir(f"/proc/{daemon.proc.pid}/fd"):
        try:
            if os.readlink(f"/proc/{daemon.proc.pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count
