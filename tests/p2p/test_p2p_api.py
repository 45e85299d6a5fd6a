"""The HTTP API of a mining node: latency under mining, admin token, the OpenAPI document."""

import re
import time

import pytest
from framework import ApiError, wait_until

from p2p.api import ROUTES, build_api, openapi_document

pytestmark = pytest.mark.integration


def test_every_route_is_in_the_openapi_document():
    app = build_api(None)  # routing table only; handlers are not called
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    doc = openapi_document()
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert len(ROUTES) == len(documented)


def test_api_answers_while_mining_and_guards_admin_calls(make_node):
    node = make_node("api").start(mine=True).wait_ready()
    wait_until(lambda: node.height() >= 5, 60, "mining to start")
    # Latency of read calls while the miner runs.
    paths = [
        "/api/status",
        "/api/blocks?limit=10",
        "/api/blocks/1",
        "/api/tasks",
        "/api/peers",
        "/metrics",
    ]
    times = []
    for i in range(120):
        t = time.perf_counter()
        node.get(paths[i % len(paths)])
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50, p95 = times[len(times) // 2], times[int(len(times) * 0.95)]
    h = node.height()
    print(
        f"\nAPI latency while mining: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms "
        f"(height {h})"
    )
    assert p95 < 500

    # The served document is the one the code describes, and every documented GET answers (no 404
    # route).
    doc = node.get("/api/openapi.json")
    assert doc == openapi_document()
    st = node.status()
    task = st["active_task"]["task_id"]
    values = {"id": "1", "address": st["miner_address"]}
    for path, ops in doc["paths"].items():
        if "get" not in ops:
            continue
        concrete = re.sub(
            r"\{(\w+)\}",
            lambda m, path=path: (
                task if "tasks" in path and m.group(1) == "id" else values[m.group(1)]
            ),
            path,
        )
        if concrete.endswith("/result"):
            concrete += "?partial=1"
        if concrete.startswith("/api/txs/"):
            with pytest.raises(ApiError) as exc:
                node.get(concrete)
            assert exc.value.status == 400  # "1" is not a txid: a 400 from the route, not a 404
            continue
        node.get(concrete)

    # Accounts: the miner has rewards, newest first.
    acct = node.get(f"/api/accounts/{st['miner_address']}")
    assert acct["balance"] > 0
    hist = node.get(f"/api/accounts/{st['miner_address']}/txs?limit=3")
    assert hist["total"] >= 5 and [e["kind"] for e in hist["items"]] == ["reward"] * 3
    assert hist["items"][0]["height"] > hist["items"][1]["height"]

    # Admin calls need the cookie token.
    for token in (None, "wrong"):
        with pytest.raises(ApiError) as exc:
            node.request("POST", "/api/admin/mining", {"enabled": False}, token=token)
        assert exc.value.status == 401
    with pytest.raises(ApiError) as exc:
        node.request("POST", "/api/admin/stop", {})
    assert exc.value.status == 401
    assert node.status()["mining"] is True
    assert node.admin("mining", {"enabled": False}) == {"mining": False}
    assert node.admin("peers", {"address": "127.0.0.1:1"})["added"] == "127.0.0.1:1"
    with pytest.raises(ApiError) as exc:
        node.post_invalid = node.request("POST", "/api/txs", {"tx": "00"})
    assert exc.value.status == 400 and "malformed" in exc.value.body["error"]
    node.admin("stop")
    assert node.proc.wait(timeout=30) == 0
