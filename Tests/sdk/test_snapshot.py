"""`mockshift snapshot` (issue 15 item 1): an account read through the public API of an upstream (here a second
MockShift daemon, seeded through the SDK), written as fixture files that `serve --fixtures` and `scripts/seed` load."""
import json
import os
import pathlib
import re
import subprocess
import sys
import uuid

import pytest
import requests
from vectorshift.agent import Agent, IoConfig, LlmInfo
from vectorshift.chatbot import Chatbot

from conftest import BIN, REPO, Daemon, point_sdk

SECRET = "sk-snapshot-" + uuid.uuid4().hex  # an OpenAI-shaped key in an LLM node's api_key
AGENT_SECRET = "agent-secret-" + uuid.uuid4().hex  # no key shape: found by its field's name only


def snapshot(url, key, out, *args, timeout=120):
    """`mockshift snapshot --from URL --api-key KEY --out OUT ARGS…`."""
    return subprocess.run([str(BIN), "snapshot", "--from", url, "--api-key", key, "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout)


def chat_pipeline(Pipeline, name, *, secret=SECRET, deploys=2):
    """question → llm (with a personal api_key) → answer, deployed `deploys` times (1.0.0, 1.0.1, …), then one more
    node saved without deploying: the working state and the latest deployed version differ."""
    pipeline = Pipeline.new(name=name)
    question = pipeline.add(name="question", id="question").input(input_type="string")
    llm = pipeline.add(name="llm", id="llm").llm(provider="openai", model="gpt-4o", prompt=question.text,
                                                 use_personal_api_key=True, api_key=secret)
    pipeline.add(name="answer", id="answer").output(output_type="string", value=llm.response)
    for _ in range(deploys):
        pipeline.save(deploy=True)
    pipeline.add(name="shout", id="shout").text_formatter(text=question.text, formatter="To Uppercase")
    pipeline.save(deploy=False)
    return pipeline


def plain_pipeline(Pipeline, name):
    pipeline = Pipeline.new(name=name)
    word = pipeline.add(name="word", id="word").input(input_type="string")
    text = pipeline.add(name="greeting", id="greeting").text(text=f"Hello {word.text}!")
    pipeline.add(name="out", id="out").output(output_type="string", value=text.text)
    pipeline.save(deploy=True)
    return pipeline


def functional_agent(name, secret=AGENT_SECRET):
    return Agent.new(name=name, llm_info=LlmInfo(provider="openai", model_id="gpt-4o", api_key=secret),
                     instructions="Summarise [[inputs.topic]] for a child.",
                     inputs={"topic": IoConfig(io_type="string")}, outputs={"summary": IoConfig(io_type="string")})


def structure(nodes):
    """A pipeline's nodes as the SDK sees them: id → (type, name, inputs without api_key)."""
    return {node_id: (node["type"], node["name"], {k: v for k, v in node["inputs"].items() if k != "api_key"})
            for node_id, node in nodes.items()}


def raw_fetch(daemon, key, **query):
    r = requests.get(f"{daemon.url}/pipeline", params=query, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["object"]


def read_folder(folder):
    return {path.name: path.read_bytes() for path in sorted(pathlib.Path(folder).iterdir())}


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    """An upstream daemon holding one key's account: two pipelines (one with a secret and two deployed versions
    behind its working state), a chatbot, a functional agent with a key in its llm_client_key."""
    upstream = Daemon(tmp_path_factory.mktemp("upstream") / "db.sqlite3", "--time-scale", "0").start()
    key = f"upstream-{uuid.uuid4().hex[:8]}"
    Pipeline = point_sdk(upstream, key)
    chat = chat_pipeline(Pipeline, "snap_chat")
    plain_pipeline(Pipeline, "snap_plain")
    Chatbot.new(name="snap_bot", description="answers", pipeline_id=chat.id)
    functional_agent("snap_agent")
    yield upstream, key
    upstream.stop()


def test_snapshot_serves_the_same_pipelines_chatbots_and_agents(account, new_daemon, tmp_path):
    upstream, key = account
    out = tmp_path / "out"
    done = snapshot(upstream.root, key, out)
    assert done.returncode == 0, done.stderr
    assert sorted(read_folder(out)) == ["agent-snap_agent.json", "chatbot-snap_bot.json",
                                        "pipeline-snap_chat.json", "pipeline-snap_plain.json"]
    assert "snapshot: pipeline 1/2" in done.stderr and "snapshot: agent 1/1 snap_agent" in done.stderr
    bot_file = json.loads((out / "chatbot-snap_bot.json").read_text())
    assert bot_file["chatbots"][0]["pipeline"] == "snap_chat", "a chatbot names its pipeline by name"

    served = new_daemon("--time-scale", "0", "--fixtures", str(out))
    other_key = f"served-{uuid.uuid4().hex[:8]}"
    # Pipelines: the same names, nodes, working state and latest deployed version (with its number).
    Pipeline = point_sdk(upstream, key)
    before = {p.name: raw_fetch(upstream, key, id=p.id) for p in Pipeline.list(verbose=True)}
    before_deployed = raw_fetch(upstream, key, id=before["snap_chat"]["_id"], version="latest")
    before_runs = {name: Pipeline.fetch(name=name).run(inputs=inputs)["outputs"]
                   for name, inputs in [("snap_chat", {"question": "Write 30 words about owls."}), ("snap_plain", {"word": "snap"})]}
    before_bot = Chatbot.fetch(name="snap_bot").run("Hello there")["output_message"]
    before_agent = Agent.fetch(name="snap_agent")
    before_agent_run = before_agent.run(inputs={"topic": "owls"}).outputs

    Pipeline = point_sdk(served, other_key)
    after = {p.name: raw_fetch(served, other_key, id=p.id) for p in Pipeline.list(verbose=True)}
    assert sorted(after) == sorted(before) == ["snap_chat", "snap_plain"]
    for name in before:
        assert structure(after[name]["nodes"]) == structure(before[name]["nodes"]), name
    assert after["snap_chat"]["currentVersion"] == before["snap_chat"]["currentVersion"] == "1.0.1"
    after_deployed = raw_fetch(served, other_key, id=after["snap_chat"]["_id"], version="1.0.1")
    assert structure(after_deployed["nodes"]) == structure(before_deployed["nodes"])
    assert "shout" in after["snap_chat"]["nodes"] and "shout" not in after_deployed["nodes"]
    assert after["snap_chat"]["nodes"]["llm"]["inputs"]["api_key"] == "<redacted:api_key>"
    for name, inputs in [("snap_chat", {"question": "Write 30 words about owls."}), ("snap_plain", {"word": "snap"})]:
        assert Pipeline.fetch(name=name).run(inputs=inputs)["outputs"] == before_runs[name], name
    # The chatbot runs the same deployed pipeline and answers the same.
    assert Chatbot.fetch(name="snap_bot").run("Hello there")["output_message"] == before_bot
    # The agent keeps the ids the SDK minted, and answers the same.
    agent = Agent.fetch(name="snap_agent")
    assert {n: io.server_id for n, io in agent.inputs.items()} == {n: io.server_id for n, io in before_agent.inputs.items()}
    assert agent.instructions == before_agent.instructions
    assert agent.run(inputs={"topic": "owls"}).outputs == before_agent_run

    # scripts/seed loads the same files into a running daemon.
    seed_key = f"seed-{uuid.uuid4().hex[:8]}"
    plain = new_daemon("--time-scale", "0")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "seed"), str(out), "--url", plain.root,
                           "--api-key", seed_key], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "seeded 2 pipeline(s), 1 chatbot(s), 1 agent(s)" in done.stdout
    Pipeline = point_sdk(plain, seed_key)
    seeded = Pipeline.fetch(name="snap_chat")
    assert structure(raw_fetch(plain, seed_key, id=seeded.id)["nodes"]) == structure(before["snap_chat"]["nodes"])
    assert structure(raw_fetch(plain, seed_key, id=seeded.id, version="latest")["nodes"]) == structure(before_deployed["nodes"])
    assert Chatbot.fetch(name="snap_bot").run("Hello there")["output_message"] == before_bot
    assert Agent.fetch(name="snap_agent").run(inputs={"topic": "owls"}).outputs == before_agent_run


def test_secrets_never_reach_a_file_and_are_listed_on_stderr(account, tmp_path):
    upstream, key = account
    out = tmp_path / "out"
    done = snapshot(upstream.root, key, out)
    assert done.returncode == 0, done.stderr
    for name, content in read_folder(out).items():
        assert SECRET.encode() not in content and AGENT_SECRET.encode() not in content, name
    assert SECRET not in done.stderr and AGENT_SECRET not in done.stderr
    assert "snapshot: redacted pipeline 'snap_chat' node 'llm' field 'api_key'" in done.stderr
    assert "snapshot: redacted agent 'snap_agent' field 'llm_client_key.api_key'" in done.stderr
    agent = json.loads((out / "agent-snap_agent.json").read_text())["agents"][0]
    assert agent["llm_client_key"]["api_key"] == "<redacted:api_key>"


def test_a_second_snapshot_of_an_unchanged_account_changes_no_byte(account, tmp_path):
    upstream, key = account
    first = snapshot(upstream.root, key, tmp_path / "a")
    assert first.returncode == 0, first.stderr
    files = read_folder(tmp_path / "a")
    assert all(content.endswith(b"\n") for content in files.values())
    again = snapshot(upstream.root, key, tmp_path / "a")
    assert again.returncode == 0, again.stderr
    assert "0 file(s) written, 4 unchanged" in again.stderr
    assert read_folder(tmp_path / "a") == files
    elsewhere = snapshot(upstream.root, key, tmp_path / "b")
    assert read_folder(tmp_path / "b") == files
    text = (tmp_path / "a" / "pipeline-snap_plain.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_one_object_that_fails_is_reported_and_the_rest_written(new_daemon, tmp_path):
    upstream = new_daemon("--time-scale", "0")
    key = f"faulty-{uuid.uuid4().hex[:8]}"
    Pipeline = point_sdk(upstream, key)
    chat = chat_pipeline(Pipeline, "f_chat", deploys=1)
    plain_pipeline(Pipeline, "f_plain")
    Chatbot.new(name="f_bot", description="", pipeline_id=chat.id)
    functional_agent("f_agent_one")
    functional_agent("f_agent_two")
    out = tmp_path / "out"
    assert snapshot(upstream.root, key, out).returncode == 0
    complete = read_folder(out)
    assert len(complete) == 5

    headers = {"Authorization": f"Bearer {key}"}
    for rule in ({"method": "GET", "path": "/v1/chatbot", "status": 503, "body": {"error": "Service Unavailable"}, "times": 1},
                 {"method": "GET", "path": "/v1/agent", "status": 200, "body": {"status": "success"}, "times": 1}):
        assert requests.post(f"{upstream.root}/_mock/faults", json=rule, headers=headers).status_code == 200
    # Something changed upstream meanwhile: the pipelines that can be read are written again.
    plain = Pipeline.fetch(name="f_plain")
    plain.add(name="extra", id="extra").text(text="new")
    plain.save(deploy=False)
    done = snapshot(upstream.root, key, out)
    assert done.returncode == 3, done.stderr
    assert "snapshot: failed: chatbot 'f_bot': HTTP 503: Service Unavailable" in done.stderr
    failed_agents = [line for line in done.stderr.splitlines() if line.startswith("snapshot: failed: agent ")]
    assert len(failed_agents) == 1 and "no object in the answer" in failed_agents[0], done.stderr
    assert "2 pipeline(s), 0 chatbot(s), 1 agent(s)" in done.stderr and "2 failure(s)" in done.stderr
    now = read_folder(out)
    assert now.keys() == complete.keys(), "the failed objects' files of the first snapshot are kept"
    assert now["chatbot-f_bot.json"] == complete["chatbot-f_bot.json"]
    assert b'"extra"' in now["pipeline-f_plain.json"], "the readable objects were written"


def test_an_unreachable_upstream_or_a_refused_key_is_one_clear_line(new_daemon, tmp_path):
    out = tmp_path / "out"
    done = snapshot("http://127.0.0.1:9", "key", out)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mockshift snapshot: http://127.0.0.1:9/v1: cannot reach the upstream: "), done.stderr
    assert not out.exists()
    guarded = new_daemon("--api-key", "the-right-key")
    done = snapshot(guarded.root, "a-wrong-key", out)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"mockshift snapshot: {guarded.url}: the upstream refused the API key (HTTP 401: Invalid API key: verification failed)"]
    done = subprocess.run([str(BIN), "snapshot", "--from", guarded.root, "--out", str(out)], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 64 and "API key" in done.stderr


def test_objects_are_picked_by_name_and_by_folder(new_daemon, tmp_path):
    upstream = new_daemon("--time-scale", "0")
    key = f"picks-{uuid.uuid4().hex[:8]}"
    Pipeline = point_sdk(upstream, key)
    chat = chat_pipeline(Pipeline, "p_chat", deploys=1)
    plain = plain_pipeline(Pipeline, "p_plain")
    plain_pipeline(Pipeline, "p_other")
    Chatbot.new(name="p_bot", description="", pipeline_id=chat.id)
    functional_agent("p_agent")
    done = snapshot(upstream.root, key, tmp_path / "named", "--chatbot", "p_bot", "--agent", "p_agent",
                    "--pipeline", "p_plain", "--pipeline", "missing")
    assert done.returncode == 3 and "snapshot: failed: pipeline 'missing': no pipeline of that name" in done.stderr
    assert sorted(read_folder(tmp_path / "named")) == ["agent-p_agent.json", "chatbot-p_bot.json",
                                                      "pipeline-p_chat.json", "pipeline-p_plain.json"]
    chat.move_to_folder("folder-1")
    plain.move_to_folder("folder-1")
    done = snapshot(upstream.root, key, tmp_path / "folder", "--folder", "folder-1")
    assert done.returncode == 0, done.stderr
    assert sorted(read_folder(tmp_path / "folder")) == ["chatbot-p_bot.json", "pipeline-p_chat.json", "pipeline-p_plain.json"]
    assert json.loads((tmp_path / "folder" / "pipeline-p_plain.json").read_text())["folder_id"] == "folder-1"


def test_readme_snapshot_example_runs_as_written(account, new_daemon, tmp_path):
    blocks = re.findall(r"<!-- snapshot-example -->\s*```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "README.md must hold exactly one snapshot example block"
    upstream, key = account
    daemon = new_daemon()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "mockshift").symlink_to(BIN)
    (tmp_path / "scripts").symlink_to(REPO / "scripts")
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", UPSTREAM=upstream.root, DAEMON=daemon.root,
               VECTORSHIFT_API_KEY=key)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, f"the example failed:\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "pipeline-snap_chat.json" in done.stdout and "0 file(s) written, 4 unchanged" in done.stdout, done.stdout
    assert "seeded 2 pipeline(s), 1 chatbot(s), 1 agent(s)" in done.stdout, done.stdout
    Pipeline = point_sdk(daemon, "test-key")
    assert sorted(p.name for p in Pipeline.list(verbose=True)) == ["snap_chat", "snap_plain"]


def test_an_upstream_url_with_a_query_is_a_bad_option_for_snapshot_and_record(tmp_path):
    """`…/v1?x=1` would make every API path land after the query: refused at once (exit 64), not read as 404s."""
    done = snapshot("http://127.0.0.1:9/v1?x=1", "key", tmp_path / "out")
    assert done.returncode == 64 and "--from must be an http:// or https:// URL without a query" in done.stderr, done.stderr
    done = subprocess.run([str(BIN), "serve", "--port", "0", "--db", ":memory:", "--record", "http://127.0.0.1:9/v1?x=1",
                           "--record-dir", str(tmp_path / "rec")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 64 and "--record must be an http:// or https:// URL without a query" in done.stderr, done.stderr


def test_a_record_dir_that_cannot_be_written_is_refused_at_start(tmp_path):
    """A recording that cannot be kept must not look like one that is: the start fails naming the folder."""
    (tmp_path / "afile").write_text("not a folder")
    done = subprocess.run([str(BIN), "serve", "--port", "0", "--db", ":memory:", "--record", "http://127.0.0.1:9",
                           "--record-dir", str(tmp_path / "afile" / "sub")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 64, (done.returncode, done.stderr)
    assert f"--record-dir {tmp_path / 'afile' / 'sub'}: cannot write there" in done.stderr, done.stderr
