"""scripts/crash-drill in its short form: three kill -9s under about a second of load each, restarting on the same
database; every answer given before a kill must still hold after the restart (SPEC §1, §3, §4). And the drill
can fail: told to expect another restart error than SPEC §1's, it reports the interrupted runs."""
import json
import subprocess
import sys

from conftest import BIN, REPO


def drill(tmp_path, *args):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "crash-drill"), "--bin", str(BIN), "--json",
                             "--workdir", str(tmp_path), *args], capture_output=True, text=True, timeout=120)
    summary = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None
    return result, summary


def test_short_crash_drill_keeps_every_reported_fact(tmp_path):
    result, summary = drill(tmp_path, "--rounds", "3", "--seconds", "1")
    assert result.returncode == 0, f"crash-drill failed:\n{result.stdout}\n{result.stderr}"
    assert summary["violations"] == 0
    assert summary["interrupted"] > 0, f"no run was cut by a kill, so the restart rule went untested:\n{result.stdout}"
    assert summary["facts_checked"] > 200, result.stdout


def test_crash_drill_fails_when_an_invariant_does_not_hold(tmp_path):
    result, summary = drill(tmp_path, "--rounds", "2", "--seconds", "1", "--restart-error", "run interrupted: power cut")
    assert result.returncode == 1, f"expected violations:\n{result.stdout}\n{result.stderr}"
    assert summary["violations"] > 0
    assert "was unfinished at the kill" in result.stdout, result.stdout
