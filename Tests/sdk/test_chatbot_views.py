"""What the dashboard's chatbot views read (issue 12 item 7), without a browser: `GET /_mock/chatbots` (each
chatbot with its conversation and turn counts), the turn in progress of a conversation (`live_turn`), and the feed's
`created` event naming a chatbot turn's chatbot and conversation. The page itself: test_dashboard.py."""
import json

import requests
from vectorshift.chatbot import Chatbot
from vectorshift.request import request_client

from conftest import build_streaming_pipeline, point_sdk, unique
from test_events import Feed

ESSAY = "Write a 500 word essay about robots."


def get(daemon, key, path, **params):
    return requests.get(daemon.root + path, headers={"Authorization": f"Bearer {key}"}, params=params, timeout=10)


def first_event(lines):
    """The data of the first event of a streamed turn (the SDK hands over raw lines)."""
    for line in lines:
        if line.startswith(b"data: "):
            return json.loads(line[len(b"data: "):])
    raise AssertionError("the stream ended without an event")


def stop(bot, run_id):
    answer = request_client.request("POST", f"/chatbot/{bot.id}/terminate", json={"pipeline_run_id": run_id})
    assert answer["status"] == "success", answer


def test_mock_chatbots_counts_conversations_stored_turns_and_live_turns(daemon, api_key):
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("views-chat"))
    quiet = Chatbot.new(name=unique("quiet"), description="", pipeline_id=pipeline.id)
    bot = Chatbot.new(name=unique("busy"), description="", pipeline_id=pipeline.id)

    chatbots = get(daemon, api_key, "/_mock/chatbots").json()["chatbots"]
    assert [c["id"] for c in chatbots] == [bot.id, quiet.id], "newest first"
    assert chatbots[1]["name"] == quiet.name and chatbots[1]["pipeline"]["id"] == pipeline.id
    assert chatbots[1]["output"] == "output_0"
    assert (chatbots[1]["conversations"], chatbots[1]["turns"], chatbots[1]["live_turns"]) == (0, 0, 0)
    assert chatbots[1]["last_activity_at"] is None

    # A turn in progress: counted as live, not stored yet; its conversation shows it as `live_turn`.
    lines = bot.run(ESSAY, stream=True)
    start = first_event(lines)
    run_id, cid = start["run_id"], start["conversation_id"]
    busy = next(c for c in get(daemon, api_key, "/_mock/chatbots").json()["chatbots"] if c["id"] == bot.id)
    assert (busy["conversations"], busy["turns"], busy["live_turns"]) == (1, 0, 1), busy
    assert busy["last_activity_at"].endswith("Z")
    live = get(daemon, api_key, f"/_mock/conversations/{cid}").json()["conversation"]
    assert live["turn_in_progress"] == run_id and live["turns"] == []
    assert live["live_turn"]["run_id"] == run_id and live["live_turn"]["user_text"] == ESSAY
    assert live["live_turn"]["started_at"].endswith("Z")

    stop(bot, run_id)
    list(lines)  # the stream ends with its result event
    busy = next(c for c in get(daemon, api_key, "/_mock/chatbots").json()["chatbots"] if c["id"] == bot.id)
    assert (busy["conversations"], busy["turns"], busy["live_turns"]) == (1, 1, 0), busy
    ended = get(daemon, api_key, f"/_mock/conversations/{cid}").json()["conversation"]
    assert ended["live_turn"] is None and ended["turns"][0]["outcome"] == "stopped"
    assert busy["last_activity_at"] == ended["turns"][0]["ended_at"]

    # Paging, bad paging, and another key's namespace.
    assert [c["id"] for c in get(daemon, api_key, "/_mock/chatbots", limit=1, offset=1).json()["chatbots"]] == [quiet.id]
    for params in ({"limit": "-1"}, {"offset": "x"}):
        bad = get(daemon, api_key, "/_mock/chatbots", **params)
        assert bad.status_code == 400 and bad.json()["status"] == "failed" and bad.json()["error"], bad.text
    assert get(daemon, unique("other-key"), "/_mock/chatbots").json() == {"status": "success", "chatbots": []}


def test_the_feed_names_a_chatbot_turns_chatbot_and_conversation_when_it_is_created(daemon, api_key):
    Pipeline = point_sdk(daemon, api_key)
    pipeline = build_streaming_pipeline(Pipeline, unique("views-feed"))
    bot = Chatbot.new(name=unique("fed"), description="", pipeline_id=pipeline.id)
    feed = Feed(daemon.root, api_key)
    try:
        feed.until(lambda t, d: t == "ready", what="ready")
        plain = pipeline.start(inputs={"input_0": "Write 3 words."})
        created = feed.until(lambda t, d: t == "created" and d["run_id"] == plain.task_id, what="the plain run's created")
        assert "chatbot_id" not in created and "conversation_id" not in created

        lines = bot.run(ESSAY, stream=True)
        start = first_event(lines)
        created = feed.until(lambda t, d: t == "created" and d["run_id"] == start["run_id"], what="the turn's created")
        assert created["chatbot_id"] == bot.id and created["conversation_id"] == start["conversation_id"]
        assert created["pipeline_id"] == pipeline.id and created["mode"] == "stream"
        stop(bot, start["run_id"])
        list(lines)
        feed.until(lambda t, d: t == "terminated" and d["run_id"] == start["run_id"], what="the turn's terminated event")
    finally:
        feed.close()
