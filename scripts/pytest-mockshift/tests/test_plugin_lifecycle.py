"""The plugin's daemon dies with the pytest process that started it (issue 11 item 5), and a failed test's report
names its key, the daemon's URL and its dashboard (item 12). Each test runs an inner pytest in a subprocess."""
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import requests

REPO = pathlib.Path(__file__).resolve().parents[3]


def inner_env(**extra):
    env = dict(os.environ, MOCKSHIFT_BIN=os.environ.get("MOCKSHIFT_BIN", str(REPO / ".build" / "debug" / "mockshift")))
    env.update(extra)
    return env


def inner_pytest(tmp_path, *args):
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)]


def wait_for(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message}")
        time.sleep(0.05)


def gone(pid):
    """True once `pid` has exited (a zombie counts: an init that does not reap must not fail the test)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_the_daemon_of_a_pytest_xdist_worker_that_dies_stops_with_it(tmp_path):
    pid_file = tmp_path / "daemon.pid"
    (tmp_path / "test_dies.py").write_text(
        "import os, pathlib\n"
        "def test_worker_dies(mockshift):\n"
        f"    pathlib.Path({str(pid_file)!r}).write_text(str(mockshift.pid))\n"
        "    os._exit(1)\n"
        "def test_other_worker_goes_on(mockshift):\n"
        "    assert mockshift.stats()['status'] == 'ok'\n")
    done = subprocess.run(inner_pytest(tmp_path, "-n", "2"), cwd=tmp_path, env=inner_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and re.search(r"crashed|1 failed", done.stdout), done.stdout + done.stderr
    daemon = int(pid_file.read_text())
    wait_for(lambda: gone(daemon), 10, f"daemon {daemon} of the dead worker to exit")


def test_the_daemon_of_a_pytest_killed_with_sigkill_stops_with_it(tmp_path):
    pid_file, url_file = tmp_path / "daemon.pid", tmp_path / "daemon.url"
    (tmp_path / "test_held.py").write_text(
        "import pathlib, threading\n"
        "def test_held_until_killed(mockshift):\n"
        f"    pathlib.Path({str(url_file)!r}).write_text(mockshift.server.root)\n"
        f"    pathlib.Path({str(pid_file)!r}).write_text(str(mockshift.pid))\n"
        "    threading.Event().wait(300)  # until the outer test kills this pytest\n")
    inner = subprocess.Popen(inner_pytest(tmp_path), cwd=tmp_path, env=inner_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the inner test to start its daemon")
        daemon = int(pid_file.read_text())
        assert requests.get(f"{url_file.read_text()}/_mock/health", timeout=10).status_code == 200
        inner.send_signal(signal.SIGKILL)
        inner.wait(10)
        wait_for(lambda: gone(daemon), 10, f"daemon {daemon} of the killed pytest to exit")
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()


def test_a_failed_tests_report_names_its_key_the_daemon_url_and_the_dashboard(tmp_path):
    key_file = tmp_path / "key"
    (tmp_path / "test_fails.py").write_text(
        "import pathlib\n"
        "from vectorshift.pipeline import Pipeline\n"
        "def test_fails(mockshift):\n"
        f"    pathlib.Path({str(key_file)!r}).write_text(mockshift.api_key)\n"
        "    Pipeline.new(name='kept-for-the-dashboard')\n"
        "    assert False, 'the failure'\n"
        "def test_passes(mockshift):\n"
        "    pass\n")
    done = subprocess.run(inner_pytest(tmp_path, "-p", "no:xdist"), cwd=tmp_path, env=inner_env(),
                          capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 1 and "1 failed, 1 passed" in out, out + done.stderr
    key = key_file.read_text()
    section = re.search(r"-+ mockshift -+\n(.*)\n", out)
    assert section, f"no mockshift section in the failure report:\n{out}"
    line = section.group(1)
    assert f"api key {key}" in line, line
    assert re.search(r"url http://127\.0\.0\.1:\d+/v1 ", line) and re.search(r"dashboard http://127\.0\.0\.1:\d+/ ", line), line
    assert out.count("-- mockshift --") == 1, "only the failed test gets the section"
