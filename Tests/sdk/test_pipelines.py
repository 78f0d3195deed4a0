"""Pipeline CRUD through the SDK (API.md §3, SPEC §8)."""
import warnings

import pytest
from vectorshift.request import NotFoundError, request_client

from conftest import build_llm_pipeline, unique


def node_ids(pipeline):
    return sorted(node.id for node in pipeline.nodes)


def test_fetch_by_id_and_name_rebuilds_the_pipeline_without_warnings(sdk):
    name = unique("fetch")
    pipeline = build_llm_pipeline(sdk, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        by_id = sdk.fetch(id=pipeline.id)
        by_name = sdk.fetch(name=name)
    # An unknown top-level key would warn and be replayed on every save (API.md §3.2).
    assert not [w for w in caught if "top-level field" in str(w.message)], [str(w.message) for w in caught]
    assert by_id.id == by_name.id == pipeline.id
    assert by_id.branch_id == pipeline.id
    assert node_ids(by_id) == ["input_0", "llm", "output_0"]
    assert by_id.run(inputs={"input_0": "Write 3 words."})["status"] == "success", "inputs recomputed from nodes"


def test_fetch_by_name_returns_the_most_recently_modified(sdk):
    name = unique("twins")
    older = build_llm_pipeline(sdk, name)
    newer = build_llm_pipeline(sdk, name)
    assert sdk.fetch(name=name).id == newer.id
    older.save(deploy=False)
    assert sdk.fetch(name=name).id == older.id


def test_list_verbose_and_ids(sdk):
    a_name, b_name = unique("list-a"), unique("list-b")
    a = build_llm_pipeline(sdk, a_name)
    b = build_llm_pipeline(sdk, b_name)
    listed = sdk.list(verbose=True)
    assert {p.id: p.name for p in listed} == {a.id: a_name, b.id: b_name}
    assert sorted(p.id for p in sdk.list()) == sorted([a.id, b.id])
    assert len(sdk.list(limit=1)) == 1


def test_move_to_folder_is_a_partial_update(sdk):
    pipeline = build_llm_pipeline(sdk, unique("folder"))
    pipeline.move_to_folder("folder-1")
    assert node_ids(sdk.fetch(id=pipeline.id)) == ["input_0", "llm", "output_0"]
    assert [p.id for p in sdk.list(folder_id="folder-1")] == [pipeline.id]
    assert sdk.list(folder_id="folder-2") == []


def test_delete_then_fetch_is_404(sdk):
    pipeline = build_llm_pipeline(sdk, unique("delete"))
    pipeline.delete()
    with pytest.raises(NotFoundError):
        sdk.fetch(id=pipeline.id)


def test_duplicate_copies_nodes_under_a_new_id(sdk):
    pipeline = build_llm_pipeline(sdk, unique("original"))
    copy = pipeline.duplicate(name=unique("copy"))
    assert copy.id != pipeline.id
    assert node_ids(copy) == node_ids(pipeline)
    same = {"input_0": "Write 4 words."}
    assert copy.run(inputs=same)["outputs"] == pipeline.run(inputs=same)["outputs"]


def test_deploys_snapshot_versions_that_fetch_and_run_can_pin(sdk):
    pipeline = build_llm_pipeline(sdk, unique("versions"))  # deploys 1.0.0
    answer = pipeline.save(deploy=True)  # 1.0.1
    assert answer["version"] == "1.0.1"
    assert pipeline.save(deploy=True, bump="minor")["version"] == "1.1.0"
    assert pipeline.save(deploy=True, bump="major")["version"] == "2.0.0"
    # Change the working state only: add a second output.
    doc = request_client.request("GET", "/pipeline", query={"id": pipeline.id})["object"]
    doc["nodes"]["extra"] = {"id": "extra", "name": "extra", "type": "output",
                             "inputs": {"output_type": "string", "value": "fixed"}, "outputs": ["complete"]}
    request_client.request("POST", f"/update/pipeline/{pipeline.id}", json={"nodes": doc["nodes"]})
    assert "extra" in node_ids(sdk.fetch(id=pipeline.id))
    assert "extra" not in node_ids(sdk.fetch(id=pipeline.id, version="1.0.0"))
    pinned = request_client.request("POST", f"/pipeline/{pipeline.id}/run",
                                    json={"inputs": {"input_0": "Write 2 words."}, "version": "1.0.0"})
    assert list(pinned["outputs"]) == ["output_0"]
    pipeline.revert("1.0.0")
    assert "extra" not in node_ids(sdk.fetch(id=pipeline.id))
    with pytest.raises(NotFoundError):
        sdk.fetch(id=pipeline.id, version="9.9.9")


def test_share_unshare_and_remove_node(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("share"))
    assert pipeline.share(role="viewer", user_id="u1") == {"status": "success"}
    pipeline.share(role="editor", org_id="o1")
    shared = http("GET", "/pipeline", params={"id": pipeline.id}).json()["object"]["shared_with"]
    assert shared == [{"role": "viewer", "user_id": "u1"}, {"role": "editor", "org_id": "o1"}]
    pipeline.unshare(user_id="u1")
    shared = http("GET", "/pipeline", params={"id": pipeline.id}).json()["object"]["shared_with"]
    assert shared == [{"role": "editor", "org_id": "o1"}]
    assert http("POST", f"/pipeline/{pipeline.id}/share", json={"role": "owner"}).status_code == 400
    answer = pipeline.remove_node(node_name="llm")
    assert answer == {"status": "success", "node_id": "llm"}
    doc = http("GET", "/pipeline", params={"id": pipeline.id}).json()["object"]
    assert sorted(doc["nodes"]) == ["input_0", "output_0"]
    assert "llm" not in doc["nodes"]["output_0"]["inputs"]["value"]
    assert all("llm" not in (e["source"], e["target"]) for e in doc["canvas_metadata"].get("edges", []))
    assert http("POST", f"/pipeline/{pipeline.id}/remove-node", json={"node_id": "ghost"}).status_code == 404
    assert sdk.list(include_shared=True) is not None


def test_latest_and_malformed_versions(sdk, http):
    pipeline = build_llm_pipeline(sdk, unique("latest"))  # 1.0.0
    pipeline.save(deploy=True, bump="minor")  # 1.1.0
    latest = http("GET", "/pipeline", params={"id": pipeline.id, "version": "latest"}).json()["object"]
    assert latest["currentVersion"] == "1.1.0"
    r = http("GET", "/pipeline", params={"id": pipeline.id, "version": "1.x"})
    assert r.status_code == 400 and r.json()["error"] == "Invalid pipeline version: invalid format"
    handler = pipeline.start(inputs={"input_0": "Write 2 words."}, version="1.0.0")
    assert handler.result(poll_interval=0.05, timeout=30)["version"] == "1.0.0"
    chunks = list(pipeline.stream(inputs={"input_0": "Write 2 words."}, version="1.1.0"))
    assert chunks[-1].status == "completed"
