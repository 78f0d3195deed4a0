"""Files uploaded to chatbot conversations through the official SDK (issue 12 item 5, SPEC §9 "Files", API-CHAT
§1.2): `chatbot.upload_files` / `aupload_files` (multipart) and the docs' JSON body, kept with the conversation
and read by the pipeline's `chat_file_reader` nodes on the conversation's later turns."""
import asyncio
import base64
import hashlib
import re

import pytest
from vectorshift.chatbot import Chatbot
from vectorshift.request import BadRequestError, NotFoundError

from conftest import Daemon, Http, point_sdk, unique

HEX24 = re.compile(r"^[0-9a-f]{24}$")


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    """A daemon of this module's own, with every simulated delay instant (--time-scale 0): turns end at once."""
    d = Daemon(tmp_path_factory.mktemp("files") / "mockshift.sqlite3", "--time-scale", "0").start()
    yield d
    d.stop()


@pytest.fixture
def setup(fast, api_key):
    """(the SDK's `Pipeline` class pointed at `fast` with this test's key, raw HTTP with the key)."""
    return point_sdk(fast, api_key), Http(fast, api_key)


def file_pipeline(Pipeline, name):
    """input_0 → files (chat_file_reader) → llm, whose prompt shows the documents then the user text → output_0
    (the answer); plus output `docs` = the reader's `documents`, so a test can read what a turn's run saw."""
    pipeline = Pipeline.new(name=name)
    message = pipeline.add(name="input_0", id="input_0").input(input_type="string")
    files = pipeline.add(name="files", id="files").chat_file_reader()
    llm = pipeline.add(name="llm", id="llm").llm(
        provider="openai", model="gpt-4o", prompt=f"Documents:\n{files.documents}\nUser: {message.text}")
    pipeline.add(name="output_0", id="output_0").output(output_type="string", value=llm.response)
    pipeline.add(name="docs", id="docs").output(output_type="string", value=files.documents)
    pipeline.save(deploy=True)
    return pipeline


def new_bot(Pipeline, prefix="files"):
    pipeline = file_pipeline(Pipeline, unique(f"{prefix}-pipe"))
    return pipeline, Chatbot.new(name=unique(prefix), description="", pipeline_id=pipeline.id, output_node_name="output_0")


def docs_seen(Pipeline, pipeline, answer):
    """The `documents` the turn's run handed on (its `docs` output), read through the run status."""
    status = Pipeline.fetch(id=pipeline.id).run_status(answer["run_id"])
    assert status["status"] == "completed", status
    return status["result"]["docs"]


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def conversation(http, cid):
    r = http("GET", f"/_mock/conversations/{cid}")
    assert r.status_code == 200, r.text
    return r.json()["conversation"]


def test_sdk_upload_starts_a_conversation_whose_turns_read_the_file_and_no_other_conversation_does(setup, tmp_path):
    Pipeline, http = setup
    pipeline, bot = new_bot(Pipeline)
    # The LLM answers this only when its prompt holds the file's text.
    r = http("POST", "/_mock/llm", json={"pipeline_id": pipeline.id, "prompt_pattern": "the password is ZEBRA-42",
                                         "response": "The file says ZEBRA-42."})
    assert r.status_code == 200, r.text
    text = "Notes\nthe password is ZEBRA-42\n"
    answer = bot.upload_files([write(tmp_path, "notes.txt", text.encode())])
    assert answer["status"] == "success" and answer["errors"] == []
    cid, kb = answer["conversation_id"], answer["knowledge_base_id"]
    assert HEX24.match(cid) and HEX24.match(kb) and cid != kb
    [uploaded] = answer["uploaded_files"]
    assert (uploaded["name"], uploaded["mime_type"], uploaded["size"]) == ("notes.txt", "text/plain", len(text))
    assert HEX24.match(uploaded["document_id"])

    turn = bot.run("What does my file say?", conversation_id=cid)
    assert turn["output_message"] == "The file says ZEBRA-42.", "the LLM prompt held the file's text"
    assert docs_seen(Pipeline, pipeline, turn) == [text]
    other = bot.run("What does my file say?")  # a new conversation: none of the first one's files
    assert other["conversation_id"] != cid
    assert other["output_message"] != "The file says ZEBRA-42."
    assert docs_seen(Pipeline, pipeline, other) == []


def test_files_reach_every_later_turn_in_upload_order_sync_and_async(setup, tmp_path):
    Pipeline, http = setup
    pipeline, bot = new_bot(Pipeline)
    first = bot.run("hello")  # a conversation started by a turn, without files
    cid = first["conversation_id"]
    assert docs_seen(Pipeline, pipeline, first) == []
    one = bot.upload_files([write(tmp_path, "one.md", b"# first file")], conversation_id=cid)
    assert one["conversation_id"] == cid and one["uploaded_files"][0]["mime_type"] == "text/markdown"

    async def upload_and_run():
        two = await bot.aupload_files([write(tmp_path, "two.txt", b"second file"), write(tmp_path, "three.csv", b"a,b\n1,2\n")],
                                      conversation_id=cid, message_index=2)
        return two, await bot.arun("and now?", conversation_id=cid)

    two, turn = asyncio.run(upload_and_run())
    assert two["conversation_id"] == cid
    assert two["knowledge_base_id"] == one["knowledge_base_id"], "one temporary knowledge base per conversation"
    assert [(f["name"], f["mime_type"], f["size"]) for f in two["uploaded_files"]] == [
        ("two.txt", "text/plain", 11), ("three.csv", "text/csv", 8)]
    assert docs_seen(Pipeline, pipeline, turn) == ["# first file", "second file", "a,b\n1,2\n"]
    # Not bound by any memory window: many turns later the files are all still there.
    for _ in range(3):
        later = bot.run("more", conversation_id=cid)
    assert docs_seen(Pipeline, pipeline, later) == ["# first file", "second file", "a,b\n1,2\n"]
    stored = conversation(http, cid)
    assert stored["knowledge_base_id"] == one["knowledge_base_id"]
    assert [(f["name"], f["message_index"], f["document_id"]) for f in stored["files"]] == [
        ("one.md", 0, one["uploaded_files"][0]["document_id"]),
        ("two.txt", 2, two["uploaded_files"][0]["document_id"]), ("three.csv", 2, two["uploaded_files"][1]["document_id"])]
    assert all("bytes" not in f and "raw_bytes" not in f for f in stored["files"])


def test_a_non_utf8_file_is_kept_intact_and_read_as_a_placeholder(setup, tmp_path):
    Pipeline, http = setup
    pipeline, bot = new_bot(Pipeline)
    # Every byte value, and lines that look like multipart boundaries: the transport must keep them all.
    content = bytes(range(256)) * 40 + b"\r\n--boundary\r\n\r\n" + b"\xff\xfe\x00" * 30000
    answer = bot.upload_files([write(tmp_path, "blob.bin", content), write(tmp_path, "plain.txt", b"caf\xc3\xa9")])
    cid = answer["conversation_id"]
    assert [f["size"] for f in answer["uploaded_files"]] == [len(content), 5]
    stored = conversation(http, cid)["files"]
    assert [(f["name"], f["mime_type"], f["size"], f["sha256"]) for f in stored] == [
        ("blob.bin", "application/octet-stream", len(content), hashlib.sha256(content).hexdigest()),
        ("plain.txt", "text/plain", 5, hashlib.sha256(b"caf\xc3\xa9").hexdigest())]
    turn = bot.run("what is in there?", conversation_id=cid)
    assert docs_seen(Pipeline, pipeline, turn) == [f"[file blob.bin: {len(content)} bytes, application/octet-stream]", "café"]


def test_the_docs_json_body_with_base64_raw_bytes_works(setup):
    Pipeline, http = setup
    pipeline, bot = new_bot(Pipeline)
    body = {"files": [{"type": "file", "raw_bytes": base64.b64encode(b"from JSON").decode(), "name": "j.txt"},
                      {"type": "file", "raw_bytes": base64.b64encode(b"\x00\x01").decode(), "mime_type": "image/png"}]}
    r = http("POST", f"/chatbot/{bot.id}/upload", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [(f["name"], f["mime_type"], f["size"]) for f in answer["uploaded_files"]] == [
        ("j.txt", "text/plain", 9), ("file", "image/png", 2)]
    cid = answer["conversation_id"]
    # A second JSON upload to the same conversation, then a turn sees all of them.
    r = http("POST", f"/chatbot/{bot.id}/upload",
             json={"files": [{"type": "file", "raw_bytes": base64.b64encode(b"more").decode(), "name": "k.txt"}],
                   "conversation_id": cid})
    assert r.status_code == 200 and r.json()["knowledge_base_id"] == answer["knowledge_base_id"], r.text
    turn = bot.run("hi", conversation_id=cid)
    assert docs_seen(Pipeline, pipeline, turn) == ["from JSON", "[file file: 2 bytes, image/png]", "more"]


def test_bad_uploads_are_a_clear_4xx_and_store_nothing(setup, fast, api_key, tmp_path):
    Pipeline, http = setup
    pipeline, bot = new_bot(Pipeline)
    other = Chatbot.new(name=unique("other"), description="", pipeline_id=pipeline.id, output_node_name="output_0")
    cid = bot.run("hello")["conversation_id"]
    path = write(tmp_path, "a.txt", b"a")

    with pytest.raises(BadRequestError) as e:  # the SDK sends JSON {"message_index": 0} without files
        bot.upload_files([], conversation_id=cid)
    assert "no files" in e.value.error_message
    r = http("POST", f"/chatbot/{bot.id}/upload", json={"files": [
        {"type": "file", "raw_bytes": base64.b64encode(b"ok").decode()}, {"type": "file", "raw_bytes": "%%% not base64"}]})
    assert r.status_code == 400 and r.json() == {"status": "failed", "error": "files[1].raw_bytes must be base64 (invalid base64)"}
    r = http("POST", f"/chatbot/{bot.id}/upload", json={"files": [{"type": "file", "raw_bytes": "YWJj="}]})  # wrong length
    assert r.status_code == 400 and "files[0]" in r.json()["error"], r.text
    r = http("POST", f"/chatbot/{bot.id}/upload", files={"attachment": ("a.txt", b"a")})
    assert r.status_code == 400 and "'files'" in r.json()["error"], r.text
    with pytest.raises(NotFoundError):
        bot.upload_files([path], conversation_id="f" * 24)
    with pytest.raises(NotFoundError):  # another chatbot's conversation
        other.upload_files([path], conversation_id=cid)
    with pytest.raises(NotFoundError):
        Chatbot(id="0" * 24, name="", description="", pipeline_id="").upload_files([path])
    point_sdk(fast, unique("other-key"))
    with pytest.raises(NotFoundError):  # another key: neither the chatbot nor the conversation exist
        bot.upload_files([path], conversation_id=cid)
    point_sdk(fast, api_key)
    conversations = http("GET", "/_mock/conversations").json()["conversations"]
    assert [(c["id"], c["files"], c["knowledge_base_id"]) for c in conversations] == [(cid, [], None)], \
        "no upload stored a file or started a conversation"


def test_a_plain_pipeline_run_reads_no_files(setup):
    Pipeline, http = setup
    pipeline, bot = new_bot(Pipeline)
    r = http("POST", f"/chatbot/{bot.id}/upload",
             json={"files": [{"type": "file", "raw_bytes": base64.b64encode(b"secret").decode()}]})
    assert r.status_code == 200, r.text
    assert pipeline.run(inputs={"input_0": "hi"})["outputs"]["docs"] == []


def test_deleting_the_chatbot_or_a_reset_clears_its_files(setup, tmp_path):
    Pipeline, http = setup
    pipeline, bot = new_bot(Pipeline)
    keep = Chatbot.new(name=unique("keep"), description="", pipeline_id=pipeline.id, output_node_name="output_0")
    gone = bot.upload_files([write(tmp_path, "a.txt", b"a")])["conversation_id"]
    kept = keep.upload_files([write(tmp_path, "b.txt", b"b")])["conversation_id"]
    bot.delete()
    assert http("GET", f"/_mock/conversations/{gone}").status_code == 404
    assert [f["name"] for f in conversation(http, kept)["files"]] == ["b.txt"]
    assert http("POST", "/_mock/reset").status_code == 200
    assert http("GET", f"/_mock/conversations/{kept}").status_code == 404
    assert http("GET", "/_mock/conversations").json()["conversations"] == []


def test_restart_keeps_the_files(new_daemon, api_key, tmp_path):
    db = tmp_path / "files.sqlite3"
    first = new_daemon("--time-scale", "0", db=db)
    Pipeline = point_sdk(first, api_key)
    pipeline, bot = new_bot(Pipeline)
    content = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    answer = bot.upload_files([write(tmp_path, "keep.txt", b"kept across restarts"), write(tmp_path, "pic.png", content)])
    cid = answer["conversation_id"]
    assert first.stop() == 0
    second = new_daemon("--time-scale", "0", db=db)
    Pipeline = point_sdk(second, api_key)
    stored = conversation(Http(second, api_key), cid)
    assert stored["knowledge_base_id"] == answer["knowledge_base_id"]
    assert [(f["name"], f["size"], f["sha256"], f["document_id"]) for f in stored["files"]] == [
        ("keep.txt", 20, hashlib.sha256(b"kept across restarts").hexdigest(), answer["uploaded_files"][0]["document_id"]),
        ("pic.png", len(content), hashlib.sha256(content).hexdigest(), answer["uploaded_files"][1]["document_id"])]
    turn = Chatbot.fetch(id=bot.id).run("still there?", conversation_id=cid)
    assert docs_seen(Pipeline, pipeline, turn) == ["kept across restarts", f"[file pic.png: {len(content)} bytes, image/png]"]
