"""scripts/race-sweep with 200 runs: terminates spread around the completion moment (the offset follows the race
point), sync and background. No final status ever changes, terminate answers agree with the run, and both
outcomes occur: some terminates win, some come after completion (else the sweep missed the race window)."""
import json
import subprocess
import sys

from conftest import BIN, REPO


def test_race_sweep_of_200_runs_finds_no_violation_and_sees_both_outcomes(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "race-sweep"), "--bin", str(BIN), "--runs", "200",
                             "--json", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"race-sweep failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["violations"] == 0
    assert summary["runs"] == 200
    assert summary["terminated_before_completion"] > 0 and summary["completed_before_terminate"] > 0, result.stdout
