"""Prometheus metrics of one node, in its own registry (several nodes may share a process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["NodeMetrics", "CONTENT_TYPE_LATEST"]


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("pouw_height", "Height of the best chain", registry=r)
        self.header_height = Gauge("pouw_header_height", "Height of the best known header chain", registry=r)
        self.peers = Gauge("pouw_peers", "Connected peers (after the handshake)", registry=r)
        self.mempool_txs = Gauge("pouw_mempool_transactions", "Transactions in the mempool", registry=r)
        self.mempool_bytes = Gauge("pouw_mempool_bytes", "Bytes of transactions in the mempool", registry=r)
        self.blocks = Counter("pouw_blocks", "Blocks processed, by outcome and reason", ["outcome", "reason"], registry=r)
        self.txs = Counter("pouw_transactions", "Transactions offered to the mempool, by result and reason", ["result", "reason"], registry=r)
        self.verify_seconds = Histogram(
            "pouw_block_verification_seconds",
            "Time to process (validate and connect) one block",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.units_mined = Counter("pouw_units_mined", "Work units run by this node's miner", registry=r)
        self.blocks_mined = Counter("pouw_blocks_mined", "Blocks found by this node's miner", registry=r)
        self.peer_messages = Counter("pouw_peer_messages", "Peer messages received, by type", ["type"], registry=r)
        self.disconnects = Counter("pouw_peer_disconnects", "Peer disconnections for misbehaviour or bans", ["kind"], registry=r)
        # Label values are fixed codes: message in block/header/tx, reason a consensus Reason value
        # (bad-signature, body-mismatch) or undecodable/not-a-chain; outcome a chainstate Outcome value.
        self.bad_messages = Counter(
            "pouw_bad_messages",
            "Peer messages that were the sender's fault, not a block's (a body that is not its header's, a broken signature, undecodable data), by message and reason",
            ["message", "reason"],
            registry=r,
        )
        self.headers = Counter("pouw_headers", "Headers received from peers, by outcome", ["outcome"], registry=r)
        self.header_branches_dropped = Counter(
            "pouw_header_branches_dropped", "Heavier header branches given up because no body of theirs arrived in time", registry=r
        )

        self.refused = Counter("pouw_refused_connections", "Connections refused at accept or upgrade, by limit (connections, inbound, inbound-per-host)", ["limit"], registry=r)
        self.throttled = Counter("pouw_peer_requests_throttled", "Peer requests delayed because the peer's serving budget was spent, by message type", ["type"], registry=r)
        self.storage_ok = Gauge("pouw_storage_ok", "1 while the chain store reads and writes, 0 after a write error or damaged data", registry=r)
        self.storage_failures = Counter("pouw_storage_failures", "Storage failures, by kind (write-failed, corrupt)", ["kind"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
