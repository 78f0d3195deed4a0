"""The README's agent example (issue 13, "an SDK example that stops an agent's answer mid-stream, run by the test
command"): extracted from README.md at test time and run unmodified as a script against a fresh daemon, with the
two environment variables the README tells users to set."""
import os
import re
import subprocess
import sys

from conftest import REPO


def test_readme_agent_example_runs_as_written(new_daemon, tmp_path, api_key):
    blocks = re.findall(r"<!-- agent-example -->\s*```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "README.md must hold exactly one agent example block"
    script = tmp_path / "agent_example.py"
    script.write_text(blocks[0])
    daemon = new_daemon()
    env = dict(os.environ, VECTORSHIFT_BASE_URL=daemon.url, VECTORSHIFT_API_KEY=api_key)
    env.pop("VECTORSHIFT_WS_URL", None)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the example failed:\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert lines[0] == "answer: complete True", done.stdout
    assert lines[1] == "stopped after: 3 deltas", done.stdout
    assert re.fullmatch(r"resume refused: Server error while waiting for session_connected: session [0-9a-f]{24} "
                        r"was terminated", lines[2]), done.stdout
