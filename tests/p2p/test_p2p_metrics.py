"""Metrics with bounded labels, read with prometheus_client's own parser from a real node; 405
with Allow."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from framework import ApiError
from prometheus_client.parser import text_string_to_metric_families

from chain.address import address_of
from chain.keys import PrivateKey
from chain.tx import make_transfer
from p2p.metrics import TX_REASON_CODES


def _series(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        counts[family.name] = counts.get(family.name, 0) + len(family.samples)
    return counts


def test_two_thousand_bad_transactions_keep_the_series_count_flat(make_node, tmp_path):
    key = PrivateKey.generate()
    node = make_node("a").start().wait_ready()
    status = node.status()
    chain_id = bytes.fromhex(status["chain_id"])
    to = address_of(PrivateKey.generate().public_key())

    def bad(i: int) -> bytes:
        if i % 2:  # a fee below the relay minimum, a different fee each time
            return make_transfer(key, chain_id, 0, i % 700, to, 1).to_bytes()
        return make_transfer(
            key, chain_id, 10_000 + i, 10**6, to, i + 1
        ).to_bytes()  # nonce far ahead, unfunded

    for i in range(10):
        try:
            node.request("POST", "/api/txs", {"tx": bad(i).hex()})
        except ApiError:
            pass
    before = node.get("/metrics").decode()
    for i in range(10, 2010):
        try:
            node.request("POST", "/api/txs", {"tx": bad(i).hex()})
            raise AssertionError("a bad transaction was accepted")
        except ApiError as exc:
            assert exc.status == 400
    after = node.get("/metrics").decode()
    rejected = [line for line in after.splitlines() if line.startswith("pouw_transactions_total{")]
    reasons = set(re.findall(r'reason="([^"]*)"', "\n".join(rejected)))
    assert reasons <= set(TX_REASON_CODES), reasons
    total = sum(float(line.rsplit(" ", 1)[1]) for line in rejected)
    assert total == 2010, total
    grown = {name: n for name, n in _series(after).items() if n > _series(before).get(name, 0)}
    # Only the process metrics and the API latency buckets may move (not by labels per request).
    assert not any(name.startswith("pouw_transactions") for name in grown), grown
    assert len(after) < 3 * len(before), (len(before), len(after))
    for family in text_string_to_metric_families(after):  # no numbers in labels but bucket bounds
        for sample in family.samples:
            for label, value in sample.labels.items():
                assert (
                    label == "le" or re.fullmatch(r"[1-5]xx", value) or not re.search(r"\d", value)
                ), (sample.name, label, value)
    print(
        f"\n2,010 bad transactions: /metrics {len(before)} -> {len(after)} bytes; reasons "
        f"{sorted(reasons)}"
    )
    assert node.stop() == 0


def test_process_chain_and_api_metrics_are_exported(make_node):
    node = make_node("a").start(mine=True).wait_ready()
    from framework import wait_until

    wait_until(lambda: node.height() >= 1, 60, "a block")

    def block_cpu() -> tuple[int, float, float]:
        """(height, status block_verify_cpu_seconds, pouw_block_verification_cpu_seconds)."""
        status = node.status()
        families = text_string_to_metric_families(node.get("/metrics").decode())
        total = next(
            s.value
            for f in families
            for s in f.samples
            if s.name == "pouw_block_verification_cpu_seconds_total"
        )
        return status["height"], status["block_verify_cpu_seconds"], total

    first = block_cpu()
    wait_until(lambda: node.height() >= first[0] + 2, 60, "two more blocks")
    # Processing the node's own blocks (validation with re-execution, connect, store) took CPU
    # time on the chain worker: both figures count it and grow with each block.
    later = block_cpu()
    assert first[1] > 0 and first[2] > 0, first
    assert later[1] > first[1] and later[2] > first[2], (first, later)
    # One count, two views: the metric, read after the status, holds at least the status's.
    assert later[1] <= later[2] + 0.001, later
    wait_until(lambda: node.height() >= 3, 60, "3 blocks")
    node.get("/api/blocks/1")
    try:
        node.get("/api/blocks/999999")
    except ApiError:
        pass
    text = node.get("/metrics").decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "pouw_chain_work",
        "pouw_tip_age_seconds",
        "pouw_syncing",
        "pouw_bans",
        "pouw_reorgs",
        "pouw_reorg_depth_blocks",
        "pouw_api_request_seconds",
        "pouw_storage_ok",
    ):
        assert name in names, (name, sorted(names))
    assert 'pouw_api_request_seconds_count{route="/api/blocks/{id}",status="2xx"}' in text
    assert 'route="/api/blocks/{id}",status="4xx"' in text
    # A wrong method: 405 with the JSON error and the Allow header naming the path's methods.
    req = urllib.request.Request(node.api_url + "/api/status", method="DELETE")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("DELETE /api/status answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 405 and "GET" in exc.headers.get("Allow", ""), (
            exc.code,
            dict(exc.headers),
        )
        assert "error" in json.loads(exc.read())
    assert node.stop() == 0
