"""The README's chatbot example (issue 12: "a complete SDK example (stream, stop after three tokens, next turn) that
the test command runs"): extracted from README.md at test time and run unmodified as a script against a fresh
daemon, with the two environment variables the README tells users to set."""
import os
import re
import subprocess
import sys

from conftest import REPO


def test_readme_chatbot_example_runs_as_written(new_daemon, tmp_path, api_key):
    blocks = re.findall(r"<!-- chatbot-example -->\s*```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "README.md must hold exactly one chatbot example block"
    script = tmp_path / "chat_example.py"
    script.write_text(blocks[0])
    daemon = new_daemon()
    env = dict(os.environ, VECTORSHIFT_BASE_URL=daemon.url, VECTORSHIFT_API_KEY=api_key)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the example failed:\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert lines[0].startswith("stopped: terminated "), done.stdout
    assert lines[1] == "next turn: success", done.stdout
    assert lines[2].startswith("[('stopped', ") and "('completed', " in lines[2], done.stdout
