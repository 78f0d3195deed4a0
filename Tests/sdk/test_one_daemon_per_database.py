"""One database file belongs to one daemon (issue 11 item 3): a second daemon on the same file is refused
(exit 75) before it writes anything, and a daemon that cannot start leaves the file untouched."""
import pathlib
import signal
import socket
import subprocess
import threading

import requests

from conftest import BIN, build_llm_pipeline, build_streaming_pipeline, point_sdk, unique, wait_for

DATABASE_IN_USE = 75  # EX_TEMPFAIL, README "Options of mockshift serve"


def serve(*args, timeout=30):
    """Runs `mockshift serve ARGS` to its end (a start that must fail) and returns the finished process."""
    return subprocess.run([str(BIN), "serve", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def snapshot(db):
    """Bytes and modification times of the database and its WAL files, as they are on disk now."""
    files = {}
    for path in [db, pathlib.Path(f"{db}-wal"), pathlib.Path(f"{db}-shm")]:
        if path.exists():
            files[path.name] = (path.read_bytes(), path.stat().st_mtime_ns)
    return files


def test_second_daemon_on_the_same_port_and_file_leaves_the_first_daemons_live_runs_alone(new_daemon, api_key, tmp_path):
    db = tmp_path / "shared.sqlite3"
    first = new_daemon("--tokens-per-second", "40", db=db)
    Pipeline = point_sdk(first, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("owner"))
    background = pipeline.start(inputs={"input_0": "Write 200 words."})
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(pipeline.stream(inputs={"input_0": "Write 200 words."})),
                              daemon=True)
    reader.start()
    wait_for(lambda: any(c.type == "stream" for c in list(chunks)), message="the first token of the stream")
    port = first.url.split(":")[2].split("/")[0]

    second = serve("--port", port, "--db", str(db))

    assert second.returncode == DATABASE_IN_USE, (second.returncode, second.stderr)
    assert str(db) in second.stderr and f"mockshift (pid {first.proc.pid})" in second.stderr, second.stderr
    assert background.run_status()["status"] == "in_progress", "the refused daemon must not touch the owner's runs"
    assert first.alive()
    reader.join(60)
    final = [c for c in chunks if c.type == "result"]
    assert [c.status for c in final] == ["completed"], final
    assert pipeline.run_status(final[0].run_id)["status"] == "completed", "stored status agrees with the stream"
    assert wait_for(lambda: background.run_status()["status"] != "in_progress", timeout=60,
                    message="the background run's end") and background.run_status()["status"] == "completed"


def test_second_daemon_on_another_port_of_the_same_file_is_refused_and_a_restart_after_the_first_stops_works(
        new_daemon, api_key, tmp_path):
    db = tmp_path / "owned.sqlite3"
    first = new_daemon(db=db)
    Pipeline = point_sdk(first, api_key)
    name = unique("kept")
    pipeline = build_llm_pipeline(Pipeline, name)
    live = pipeline.start(inputs={"input_0": "Write 1000 words."})

    second = serve("--port", "0", "--db", str(db))

    assert second.returncode == DATABASE_IN_USE, (second.returncode, second.stderr)
    assert "mockshift listening" not in second.stdout
    assert f"database {db} is in use by mockshift (pid {first.proc.pid})" in second.stderr, second.stderr
    assert live.run_status()["status"] == "in_progress"
    link = tmp_path / "link.sqlite3"
    link.symlink_to(db)
    through_link = serve("--port", "0", "--db", str(link))
    assert through_link.returncode == DATABASE_IN_USE, "a symbolic link names the same file: " + through_link.stderr
    (tmp_path / "elsewhere").mkdir()
    hard = tmp_path / "elsewhere" / "hard.sqlite3"
    hard.hardlink_to(db)  # another name, another folder: only the file itself knows (found by review)
    through_hard_link = serve("--port", "0", "--db", str(hard))
    assert through_hard_link.returncode == DATABASE_IN_USE, "a hard link is the same file: " + through_hard_link.stderr
    assert "hard link" in through_hard_link.stderr, through_hard_link.stderr
    assert live.run_status()["status"] == "in_progress"

    assert first.stop(signal.SIGTERM) == 0
    third = new_daemon(db=db)
    Pipeline = point_sdk(third, api_key)
    assert Pipeline.fetch(name=name).id == pipeline.id
    assert Pipeline.fetch(name=name).run_status(live.task_id)["error"] == "run interrupted: server shut down"


def test_a_start_that_cannot_listen_leaves_the_database_file_byte_for_byte_untouched(new_daemon, api_key, tmp_path):
    db = tmp_path / "crashed.sqlite3"
    first = new_daemon(db=db)
    Pipeline = point_sdk(first, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("cut"))
    cut = pipeline.start(inputs={"input_0": "Write 1000 words."})
    assert cut.run_status()["status"] == "in_progress"
    first.stop(signal.SIGKILL)  # a crash: the file holds a run still marked in progress, for the next start
    before = snapshot(db)
    assert before, "the crashed daemon left its database"

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        refused = serve("--port", str(taken.getsockname()[1]), "--db", str(db), "--keep-runs", "1")
    bad_option = serve("--port", "0", "--db", str(db), "--ttft-ms=-5")

    assert refused.returncode == 1 and "cannot listen" in refused.stderr, refused.stderr
    assert bad_option.returncode == 64, bad_option.stderr
    assert snapshot(db) == before, "a daemon that did not start wrote to the database"
    restarted = new_daemon(db=db)
    status = point_sdk(restarted, api_key).fetch(id=pipeline.id).run_status(cut.task_id)
    assert status["status"] == "failed" and status["error"] == "run interrupted: server restarted", \
        "the first successful start is the one that recovers the interrupted run"


def test_in_memory_daemons_need_no_lock_and_run_side_by_side(new_daemon):
    one = new_daemon(db=":memory:")
    two = new_daemon(db=":memory:")
    for d in (one, two):
        assert requests.get(f"{d.root}/_mock/health", timeout=10).json()["status"] == "ok"
