"""Shared pieces of the benchmark scripts (scripts/bench-*): the release build, a daemon on a temporary database,
the C programs of scripts/bench-c (clients and baseline servers), a keep-alive JSON client, percentiles, the
daemon's memory, the machine line, and the `figure:` lines that scripts/bench gathers into one table. Standard
library only; loopback only."""
import datetime
import http.client
import json
import os
import pathlib
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time

from drill_support import wait_for

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = REPO / ".build" / "release" / "mockshift"

# input_0 -> llm -> output_0, the docs example's shape.
LLM_NODES = {
    "input_0": {"id": "input_0", "name": "input_0", "type": "input", "inputs": {"input_type": "string"}, "outputs": ["text"]},
    "llm": {"id": "llm", "name": "llm", "type": "llm",
            "inputs": {"provider": "openai", "model": "gpt-4o", "prompt": "{{ input_0.text }}"}, "outputs": ["response"]},
    "output_0": {"id": "output_0", "name": "output_0", "type": "output",
                 "inputs": {"output_type": "string", "value": "{{ llm.response }}"}, "outputs": []},
}


def machine(quick=False):
    """The machine line of a benchmark table: cores and CPU, RAM, kernel, commit, date."""
    cpu = "unknown CPU"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(next(l for l in pathlib.Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal")).split()[1])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}; commit {commit or '?'}; {datetime.date.today().isoformat()}"
            f"{'; --quick' if quick else ''}")


def build_release():
    """Builds the release daemon (progress goes to stderr so stdout keeps only the figures)."""
    subprocess.run(["swift", "build", "-c", "release", "--product", "mockshift"], cwd=REPO, check=True,
                   stdout=sys.stderr)


def build_c(source, out, microhttpd=False):
    """Compiles scripts/bench-c/SOURCE to OUT with gcc -O2 (linked with libmicrohttpd when asked); returns OUT."""
    libs = []
    if microhttpd:
        libs = shlex.split(subprocess.run(["pkg-config", "--cflags", "--libs", "libmicrohttpd"], check=True,
                                          capture_output=True, text=True).stdout)
    subprocess.run(["gcc", "-O2", "-o", str(out), str(REPO / "scripts" / "bench-c" / source), *libs, "-lpthread"],
                   check=True)
    return str(out)


def raise_file_limit():
    """Lifts this process's open-file limit (and its children's) to the hard limit: thousands of sockets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def key_values(line):
    """`a=1 b=x` (what the C clients print) as a dict of strings."""
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


class CServer:
    """A baseline server of scripts/bench-c started as `BINARY ARGS...`; it prints `ready [PORT]` once listening.
    `port` is the one it printed, else `port` given here."""

    def __init__(self, binary, *args, port=None):
        self.argv = [str(binary), *[str(a) for a in args]]
        self.port = port
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise SystemExit(f"{self.argv[0]} did not start")
        if len(line) > 1:
            self.port = int(line[1])
        return self

    @property
    def pid(self):
        return self.proc.pid

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def figure(name, value, target="-", met=None):
    """Prints one line for scripts/bench's table: `figure: NAME | VALUE | TARGET | ok/MISSED/-`."""
    verdict = "-" if met is None else ("ok" if met else "MISSED")
    print(f"figure: {name} | {value} | {target} | {verdict}", flush=True)


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))]


def proc_status(pid):
    """/proc/PID/status as a dict (VmRSS, VmHWM, Threads, ...)."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def rss_mb(pid, key="VmRSS"):
    return int(proc_status(pid)[key].split()[0]) / 1024


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Daemon:
    """`mockshift serve --port 0` on `db`; `start()` returns the seconds from spawn to the ready line."""

    def __init__(self, db, *args):
        self.db = str(db)
        self.args = [str(a) for a in args]
        self.proc = None
        self.host = self.port = None

    def start(self):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([str(BIN), "serve", "--port", "0", "--db", self.db, "--log-level", "warning",
                                      *self.args], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        took = time.perf_counter() - t0
        if not line.startswith("mockshift listening on http://"):
            raise SystemExit(f"daemon did not start: {line!r}")
        self.host, port = line.split()[-1].removeprefix("http://").removesuffix("/v1").rsplit(":", 1)
        self.port = int(port)
        return took

    @property
    def pid(self):
        return self.proc.pid

    def client(self, key="bench"):
        return Client(self.host, self.port, key)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Client:
    """One keep-alive connection speaking JSON with a key."""

    def __init__(self, host, port, key="bench"):
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
        r = self.conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data or b"null")
        except ValueError:
            return r.status, data.decode(errors="replace")

    def close(self):
        self.conn.close()


def in_threads(daemon, jobs, threads=4, key="bench"):
    """Runs `job(client)` for every job in `jobs` on `threads` connections at once; returns the results in order."""
    results = [None] * len(jobs)
    lock = threading.Lock()
    next_job = [0]

    def worker():
        c = daemon.client(key)
        while True:
            with lock:
                i = next_job[0]
                next_job[0] += 1
            if i >= len(jobs):
                break
            results[i] = jobs[i](c)
        c.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


def wait_until(condition, timeout, interval=0.05, what="condition"):
    """drill_support.wait_for, ending the benchmark with a message rather than a traceback on timeout."""
    try:
        return wait_for(condition, timeout, interval, what)
    except TimeoutError as error:
        raise SystemExit(str(error))
