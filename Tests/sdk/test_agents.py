"""Agents through the official SDK's `Agent` (SPEC §11, API-CHAT §3, issue 13 item 3): new/fetch/list/save/delete
(sync and async) and the functional run over HTTP. Conversational agents run over WebSocket sessions (SPEC §10)."""
import asyncio
import warnings

import pytest
import requests
from vectorshift.agent import Agent, AgentType, IoConfig, LlmInfo, MemoryConfig
from vectorshift.request import BadRequestError, NotFoundError

from conftest import point_sdk, unique, wait_for


def new_functional(name=None, **kw):
    return Agent.new(
        name=name or unique("agent"), llm_info=LlmInfo(provider="openai", model_id="gpt-4o"),
        instructions="Summarise [[inputs.topic]] for a child.",
        inputs={"topic": IoConfig(io_type="string", description="what to write about")},
        outputs={"summary": IoConfig(io_type="string"), "picture": IoConfig(io_type="image")}, **kw)


def test_new_fetch_list_save_delete_round_trip_what_the_sdk_sent(sdk):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # from_json warns on keys it does not know
        agent = new_functional()
        assert agent.id and len(agent.id) == 24 and agent.agent_type == AgentType.FUNCTIONAL
        fetched = Agent.fetch(id=agent.id)
    assert fetched.name == agent.name and fetched.llm_info.model_id == "gpt-4o"
    assert set(fetched.inputs) == {"topic"} and set(fetched.outputs) == {"summary", "picture"}
    assert fetched.inputs["topic"].server_id.startswith("input_"), "the ids the SDK minted are kept"
    assert fetched.inputs["topic"].server_id in fetched.instructions, "functional placeholders rewritten to ids"
    assert Agent.fetch(name=agent.name).id == agent.id
    assert [a.id for a in Agent.list()] == [agent.id]
    assert [a.name for a in Agent.list(verbose=True)] == [agent.name]
    # save, then deploy twice: versions as pipelines (SPEC §8)
    fetched.update_instructions("Be brief.")
    fetched.save()
    assert Agent.fetch(id=agent.id).instructions == "Be brief."
    assert fetched.save(deploy=True)["version"] == "1.0.0"
    assert fetched.save(deploy=True, bump="minor")["version"] == "1.1.0"
    assert Agent.fetch(id=agent.id).inputs["topic"].server_id == fetched.inputs["topic"].server_id
    fetched.delete()
    assert Agent.list() == []
    with pytest.raises(NotFoundError):
        Agent.fetch(id=agent.id)


def test_functional_run_waits_the_simulated_time_and_answers_outputs_by_name(new_daemon, api_key):
    daemon = new_daemon("--clock", "manual")
    point_sdk(daemon, api_key)
    agent = new_functional()
    result = {}

    def run():
        result["r"] = agent.run(inputs={"topic": "volcanoes"})

    import threading
    t = threading.Thread(target=run)
    t.start()
    runs = wait_for(lambda: requests.get(f"{daemon.root}/_mock/runs", headers={"Authorization": f"Bearer {api_key}"})
                    .json()["runs"], message="the agent's run to start")
    assert runs[0]["status"] == "in_progress" and "r" not in result, "the answer waits for the simulated LLM"
    requests.post(f"{daemon.root}/_mock/clock/advance", json={"ms": 60_000}, headers={"Authorization": f"Bearer {api_key}"})
    t.join(10)
    r = result["r"]
    assert r.status == "success" and r.run_id == runs[0]["run_id"]
    assert set(r.outputs) == {"summary", "picture"}, r.outputs
    assert len(r.outputs["summary"].split()) > 20 and "picture" in r.outputs["picture"]


def test_functional_run_is_deterministic_and_depends_on_inputs(new_daemon, api_key):
    daemon = new_daemon("--time-scale", "0")
    point_sdk(daemon, api_key)
    agent = new_functional()
    a = agent.run(inputs={"topic": "volcanoes"}).outputs["summary"]
    assert agent.run(inputs={"topic": "volcanoes"}).outputs["summary"] == a
    assert agent.run(inputs={"topic": "glaciers"}).outputs["summary"] != a
    more = agent.run(inputs={"topic": "volcanoes"}, additional_instructions="Rhyme.").outputs["summary"]
    assert more != a


def test_async_agent_calls(sdk, daemon, api_key):
    async def go():
        agent = await Agent.anew(name=unique("aagent"), llm_info=LlmInfo(provider="anthropic", model_id="claude-3"),
                                 agent_type=AgentType.CONVERSATIONAL, memory_config=MemoryConfig())
        fetched = await Agent.afetch(id=agent.id)
        assert fetched.agent_type == AgentType.CONVERSATIONAL and fetched.memory_config.enable_session_memory
        assert [a.id for a in await Agent.alist()] == [agent.id]
        await fetched.asave(deploy=True)
        await fetched.adelete()
        assert await Agent.alist() == []
    asyncio.run(go())


def test_bad_agent_input_is_a_clear_4xx_in_the_agent_format(sdk, daemon, api_key, http):
    r = http("POST", "/agent", json={"name": "x"})
    assert r.status_code == 400 and r.json() == {"error": "llm_client_key with provider and model_id is required"}
    r = http("POST", "/agent", json={"llm_client_key": {"provider": "openai", "model_id": "m"}})
    assert r.status_code == 400 and r.json() == {"error": "Agent name is required"}
    r = http("POST", "/agent", json={"name": "x", "llm_client_key": {"provider": "openai", "model_id": "m"},
                                     "inputs": {"input_1": {"name": "a"}, "input_2": {"name": "a"}}})
    assert r.status_code == 400 and "used twice" in r.json()["error"]
    r = http("GET", "/agent")
    assert r.status_code == 400 and r.json() == {"error": "Agent ID or name is required"}
    r = http("POST", f"/agent/{'0' * 24}/run", json={"inputs": {}})
    assert r.status_code == 404 and r.json() == {"error": "Agent not found"}
    agent = new_functional()
    r = http("POST", f"/agent/{agent.id}/run", json={"inputs": {"nope": 1}})
    assert r.status_code == 400 and "no input named 'nope'" in r.json()["error"]
    conversational = Agent.new(name=unique("conv"), llm_info=LlmInfo(provider="openai", model_id="gpt-4o"),
                               agent_type=AgentType.CONVERSATIONAL)
    r = http("POST", f"/agent/{conversational.id}/run", json={"inputs": {}})
    assert r.status_code == 400 and "session" in r.json()["error"]
    with pytest.raises(BadRequestError):
        Agent.fetch(id=agent.id).save(bump="sideways", deploy=True)
    assert [a.id for a in Agent.list()] == [conversational.id, agent.id], "nothing else was stored"


def test_an_injected_llm_fault_fails_the_run_with_500(sdk, daemon, api_key, http):
    agent = new_functional()
    r = http("POST", "/_mock/faults", json={"path": f"/v1/agent/{agent.id}/run", "llm_fail_after_tokens": 1,
                                             "message": "provider overloaded", "times": 1})
    assert r.status_code == 200, r.text
    r = http("POST", f"/agent/{agent.id}/run", json={"inputs": {"topic": "x"}})
    assert r.status_code == 500 and "Failed to run agent" in r.json()["error"] and "provider overloaded" in r.json()["error"]


def test_restart_keeps_agents_and_reset_clears_them(new_daemon, api_key, tmp_path):
    db = tmp_path / "agents.sqlite3"
    daemon = new_daemon(db=db)
    point_sdk(daemon, api_key)
    agent = new_functional()
    agent.save(deploy=True)
    daemon.stop()
    daemon = new_daemon(db=db)
    point_sdk(daemon, api_key)
    assert Agent.fetch(id=agent.id).name == agent.name
    assert requests.post(f"{daemon.root}/_mock/reset", headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
    assert Agent.list() == []
