"""Prometheus metrics of one node, in its own registry (several nodes may share a process in tests).

Every label value is a fixed code (a message type, an outcome, a reason code from a closed list,
a route template): never a number, an address or free text, so the series count stays bounded
whatever peers and API clients send.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["NodeMetrics", "CONTENT_TYPE_LATEST", "tx_reason_code"]

# Transaction rejection texts (chain.mempool, chain.tx) -> reason codes, first match wins.
_TX_REASONS = (
    ("malformed", "malformed"),
    ("already in the mempool", "duplicate"),
    ("exceeds the mempool", "too-large"),
    ("minimum relay fee", "fee-too-low"),
    ("mempool full", "mempool-full"),
    ("already used", "nonce-used"),
    ("too far ahead", "nonce-ahead"),
    ("already pending", "nonce-pending"),
    ("does not cover", "insufficient-balance"),
    ("balance", "insufficient-balance"),
    ("no mempool", "no-mempool"),
    ("signature", "bad-signature"),
    ("chain id", "wrong-chain"),
    ("nonce", "bad-nonce"),
    ("fee", "bad-fee"),
)
TX_REASON_CODES = tuple(sorted({code for _, code in _TX_REASONS} | {"invalid"}))


def tx_reason_code(reason: str) -> str:
    """The fixed code for a rejection text ("fee 3 is below ..." -> "fee-too-low"); "invalid"
    otherwise."""
    text = reason.lower()
    for needle, code in _TX_REASONS:
        if needle in text:
            return code
    return "invalid"


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("pouw_height", "Height of the best chain", registry=r)
        self.header_height = Gauge(
            "pouw_header_height", "Height of the best known header chain", registry=r
        )
        self.peers = Gauge("pouw_peers", "Connected peers (after the handshake)", registry=r)
        self.mempool_txs = Gauge(
            "pouw_mempool_transactions", "Transactions in the mempool", registry=r
        )
        self.mempool_bytes = Gauge(
            "pouw_mempool_bytes", "Bytes of transactions in the mempool", registry=r
        )
        self.blocks = Counter(
            "pouw_blocks",
            "Blocks processed, by outcome and reason",
            ["outcome", "reason"],
            registry=r,
        )
        self.txs = Counter(
            "pouw_transactions",
            "Transactions offered to the mempool, by result and reason",
            ["result", "reason"],
            registry=r,
        )
        self.verify_seconds = Histogram(
            "pouw_block_verification_seconds",
            "Time to process (validate and connect) one block",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.verify_cpu_seconds = Counter(
            "pouw_block_verification_cpu_seconds",
            "CPU time of the chain worker thread processing blocks (validate and connect)",
            registry=r,
        )
        self.units_mined = Counter(
            "pouw_units_mined", "Work units run by this node's miner", registry=r
        )
        self.blocks_mined = Counter(
            "pouw_blocks_mined", "Blocks found by this node's miner", registry=r
        )
        self.mining_errors = Counter(
            "pouw_mining_errors", "Mining attempts that failed (each is one log line)", registry=r
        )
        self.mining_failing = Gauge(
            "pouw_mining_failing", "1 while the last mining attempt failed, else 0", registry=r
        )
        self.peer_messages = Counter(
            "pouw_peer_messages", "Peer messages received, by type", ["type"], registry=r
        )
        self.disconnects = Counter(
            "pouw_peer_disconnects",
            "Peer disconnections for misbehaviour or bans",
            ["kind"],
            registry=r,
        )
        # Label values are fixed codes: message in block/header/tx, reason a consensus Reason value
        # (bad-signature, body-mismatch) or undecodable/not-a-chain; outcome a chainstate Outcome
        # value.
        self.bad_messages = Counter(
            "pouw_bad_messages",
            "Peer messages that were the sender's fault, not a block's (a body that is not "
            "its header's, a broken signature, undecodable data), by message and reason",
            ["message", "reason"],
            registry=r,
        )
        self.headers = Counter(
            "pouw_headers", "Headers received from peers, by outcome", ["outcome"], registry=r
        )
        self.header_branches_dropped = Counter(
            "pouw_header_branches_dropped",
            "Heavier header branches given up because no body of theirs arrived in time",
            registry=r,
        )

        # Audits (pouw node --audit)
        self.audit_units = Counter(
            "pouw_audit_units", "Units re-run by this node's auditor", registry=r
        )
        self.audit_blocks = Counter(
            "pouw_audit_blocks",
            "Blocks whose every unit this node's auditor reproduced",
            registry=r,
        )
        self.audit_proofs_found = Counter(
            "pouw_audit_proofs_found", "Fraud proofs this node's auditor built", registry=r
        )
        self.audit_proofs_included = Counter(
            "pouw_audit_proofs_included",
            "This auditor's fraud proofs in connected blocks",
            registry=r,
        )
        self.audit_lag = Gauge(
            "pouw_audit_lag_blocks", "Blocks of the fraud window not audited yet", registry=r
        )
        self.refused = Counter(
            "pouw_refused_connections",
            "Connections refused at accept or upgrade, by limit (connections, inbound, "
            "inbound-per-host)",
            ["limit"],
            registry=r,
        )
        self.throttled = Counter(
            "pouw_peer_requests_throttled",
            "Peer requests delayed because the peer's serving budget was spent, by message type",
            ["type"],
            registry=r,
        )
        self.storage_ok = Gauge(
            "pouw_storage_ok",
            "1 while the chain store reads and writes, 0 after a write error or damaged data",
            registry=r,
        )
        self.storage_failures = Counter(
            "pouw_storage_failures",
            "Storage failures, by kind (write-failed, corrupt)",
            ["kind"],
            registry=r,
        )

        ProcessCollector(
            registry=r
        )  # process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds, ...
        self.chain_work = Gauge(
            "pouw_chain_work",
            "Cumulative work of the best validated chain (a float: display only)",
            registry=r,
        )
        self.tip_age = Gauge(
            "pouw_tip_age_seconds", "Seconds since the best tip's header time", registry=r
        )
        self.syncing = Gauge(
            "pouw_syncing",
            "1 while the node syncs towards a heavier header chain, else 0",
            registry=r,
        )
        self.bans = Gauge("pouw_bans", "Peers (keys) banned now", registry=r)
        self.reorgs = Counter(
            "pouw_reorgs", "Best-chain switches that disconnected blocks", registry=r
        )
        self.reorg_depth = Histogram(
            "pouw_reorg_depth_blocks",
            "Blocks disconnected per reorg",
            buckets=(1, 2, 3, 5, 10, 20, 50, 100, 1000),
            registry=r,
        )
        self.api_seconds = Histogram(
            "pouw_api_request_seconds",
            "API request latency, by route template and status class",
            ["route", "status"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )

    def bind(self, node) -> None:
        """Gauges read from the node when scraped (tip age, chain work, sync state, bans)."""
        self.chain_work.set_function(lambda: float(node.chain.tip.chain_work))
        self.tip_age.set_function(
            lambda: max(0.0, time.time() - node.chain.header(node.chain.tip.hash).time_ms / 1000)
        )
        self.syncing.set_function(lambda: 1.0 if node.sync.progress.syncing else 0.0)
        self.bans.set_function(lambda: float(len(node.bans.listing())))

    def render(self) -> bytes:
        return generate_latest(self.registry)
