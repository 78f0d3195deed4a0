"""Chatbots through the official SDK's `Chatbot` (SPEC §9, issue 12): objects, turns (plain and streamed as the SDK
hands raw lines over), Stop generating three ways, conversations and their `chat_memory`, test controls."""
import asyncio
import base64
import json
import threading
import time

import pytest
import requests
import vectorshift
from vectorshift.chatbot import Chatbot
from vectorshift.request import BadRequestError, NotFoundError, VectorshiftApiError, request_client

from conftest import Http, build_llm_pipeline, build_streaming_pipeline, point_sdk, unique, wait_for

ESSAY = "Write a 500 word essay about robots."


def chat_pipeline(http, name, *, stream=True, memory_type=None, memory_window=None):
    """input_0 → chat_memory_0 → llm (prompt shows the memory, then the user text) → output_0 (the answer), plus
    output `memory_out` = the memory, so a test can read what the turn's run saw. Returns the pipeline id."""
    memory_inputs = {}
    if memory_type:
        memory_inputs["memory_type"] = memory_type
    if memory_window is not None:
        memory_inputs["memory_window"] = memory_window
    nodes = {
        "input_0": {"type": "input", "name": "input_0", "inputs": {"input_type": "string"}, "outputs": ["text"]},
        "chat_memory_0": {"type": "chat_memory", "name": "chat_memory_0", "inputs": memory_inputs, "outputs": ["memory"]},
        "llm": {"type": "llm", "name": "llm", "outputs": ["response"],
                "inputs": {"provider": "openai", "model": "gpt-4o", "stream": stream,
                           "prompt": "History:\n{{ chat_memory_0.memory }}\nNow: {{ input_0.text }}"}},
        "output_0": {"type": "output", "name": "output_0", "outputs": ["value"],
                     "inputs": {"output_type": "stream<string>" if stream else "string", "value": "{{ llm.response }}"}},
        "memory_out": {"type": "output", "name": "memory_out", "outputs": ["value"],
                       "inputs": {"output_type": "string", "value": "{{ chat_memory_0.memory }}"}},
    }
    r = http("POST", "/pipeline", json={"name": name, "nodes": nodes})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def events(lines):
    """Parses the raw lines `Chatbot.run(stream=True)` yields (bytes, sync) into (type, data) pairs, lazily."""
    kind = None
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        line = line.rstrip("\n")
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            yield kind, json.loads(line[len("data: "):])


def conversation(daemon, key, cid):
    r = requests.get(f"{daemon.root}/_mock/conversations/{cid}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["conversation"]


def stored_turns(daemon, key, cid, count):
    """Waits until conversation `cid` holds `count` finished turns and returns them."""
    def enough():
        turns = conversation(daemon, key, cid)["turns"]
        return turns if len(turns) >= count else None
    return wait_for(enough, message=f"{count} stored turn(s) of {cid}")


def memory_of(Pipeline, pipeline_id, run_id):
    """The `memory_out` output of a completed turn's run, read through the pipeline's run status."""
    status = Pipeline.fetch(id=pipeline_id).run_status(run_id)
    assert status["status"] == "completed", status
    return status["result"]["memory_out"]


# --- chatbot objects ------------------------------------------------------------------------------------------


def test_new_fetch_list_delete_through_the_sdk(sdk):
    pipeline = build_llm_pipeline(sdk, unique("cb-pipe"))
    name = unique("bot")
    bot = Chatbot.new(name=name, description="helps", pipeline_id=pipeline.id, access_config={"public": True})
    assert len(bot.id) == 24
    fetched = Chatbot.fetch(id=bot.id)
    assert (fetched.id, fetched.name, fetched.description) == (bot.id, name, "helps")
    assert fetched.pipeline_id == pipeline.id
    assert (fetched.input, fetched.output) == ("input_0", "output_0"), "empty names resolved: one input, one output"
    assert fetched.access_config == {"public": True} and fetched.deployed is False
    assert Chatbot.fetch(name=name).id == bot.id
    other = Chatbot.new(name=unique("bot2"), description="", pipeline_id=pipeline.id,
                        input_node_name="input_0", output_node_name="output_0")
    listed = Chatbot.list()
    assert {b.id for b in listed} == {bot.id, other.id}
    assert [b.id for b in Chatbot.list(limit=1, offset=1)] == [bot.id], "newest first, limit and offset"
    assert len(Chatbot.list(include_shared=True)) == 2
    bot.delete()
    with pytest.raises(NotFoundError):
        Chatbot.fetch(id=bot.id)
    with pytest.raises(NotFoundError):
        bot.delete()
    assert [b.id for b in Chatbot.list()] == [other.id]


def test_async_new_fetch_list_run_stream_delete(sdk, daemon, api_key):
    pipeline = build_streaming_pipeline(sdk, unique("cb-async"))

    async def scenario():
        bot = await Chatbot.anew(name=unique("abot"), description="", pipeline_id=pipeline.id)
        assert (await Chatbot.afetch(id=bot.id)).id == bot.id
        assert [b.id for b in await Chatbot.alist()] == [bot.id]
        answer = await bot.arun("Write 5 words.")
        assert answer["status"] == "success" and answer["output_message"]
        gen = await bot.arun("Write 5 words.", conversation_id=answer["conversation_id"], stream=True)
        lines = [line async for line in gen]  # with their newlines, blank lines included (API-CHAT §1.4)
        parsed = list(events(lines))
        assert parsed[0][0] == "start" and parsed[-1][0] == "result"
        assert parsed[-1][1]["status"] == "success"
        assert "".join(d["output_value"] for k, d in parsed if k == "stream") == parsed[-1][1]["output_message"]
        await bot.adelete()
        assert await Chatbot.alist() == []
        await vectorshift.request.async_request_client.close()

    asyncio.run(scenario())


def test_bad_creation_is_a_clear_4xx_and_stores_nothing(sdk, http):
    with pytest.raises(NotFoundError):
        Chatbot.new(name=unique("bot"), description="", pipeline_id="0" * 24)
    two_outputs = chat_pipeline(http, unique("two-outputs"))
    with pytest.raises(BadRequestError) as e:
        Chatbot.new(name=unique("bot"), description="", pipeline_id=two_outputs)
    assert e.value.error_message == "Output name not found"
    with pytest.raises(BadRequestError) as e:
        Chatbot.new(name=unique("bot"), description="", pipeline_id=two_outputs, output_node_name="nope")
    assert "nope" in e.value.error_message
    with pytest.raises(BadRequestError) as e:
        Chatbot.new(name=unique("bot"), description="", pipeline_id=two_outputs, input_node_name="ghost",
                    output_node_name="output_0")
    assert "Input name not found" in e.value.error_message
    r = http("POST", "/chatbot", json={"name": "x"})
    assert r.status_code == 400 and "pipeline.id" in r.json()["error"]
    assert Chatbot.list() == []


# --- turns ------------------------------------------------------------------------------------------------------


def test_run_answers_with_the_output_and_the_turn_is_a_pipeline_run(sdk, daemon, api_key, http):
    pipeline = build_llm_pipeline(sdk, unique("cb-run"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    answer = bot.run("Write 5 words.")
    assert answer["status"] == "success" and len(answer["conversation_id"]) == 24
    assert answer["run_id"] == answer["pipeline_run_id"] and answer["follow_up_questions"] == []
    status = pipeline.run_status(answer["run_id"])
    assert status["status"] == "completed" and status["result"]["output_0"] == answer["output_message"]
    assert status["conversation_id"] == answer["conversation_id"] and status["chatbot_id"] == bot.id
    runs = http("GET", "/_mock/runs").json()["runs"]
    assert answer["run_id"] in [r["run_id"] for r in runs]
    turns = stored_turns(daemon, api_key, answer["conversation_id"], 1)
    assert turns[0]["user_text"] == "Write 5 words." and turns[0]["answer"] == answer["output_message"]
    assert turns[0]["run_id"] == answer["run_id"] and turns[0]["outcome"] == "completed"
    listed = http("GET", f"/_mock/conversations?chatbot_id={bot.id}").json()["conversations"]
    assert [c["id"] for c in listed] == [answer["conversation_id"]]


def test_streamed_run_starts_with_ids_streams_the_output_tokens_and_ends_with_one_result(sdk):
    pipeline = build_streaming_pipeline(sdk, unique("cb-stream"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    lines = list(bot.run("Write 10 words.", stream=True))
    assert all(isinstance(line, bytes) for line in lines)
    parsed = list(events(lines))
    kind, start = parsed[0]
    assert kind == "start" and start["status"] == "in_progress" and start["type"] == "start"
    assert len(start["conversation_id"]) == 24 and start["run_id"] == start["pipeline_run_id"]
    tokens = [d["output_value"] for k, d in parsed if k == "stream"]
    assert 6 <= len(tokens) <= 14
    assert [k for k, _ in parsed].count("result") == 1 and parsed[-1][0] == "result"
    result = parsed[-1][1]
    assert result["status"] == "success" and result["output_message"] == "".join(tokens)
    assert result["conversation_id"] == start["conversation_id"] and result["run_id"] == start["run_id"]


def test_stream_of_an_output_not_fed_by_a_streaming_llm_sends_its_whole_value_once(sdk):
    pipeline = build_llm_pipeline(sdk, unique("cb-whole"))  # llm without stream, output string
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    parsed = list(events(bot.run("Write 10 words.", stream=True)))
    assert [k for k, _ in parsed] == ["start", "stream", "result"]
    assert parsed[1][1]["output_value"] == parsed[2][1]["output_message"]


def test_two_turn_conversation_second_answer_depends_on_the_first_through_chat_memory(sdk, daemon, api_key, http):
    pid = chat_pipeline(http, unique("cb-memory"), stream=False, memory_type="Full - Formatted")
    for pattern, response in [("Now: my name is Ada", "Hello Ada, nice to meet you."),
                              ("Assistant: Hello Ada", "Your name is Ada.")]:  # the newest matching rule wins
        r = http("POST", "/_mock/llm", json={"pipeline_id": pid, "prompt_pattern": pattern, "response": response})
        assert r.status_code == 200, r.text
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pid, output_node_name="output_0")
    first = bot.run("my name is Ada")
    assert first["output_message"] == "Hello Ada, nice to meet you."
    second = bot.run("What is my name?", conversation_id=first["conversation_id"])
    assert second["conversation_id"] == first["conversation_id"]
    assert second["output_message"] == "Your name is Ada."
    assert memory_of(sdk, pid, second["run_id"]) == "User: my name is Ada\nAssistant: Hello Ada, nice to meet you."
    fresh = bot.run("What is my name?")  # another conversation remembers nothing
    assert fresh["conversation_id"] != first["conversation_id"] and fresh["output_message"] != "Your name is Ada."
    assert memory_of(sdk, pid, fresh["run_id"]) == ""
    # An empty conversation_id is a new conversation too.
    assert bot.run("hi", conversation_id="")["conversation_id"] not in (first["conversation_id"], fresh["conversation_id"])


# --- stop generating ----------------------------------------------------------------------------------------


def stop_after_three_tokens(bot, stop):
    """Streams an essay, calls `stop(start_event, gen)` after the third token, and returns (tokens seen, events
    after the stop, conversation id)."""
    gen = bot.run(ESSAY, stream=True)
    parsed = events(gen)
    kind, start = next(parsed)
    assert kind == "start"
    seen, after = [], []
    for kind, data in parsed:
        if kind == "stream" and len(seen) < 3:
            seen.append(data["output_value"])
            if len(seen) == 3:
                if stop(start, gen) == "closed":
                    break
        else:
            after.append((kind, data))
    return seen, after, start


@pytest.mark.parametrize("way", ["chatbot_terminate", "pipeline_terminate"])
def test_stop_after_three_tokens_then_the_next_turn_sees_the_partial_answer(sdk, daemon, api_key, http, way):
    pid = chat_pipeline(http, unique("cb-stop"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pid, output_node_name="output_0")
    answers = []

    def stop(start, gen):
        if way == "chatbot_terminate":  # the documented route the SDK does not wrap (API-CHAT §1.7)
            answers.append(request_client.request("POST", f"/chatbot/{bot.id}/terminate",
                                                  json={"pipeline_run_id": start["run_id"]}))
        else:
            answers.append(sdk.fetch(id=pid).terminate(run_id=start["run_id"]))

    seen, after, start = stop_after_three_tokens(bot, stop)
    assert answers[0]["status"] == "success" and answers[0]["run_status"] == "terminated"
    # The turn was stored before terminate answered: read at once, no waiting.
    turns = conversation(daemon, api_key, start["conversation_id"])["turns"]
    assert len(turns) == 1 and turns[0]["outcome"] == "stopped" and turns[0]["run_id"] == start["run_id"]
    partial = turns[0]["answer"]
    assert partial.startswith("".join(seen)) and len(partial.split()) <= 5
    # At most a token or two were in flight; then exactly one terminal event with the partial answer.
    assert [k for k, _ in after][-1:] == ["result"] and [k for k, _ in after].count("result") == 1
    result = after[-1][1]
    assert result["status"] == "terminated" and result["output_message"] == partial
    nxt = bot.run("continue", conversation_id=start["conversation_id"])
    memory = memory_of(sdk, pid, nxt["run_id"])
    assert memory == f"User: {ESSAY}\nAssistant: {partial} [stopped]"
    again = request_client.request("POST", f"/chatbot/{bot.id}/terminate", json={"run_id": start["run_id"]})
    assert again["run_status"] == "terminated", "a second stop is harmless"


def test_stop_by_closing_the_stream_with_cancel_on_disconnect(new_daemon, api_key):
    daemon = new_daemon("--cancel-on-disconnect")
    Pipeline = point_sdk(daemon, api_key)
    http = Http(daemon, api_key)
    pid = chat_pipeline(http, unique("cb-close"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pid, output_node_name="output_0")

    def stop(start, gen):
        gen.close()  # what a chat app's Stop button does with the SDK: stop reading
        return "closed"

    seen, _, start = stop_after_three_tokens(bot, stop)
    turns = stored_turns(daemon, api_key, start["conversation_id"], 1)
    assert turns[0]["outcome"] == "stopped" and turns[0]["answer"].startswith("".join(seen))
    partial = turns[0]["answer"]
    nxt = bot.run("continue", conversation_id=start["conversation_id"])
    assert memory_of(Pipeline, pid, nxt["run_id"]) == f"User: {ESSAY}\nAssistant: {partial} [stopped]"


def test_stop_before_the_first_token(sdk, daemon, api_key):
    pipeline = build_streaming_pipeline(sdk, unique("cb-early"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    parsed = events(bot.run(ESSAY, stream=True))
    _, start = next(parsed)
    answer = requests.post(f"{daemon.url}/chatbot/{bot.id}/terminate", data={"pipeline_run_id": start["run_id"]},
                           headers={"Authorization": f"Bearer {api_key}"}, timeout=10)  # a form body
    assert answer.status_code == 200 and answer.json()["run_status"] == "terminated"
    rest = list(parsed)
    assert [k for k, _ in rest] == ["result"]
    assert rest[0][1]["status"] == "terminated" and rest[0][1]["output_message"] == ""
    turns = conversation(daemon, api_key, start["conversation_id"])["turns"]
    assert [(t["outcome"], t["answer"]) for t in turns] == [("stopped", "")]


def test_manual_clock_exactly_five_tokens_arrived_before_the_stop(new_daemon, api_key):
    daemon = new_daemon("--clock", "manual")  # 400 ms to first token, 40 tokens/s
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("cb-clock"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    parsed = events(bot.run(ESSAY, stream=True))
    _, start = next(parsed)
    r = requests.post(f"{daemon.root}/_mock/clock/advance", json={"ms": 400 + 5 * 25},
                      headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert r.status_code == 200
    tokens = [next(parsed)[1]["output_value"] for _ in range(5)]
    request_client.request("POST", f"/chatbot/{bot.id}/terminate", json={"pipeline_run_id": start["run_id"]})
    rest = list(parsed)
    assert [k for k, _ in rest] == ["result"], "no sixth token: the clock did not move"
    assert rest[0][1]["output_message"] == "".join(tokens)
    turns = conversation(daemon, api_key, start["conversation_id"])["turns"]
    assert turns[0]["answer"] == "".join(tokens) and turns[0]["outcome"] == "stopped"


# --- conversations and bad input -------------------------------------------------------------------------------


def test_a_second_turn_while_one_is_live_is_409_and_changes_nothing(sdk, daemon, api_key):
    pipeline = build_streaming_pipeline(sdk, unique("cb-busy"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    parsed = events(bot.run(ESSAY, stream=True))
    _, start = next(parsed)
    with pytest.raises(VectorshiftApiError) as e:
        bot.run("hello?", conversation_id=start["conversation_id"])
    assert e.value.status_code == 409
    assert e.value.error_message == f"conversation {start['conversation_id']} has a turn in progress"
    request_client.request("POST", f"/chatbot/{bot.id}/terminate", json={"pipeline_run_id": start["run_id"]})
    list(parsed)
    assert len(conversation(daemon, api_key, start["conversation_id"])["turns"]) == 1
    assert bot.run("now?", conversation_id=start["conversation_id"])["status"] == "success"


def test_unknown_or_other_chatbots_conversation_is_404(sdk, daemon):
    pipeline = build_llm_pipeline(sdk, unique("cb-404"))
    a = Chatbot.new(name=unique("a"), description="", pipeline_id=pipeline.id)
    b = Chatbot.new(name=unique("b"), description="", pipeline_id=pipeline.id)
    cid = a.run("Write 3 words.")["conversation_id"]
    with pytest.raises(NotFoundError):
        a.run("hi", conversation_id="f" * 24)
    with pytest.raises(NotFoundError):
        b.run("hi", conversation_id=cid)
    point_sdk(daemon, unique("other-key"))
    with pytest.raises(NotFoundError):
        Chatbot(id=a.id, name="", description="", pipeline_id="").run("hi", conversation_id=cid)


def test_bad_run_input_is_a_clear_4xx_and_changes_nothing(sdk, daemon, api_key, http):
    pipeline = build_llm_pipeline(sdk, unique("cb-bad"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    cid = bot.run("Write 3 words.")["conversation_id"]
    runs_before = len(http("GET", "/_mock/runs").json()["runs"])
    r = http("POST", f"/chatbot/{bot.id}/run", json={"conversation_id": cid})
    assert r.status_code == 400 and "text" in r.json()["error"] and "audio" in r.json()["error"]
    r = http("POST", f"/chatbot/{bot.id}/run", json={"audio": "%%% not base64 %%%"})
    assert r.status_code == 400 and "base64" in r.json()["error"]
    r = http("POST", f"/chatbot/{'0' * 24}/run", json={"text": "hi"})
    assert r.status_code == 404 and r.json() == {"status": "failed", "error": "Chatbot not found"}
    r = http("POST", f"/chatbot/{bot.id}/run", json={"text": 5})
    assert r.status_code == 400 and "text" in r.json()["error"]
    # Found by review: both at once, and base64 of a wrong length, were taken.
    r = http("POST", f"/chatbot/{bot.id}/run", json={"text": "hi", "audio": base64.b64encode(b"abc").decode()})
    assert r.status_code == 400 and "not both" in r.json()["error"], r.text
    r = http("POST", f"/chatbot/{bot.id}/run", json={"audio": "YWJj="})
    assert r.status_code == 400 and "base64" in r.json()["error"], r.text
    assert len(http("GET", "/_mock/runs").json()["runs"]) == runs_before
    conversations = http("GET", "/_mock/conversations").json()["conversations"]
    assert [c["id"] for c in conversations] == [cid] and len(conversations[0]["turns"]) == 1
    # Valid audio is fed as its transcript; a form body works too.
    audio = base64.b64encode(b"\x00" * 10).decode()
    r = http("POST", f"/chatbot/{bot.id}/run", data={"audio": audio, "conversation_id": cid})
    assert r.status_code == 200, r.text
    assert stored_turns(daemon, api_key, cid, 2)[1]["user_text"] == "audio transcript (10 bytes)"


def test_deleting_the_pipeline_stops_live_turns_keeps_the_chatbot_and_its_runs_then_answer_404(sdk, daemon, api_key, http):
    pipeline = build_streaming_pipeline(sdk, unique("cb-gone"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    parsed = events(bot.run(ESSAY, stream=True))
    _, start = next(parsed)
    pipeline.delete()
    rest = list(parsed)
    assert rest[-1][1]["status"] == "terminated"
    assert [t["outcome"] for t in stored_turns(daemon, api_key, start["conversation_id"], 1)] == ["stopped"]
    assert Chatbot.fetch(id=bot.id).id == bot.id
    with pytest.raises(NotFoundError) as e:
        bot.run("hi")
    assert pipeline.id in e.value.error_message and "deleted" in e.value.error_message
    assert len(http("GET", "/_mock/conversations").json()["conversations"]) == 1, "the failed run stored nothing"


def test_reset_clears_chatbots_and_conversations(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("cb-reset"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    cid = bot.run("Write 3 words.")["conversation_id"]
    assert http("POST", "/_mock/reset").status_code == 200
    assert Chatbot.list() == []
    assert http("GET", "/_mock/conversations").json()["conversations"] == []
    assert http("GET", f"/_mock/conversations/{cid}").status_code == 404


def test_restart_keeps_chatbots_and_conversations(new_daemon, api_key, tmp_path):
    db = tmp_path / "chat.sqlite3"
    first = new_daemon("--time-scale", "0", db=db)
    Pipeline = point_sdk(first, api_key)
    pipeline = build_llm_pipeline(Pipeline, unique("cb-restart"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    one = bot.run("Write 3 words.")
    two = bot.run("Write 4 words.", conversation_id=one["conversation_id"])
    assert first.stop() == 0
    second = new_daemon("--time-scale", "0", db=db)
    point_sdk(second, api_key)
    turns = conversation(second, api_key, one["conversation_id"])["turns"]
    assert [(t["user_text"], t["answer"], t["run_id"], t["outcome"]) for t in turns] == [
        ("Write 3 words.", one["output_message"], one["run_id"], "completed"),
        ("Write 4 words.", two["output_message"], two["run_id"], "completed")]
    three = Chatbot.fetch(id=bot.id).run("Write 5 words.", conversation_id=one["conversation_id"])
    assert three["status"] == "success"
    assert len(conversation(second, api_key, one["conversation_id"])["turns"]) == 3


def test_a_finished_turn_cannot_be_stopped_and_another_chatbots_run_is_404(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("cb-late"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    other = Chatbot.new(name=unique("other"), description="", pipeline_id=pipeline.id)
    answer = bot.run("Write 3 words.")
    r = http("POST", f"/chatbot/{bot.id}/terminate", files={"pipeline_run_id": (None, answer["run_id"])})  # multipart
    assert r.status_code == 400 and r.json()["error"] == f"run {answer['run_id']} already completed"
    assert http("POST", f"/chatbot/{other.id}/terminate", json={"pipeline_run_id": answer["run_id"]}).status_code == 404
    r = http("POST", f"/chatbot/{bot.id}/terminate", json={})
    assert r.status_code == 400 and "pipeline_run_id" in r.json()["error"]
    assert pipeline.run_status(answer["run_id"])["status"] == "completed"


def test_a_turn_stopped_while_the_plain_request_waits_answers_409_with_the_partial_answer(sdk, daemon, api_key, http):
    pipeline = build_streaming_pipeline(sdk, unique("cb-sync-stop"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    result = {}

    def ask():
        try:
            result["answer"] = bot.run(ESSAY)
        except VectorshiftApiError as e:
            result["error"] = e

    asker = threading.Thread(target=ask)
    asker.start()
    live = wait_for(lambda: [c for c in http("GET", f"/_mock/conversations?chatbot_id={bot.id}").json()["conversations"]
                             if c["turn_in_progress"]], message="the live turn")[0]
    timeline = f"/_mock/runs/{live['turn_in_progress']}/events"
    wait_for(lambda: any(e["event"] == "first_token" for e in http("GET", timeline).json()["events"]), message="the first token")
    request_client.request("POST", f"/chatbot/{bot.id}/terminate", json={"pipeline_run_id": live["turn_in_progress"]})
    asker.join(10)
    error = result["error"]
    body = json.loads(error.raw_response)
    assert error.status_code == 409 and body["conversation_id"] == live["id"] and body["run_id"] == live["turn_in_progress"]
    turn = conversation(daemon, api_key, live["id"])["turns"][0]
    assert turn["outcome"] == "stopped" and body["output_message"] == turn["answer"]


def test_an_injected_llm_failure_fails_the_streamed_turn_and_it_is_stored_as_failed(sdk, daemon, api_key, http):
    pipeline = build_streaming_pipeline(sdk, unique("cb-fault"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    r = http("POST", "/_mock/faults", json={"path": f"/v1/chatbot/{bot.id}/run", "llm_fail_after_tokens": 2,
                                             "message": "provider overloaded", "times": 1})
    assert r.status_code == 200, r.text
    parsed = list(events(bot.run(ESSAY, stream=True)))
    assert [k for k, _ in parsed] == ["start", "stream", "stream", "result"]
    result = parsed[-1][1]
    assert result["status"] == "failed" and "provider overloaded" in result["error"]
    turn = stored_turns(daemon, api_key, result["conversation_id"], 1)[0]
    assert turn["outcome"] == "failed" and "provider overloaded" in turn["error"]
    # A failed turn is left out of the memory: the next one starts from nothing.
    assert bot.run("again", conversation_id=result["conversation_id"])["status"] == "success"


@pytest.mark.parametrize("cancel", [False, True], ids=["run-goes-on", "cancel-on-disconnect"])
def test_a_stream_cut_by_a_fault_loses_the_connection_after_n_events(new_daemon, api_key, cancel):
    """Issue 12 item 8: `cut_stream_after_events` drops the connection mid-answer (start + 3 tokens, no result
    event), as a network failure does. The SDK's line iterator raises; the turn then runs to its end (stored as
    completed), or, with --cancel-on-disconnect, stops when the daemon sees the connection gone (stored as stopped
    with what was generated by then)."""
    daemon = new_daemon("--clock", "manual", *(["--cancel-on-disconnect"] if cancel else []))
    Pipeline = point_sdk(daemon, api_key)
    http = Http(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("cb-cut"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    r = http("POST", "/_mock/faults", json={"path": f"/v1/chatbot/{bot.id}/run", "cut_stream_after_events": 4, "times": 1})
    assert r.status_code == 200, r.text
    parsed = events(bot.run(ESSAY, stream=True))
    kind, start = next(parsed)
    assert kind == "start"
    r = http("POST", "/_mock/clock/advance", json={"ms": 400 + 10 * 25})  # ten tokens are due; three get through
    assert r.status_code == 200, r.text
    got = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="ended prematurely"):
        for kind, data in parsed:
            got.append((kind, data.get("output_value")))
    assert [k for k, _ in got] == ["stream"] * 3, got
    if cancel:
        # What was generated until the daemon saw the connection gone: at least what the client got, at most the
        # ten tokens the clock made due (the advance and the hang-up race).
        turns = stored_turns(daemon, api_key, start["conversation_id"], 1)
        assert turns[0]["outcome"] == "stopped" and turns[0]["answer"].startswith("".join(v for _, v in got)), turns
        assert 3 <= len(turns[0]["answer"].split()) <= 10, turns
    else:
        status = Pipeline.fetch(id=pipeline.id).run_status(start["run_id"])
        assert status["status"] == "in_progress", "the run goes on: a lost client does not stop it (SPEC §5)"
        http("POST", "/_mock/clock/advance", json={"ms": 60_000})
        turns = stored_turns(daemon, api_key, start["conversation_id"], 1)
        assert turns[0]["outcome"] == "completed" and turns[0]["answer"].startswith("".join(v for _, v in got))
    # The fault was used up: the next turn streams to its end.
    nxt = events(bot.run("again", conversation_id=start["conversation_id"], stream=True))
    assert next(nxt)[0] == "start"  # the request goes out when the SDK's generator is first read
    http("POST", "/_mock/clock/advance", json={"ms": 60_000})
    assert [k for k, _ in nxt][-1] == "result"


def test_huge_text_is_413_and_changes_nothing_while_a_large_one_is_a_turn(new_daemon, api_key):
    daemon = new_daemon("--max-body-mb", "1", "--time-scale", "0")
    Pipeline = point_sdk(daemon, api_key)
    http = Http(daemon, api_key)
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=build_llm_pipeline(Pipeline, unique("cb-huge")).id)
    with pytest.raises(VectorshiftApiError) as e:
        bot.run("x" * (2 << 20))
    assert e.value.status_code == 413, e.value
    assert http("GET", "/_mock/conversations").json()["conversations"] == []
    assert http("GET", "/_mock/runs").json()["runs"] == []
    large = "word " * 100_000  # 500 KB: under the limit, a turn like any other
    answer = bot.run(large)
    assert answer["status"] == "success"
    [turn] = stored_turns(daemon, api_key, answer["conversation_id"], 1)
    assert turn["user_text"] == large and turn["outcome"] == "completed"


@pytest.mark.parametrize("how", ["delete", "reset"])
def test_turns_racing_a_chatbot_delete_or_a_reset_are_stopped_never_answered_success(new_daemon, api_key, how):
    """Found by review: a turn still being set up when its chatbot was deleted (or the key reset) ran on and
    answered 200 `success` with its conversation gone, or 500 (a foreign key). Every turn sent just before the
    delete/reset now ends 404 (the chatbot is gone) or 409 (stopped): none can complete, each takes >= 400 ms."""
    import concurrent.futures
    import random
    daemon = new_daemon("--ttft-ms", "400")
    Pipeline = point_sdk(daemon, api_key)
    headers = {"Authorization": f"Bearer {api_key}"}
    seen = set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=9) as pool:
        for _ in range(6):
            pipeline = build_llm_pipeline(Pipeline, unique("cb-race"))  # a reset deletes it too
            bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
            turns = [pool.submit(requests.post, f"{daemon.url}/chatbot/{bot.id}/run", json={"text": "Write 30 words."},
                                 headers=headers, timeout=30) for _ in range(8)]
            time.sleep(random.uniform(0, 0.03))
            if how == "delete":
                gone = requests.delete(f"{daemon.url}/chatbot/{bot.id}", headers=headers, timeout=30)
            else:
                gone = requests.post(f"{daemon.root}/_mock/reset", headers=headers, timeout=30)
            assert gone.status_code == 200, gone.text
            for turn in turns:
                answer = turn.result()
                seen.add(answer.status_code)
                assert answer.status_code in (404, 409), (answer.status_code, answer.text)
    assert requests.get(f"{daemon.root}/_mock/health", headers=headers, timeout=10).json()["live_runs"] == 0
    assert seen, "no turn was sent"


def test_a_turn_cut_by_a_crash_is_stored_as_failed_after_the_restart(new_daemon, api_key, tmp_path):
    """Found by review: after `kill -9` mid-turn the run was `failed` but the conversation had no turn for it."""
    import signal
    db = tmp_path / "crash.sqlite3"
    first = new_daemon(db=db)
    Pipeline = point_sdk(first, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("cb-crash"))
    bot = Chatbot.new(name=unique("bot"), description="", pipeline_id=pipeline.id)
    parsed = events(bot.run(ESSAY, stream=True))
    _, start = next(parsed)
    next(k for k, _ in parsed if k == "stream")
    first.stop(signal.SIGKILL)
    second = new_daemon(db=db)
    point_sdk(second, api_key)
    turns = conversation(second, api_key, start["conversation_id"])["turns"]
    assert [(t["run_id"], t["outcome"], t["user_text"], t["error"]) for t in turns] == [
        (start["run_id"], "failed", ESSAY, "run interrupted: server restarted")], turns
    again = requests.post(f"{second.url}/chatbot/{bot.id}/terminate", json={"pipeline_run_id": start["run_id"]},
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert again.status_code == 400 and "already failed" in again.json()["error"], again.text
    nxt = Chatbot.fetch(id=bot.id).run("Write 3 words.", conversation_id=start["conversation_id"])
    assert nxt["status"] == "success"
