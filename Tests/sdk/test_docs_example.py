"""The user's reference: the docs example "Terminate a run", extracted from ../shared/seeds/ at test time and run
unmodified as a subprocess against a fresh daemon, twice (first creates the pipeline, second fetches it).

../shared is beside the repository in CI only: in a user's clone these tests skip, naming what is missing; with
`CI` set they fail instead (see conftest.need_shared)."""
import os
import re
import subprocess
import sys

from conftest import SHARED, need_shared


def extract_example():
    """The example's code, from the seeds under ../shared (skips, or fails under CI, when they are not there)."""
    seeds = need_shared("the docs example (the seeds of ../shared)", SHARED / "seeds")
    for path in sorted(seeds.glob("*.txt")):
        text = path.read_text()
        if "handler.terminate()" in text and "import time" in text:
            start = text.index("import time")
            end = text.index("Expected output", start)
            return text[start:end]
    raise AssertionError(f"no seed with the terminate example under {seeds}")


def run_example(daemon, tmp_path):
    script = tmp_path / "terminate_example.py"
    script.write_text(extract_example())
    env = dict(os.environ, VECTORSHIFT_BASE_URL=daemon.url, VECTORSHIFT_API_KEY="docs-example-key")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"example failed:\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def check_output(out):
    assert re.search(r"^Started: [0-9a-f]{24}$", out, re.M), out
    assert re.search(r"^Terminated via handler: \{'status': 'success'", out, re.M), out
    assert re.search(r"^Status after termination: \{'status': 'terminated', ", out, re.M), out
    assert re.search(r"^Terminated via pipeline: \{'status': 'success'", out, re.M), out


def test_docs_example_runs_unmodified_twice(new_daemon, tmp_path):
    extract_example()  # skips (or fails under CI) before starting a daemon when ../shared is not there
    daemon = new_daemon()
    first = run_example(daemon, tmp_path)
    assert "Pipeline created: id=" in first, first
    check_output(first)
    second = run_example(daemon, tmp_path)
    assert "Pipeline fetched: id=" in second, second
    created_id = re.search(r"Pipeline created: id=([0-9a-f]{24})", first).group(1)
    assert f"Pipeline fetched: id={created_id}" in second
    check_output(second)
