"""Helpers shared by scripts/crash-drill and scripts/race-sweep (standard library only).

- `Daemon`: the built `mockshift serve` on port 0 with a database file; reads the ready line (SPEC §1) with a
  deadline, keeps the daemon's standard error in a log file, and can kill -9 it or stop it with SIGTERM.
- `Conn`: one keep-alive HTTP/1.1 connection with an API key. `request()` returns (status, JSON body) or
  raises `Unanswered` when no complete answer came back (a request cut off by a kill proves nothing).
- `integrity_check()`: SQLite's own `PRAGMA integrity_check` on the database file, opened read-only.
"""
import http.client
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.parse

REPO = pathlib.Path(__file__).resolve().parents[1]


def default_binary():
    """$MOCKSHIFT_BIN, else the debug build, else the release build."""
    if os.environ.get("MOCKSHIFT_BIN"):
        return pathlib.Path(os.environ["MOCKSHIFT_BIN"])
    for configuration in ("debug", "release"):
        candidate = REPO / ".build" / configuration / "mockshift"
        if candidate.exists():
            return candidate
    return REPO / ".build" / "debug" / "mockshift"


def wait_for(condition, timeout, interval=0.01, message="condition"):
    """Polls `condition()` until it returns a truthy value, which is returned; raises TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class Daemon:
    """One `mockshift serve --port 0 --db DB ARGS...` process; its standard error is appended to `log_path`."""

    def __init__(self, binary, db, args, log_path):
        self.binary = str(binary)
        self.db = str(db)
        self.args = [str(a) for a in args]
        self.log_path = str(log_path)
        self.proc = None
        self.host = None
        self.port = None

    def start(self, timeout=30.0):
        """Starts the daemon and waits for its ready line; raises RuntimeError when it does not come."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "serve", "--port", "0", "--db", self.db, *self.args],
                                     stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        ready = {}

        def read_stdout():
            ready["line"] = self.proc.stdout.readline().decode("utf-8", "replace")
            for _ in self.proc.stdout:  # nothing else is expected; keep the pipe drained
                pass

        threading.Thread(target=read_stdout, daemon=True).start()
        try:
            line = wait_for(lambda: "line" in ready, timeout, message="the ready line") and ready["line"]
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"no ready line within {timeout} s; see {self.log_path}")
        if not line.startswith("mockshift listening on http://"):
            self.kill()
            raise RuntimeError(f"unexpected ready line {line!r}; see {self.log_path}")
        parsed = urllib.parse.urlsplit(line.split()[-1])
        self.host, self.port = parsed.hostname, parsed.port
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """kill -9, then reap."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout=10.0):
        """SIGTERM; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


class Unanswered(Exception):
    """No complete HTTP answer arrived (connection refused, reset, cut mid-body, or timed out)."""


class Conn:
    """A keep-alive HTTP/1.1 connection to `daemon` with an API key; reconnects after an error."""

    def __init__(self, daemon, key, timeout=15.0):
        self.host, self.port = daemon.host, daemon.port
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None):
        """Sends one request (`path` from the server root: `/v1/...` or `/_mock/...`); returns (status, JSON
        or text). Raises `Unanswered` when the whole answer did not arrive."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            payload = None if body is None else json.dumps(body).encode()
            self.conn.request(method, path, body=payload, headers=self.headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise Unanswered(f"{method} {path}: {type(error).__name__}: {error}") from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode("utf-8", "replace")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def integrity_check(db):
    """`PRAGMA integrity_check` on the database file, opened read-only: 'ok' when sound, else SQLite's report."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
    finally:
        connection.close()


def query(db, sql, parameters=()):
    """Rows of a read-only query on the database file."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()
