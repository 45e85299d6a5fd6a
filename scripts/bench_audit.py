"""Audits and fraud proofs on devnet's training task: what an auditor replays per second beside
what a miner runs, and what a fraud proof costs to verify, measured in one run.

    .venv/bin/python scripts/bench_audit.py [--json] [--blocks 3] [--units 16]

A chain on devnet's parameters (its default training task), with `--units` expected units per
block so the run stays short, gets a warm-up block, `--blocks` honest blocks and one poisoned
block (a jump leaf the spot checks miss: consensus.attacks.PoisonMiner). The auditor
(consensus.audit, CPU share 1) replays every block; the fraud proof it builds for the poisoned
one is verified (one unit).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace

from chain.keys import PrivateKey
from chain.mempool import Mempool
from chain.storage import ChainStore
from consensus.attacks import PoisonMiner
from consensus.audit import Auditor
from consensus.chainstate import ChainState, Outcome
from consensus.fraud import check_fraud_proof
from consensus.miner import Miner
from consensus.params import load_params
from useful_work.hashing import tagged_hash


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--units", type=int, default=16, help="expected units per block (devnet: 160)")
    args = ap.parse_args()
    base = load_params("devnet")
    params = replace(
        base,
        initial_units_per_block=args.units,
        min_units_per_block=1,
        genesis_time_ms=int(time.time() * 1000) - 1000,
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = ChainStore(f"{tmp}/chain")
        mempool = Mempool(64 << 20)
        chain = ChainState(store, params, mempool=mempool)
        miner = Miner(
            chain, PrivateKey.from_bytes(tagged_hash("bench-audit-miner")), mempool=mempool
        )
        for i in range(args.blocks + 1):
            block = miner.mine_block()
            assert block is not None and chain.process_block(block).outcome is Outcome.NEW_TIP
            if i == 0:
                miner.stats = type(
                    miner.stats
                )()  # the first block warms caches and kernels up: not timed
        poisoner = PoisonMiner(
            chain, PrivateKey.from_bytes(tagged_hash("bench-audit-poisoner")), mempool=mempool
        )
        block = poisoner.mine_block()
        assert block is not None and chain.process_block(block).outcome is Outcome.NEW_TIP
        auditor = Auditor(
            chain, PrivateKey.from_bytes(tagged_hash("bench-audit-prover")), share=1.0
        )
        started = time.perf_counter()
        proof = None
        while (outcome := auditor.step()) is not None:
            proof = outcome.proof or proof
        audit_wall = time.perf_counter() - started
        assert proof is not None
        started = time.perf_counter()
        guilty = check_fraud_proof(
            params, proof.payload, chain.state, chain.tip.height + 1, store.get_block
        )
        verify_s = time.perf_counter() - started
        assert guilty == block.header.height
        store.close()
    rows = {
        "mining units per second": miner.stats.units / miner.stats.unit_seconds,
        "audit units per second (share 1)": auditor.stats.units / auditor.stats.seconds,
        "audit wall time per unit, ms": 1000 * audit_wall / auditor.stats.units,
        "units audited": auditor.stats.units,
        "blocks fully audited": auditor.stats.blocks,
        "fraud proof verification, ms": 1000 * verify_s,
        "fraud proof size, bytes": proof.size,
    }
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| devnet training task | value |\n| --- | --- |")
    for name, value in rows.items():
        print(f"| {name} | {value:.1f} |" if isinstance(value, float) else f"| {name} | {value} |")


if __name__ == "__main__":
    main()
