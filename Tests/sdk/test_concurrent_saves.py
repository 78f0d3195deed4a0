"""Concurrent saves of one pipeline (found by scripts/crash-drill): a save used to read the pipeline, then write it
back in a second step, so two deploys at once took the same version (the second snapshot replacing the first,
whose client had been answered), a partial save wrote back stale nodes, and a save racing a delete brought the
pipeline back. Each save is now one transaction (Store.updatePipeline)."""
import threading

import requests

from conftest import unique


def text_nodes(text):
    return {"note": {"id": "note", "name": "note", "type": "text", "inputs": {"text": text}}}


def create(daemon, headers, name):
    r = requests.post(f"{daemon.url}/pipeline", json={"name": name, "nodes": text_nodes("initial")}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def in_threads(count, body):
    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def test_concurrent_deploys_get_distinct_versions_each_holding_its_own_nodes(daemon, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    pipeline_id = create(daemon, headers, unique("deploys"))
    answers, lock = [], threading.Lock()

    def deploy(worker):
        with requests.Session() as s:
            for i in range(40):
                nodes = text_nodes(f"worker {worker} deploy {i}")
                r = s.post(f"{daemon.url}/update/pipeline/{pipeline_id}", json={"nodes": nodes, "deploy": True},
                           headers=headers, timeout=30)
                assert r.status_code == 200, r.text
                with lock:
                    answers.append((r.json()["version"], nodes))

    in_threads(4, deploy)
    versions = [v for v, _ in answers]
    assert len(answers) == 160
    assert len(set(versions)) == len(versions), f"{len(versions) - len(set(versions))} versions handed out twice"
    for version, nodes in answers:
        r = requests.get(f"{daemon.url}/pipeline", params={"id": pipeline_id, "version": version}, headers=headers, timeout=30)
        assert r.json()["object"]["nodes"] == nodes, f"version {version} lost the nodes it was deployed with"
    current = requests.get(f"{daemon.url}/pipeline", params={"id": pipeline_id}, headers=headers, timeout=30).json()["object"]
    assert current["currentVersion"] == "1.0.159"


def test_renames_racing_node_saves_never_write_back_older_nodes(daemon, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    pipeline_id = create(daemon, headers, unique("renames"))
    stale = []
    done = threading.Event()

    def save_nodes(_):
        with requests.Session() as s:
            for i in range(150):
                nodes = text_nodes(f"save {i}")
                r = s.post(f"{daemon.url}/update/pipeline/{pipeline_id}", json={"nodes": nodes}, headers=headers, timeout=30)
                assert r.status_code == 200, r.text
                seen = s.get(f"{daemon.url}/pipeline", params={"id": pipeline_id}, headers=headers, timeout=30).json()
                if seen["object"]["nodes"] != nodes:  # only this thread changes the nodes
                    stale.append((i, seen["object"]["nodes"]))
        done.set()

    def rename(worker):
        with requests.Session() as s:
            i = 0
            while not done.is_set():
                i += 1
                r = s.post(f"{daemon.url}/update/pipeline/{pipeline_id}", json={"name": f"renamed-{worker}-{i}"},
                           headers=headers, timeout=30)
                assert r.status_code == 200, r.text

    threads = [threading.Thread(target=save_nodes, args=(0,))] + [threading.Thread(target=rename, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert done.is_set()
    assert not stale, f"{len(stale)} times a rename wrote back older nodes, e.g. after save {stale[0][0]}: {stale[0][1]}"


def test_a_save_racing_a_delete_does_not_bring_the_pipeline_back(daemon, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    for attempt in range(15):
        pipeline_id = create(daemon, headers, unique("deleted"))

        def save(_):
            with requests.Session() as s:
                for i in range(1000):
                    r = s.post(f"{daemon.url}/update/pipeline/{pipeline_id}", json={"nodes": text_nodes(f"save {i}")},
                               headers=headers, timeout=30)
                    if r.status_code == 404:
                        return
                    assert r.status_code == 200, r.text

        def remove(_):
            with requests.Session() as s:
                for _ in range(3):
                    s.get(f"{daemon.url}/pipeline", params={"id": pipeline_id}, headers=headers, timeout=30)
                r = s.delete(f"{daemon.url}/pipeline/{pipeline_id}", headers=headers, timeout=30)
                assert r.status_code == 200, r.text

        threads = [threading.Thread(target=save, args=(n,)) for n in range(2)] + [threading.Thread(target=remove, args=(0,))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        r = requests.get(f"{daemon.url}/pipeline", params={"id": pipeline_id}, headers=headers, timeout=30)
        assert r.status_code == 404, f"attempt {attempt}: the pipeline came back after its delete was answered: {r.text[:200]}"
