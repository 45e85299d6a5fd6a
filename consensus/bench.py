"""`pouw bench verify`: what a verifier spends on a block against what its miner spent mining it.

Blocks are mined at the devnet parameters on one node, then handed to a second node that checks
them stage by stage (header and body hashing, re-execution, transactions and state root) before
connecting them, so every figure comes from the same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from chain.address import address_of
from chain.keys import PrivateKey
from chain.storage import ChainStore
from chain.tx import make_transfer
from consensus.chainstate import ChainState, Outcome
from consensus.miner import Miner
from consensus.params import Allocation, ConsensusParams, load_params
from consensus.validation import check_body, check_header, check_transactions, check_work


def run(
    params: ConsensusParams, blocks: int, txs_per_block: int = 50, progress: bool = True
) -> dict:
    from tqdm import tqdm

    from chain.address import format_address

    funder = PrivateKey.from_bytes(b"\x11" * 32)
    from dataclasses import replace

    params = replace(
        params, allocations=(Allocation(format_address(address_of(funder.public_key())), 10**15),)
    )
    clock_now = [params.genesis_time_ms]

    def clock() -> int:
        return clock_now[0]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from chain.mempool import Mempool

        mempool = Mempool(16 << 20)
        miner_chain = ChainState(
            ChainStore(str(Path(tmp) / "miner")), params, mempool=mempool, clock=clock
        )
        verifier = ChainState(ChainStore(str(Path(tmp) / "verifier")), params, clock=clock)
        key = PrivateKey.from_bytes(b"\x22" * 32)
        miner = Miner(miner_chain, key, mempool=mempool, clock=clock)
        nonce = 0
        for _ in tqdm(
            range(blocks), desc="mining and verifying", unit="block", disable=not progress
        ):
            for _ in range(txs_per_block):
                to = address_of(PrivateKey.from_bytes(nonce.to_bytes(32, "big")).public_key())
                mempool.add(
                    make_transfer(funder, miner_chain.chain_id, nonce, 10, to, 1000),
                    miner_chain.state,
                    miner_chain.chain_id,
                )
                nonce += 1
            clock_now[0] += params.block_interval_ms
            units_before = miner.stats.units
            t0 = time.perf_counter()
            block = miner.mine_block()
            mining = time.perf_counter() - t0
            assert block is not None
            assert miner_chain.process_block(block).outcome is Outcome.NEW_TIP
            t0 = time.perf_counter()
            parent = verifier.parent_info(block.header.prev_hash)
            check_header(params, block.header, parent, clock())
            check_body(params, block)
            t1 = time.perf_counter()
            check_work(params, block, verifier.state)
            t2 = time.perf_counter()
            check_transactions(params, block, verifier.state)
            t3 = time.perf_counter()
            result = verifier.process_block(block)
            t4 = time.perf_counter()
            assert result.outcome is Outcome.NEW_TIP, result
            rows.append(
                {
                    "height": block.header.height,
                    "units": miner.stats.units - units_before,
                    "txs": len(block.txs),
                    "mining_s": mining,
                    "hashing_s": t1 - t0,
                    "reexecution_s": t2 - t1,
                    "transactions_s": t3 - t2,
                    "connect_s": t4 - t3,
                }
            )
        miner_chain.store.close()
        verifier.store.close()
    mining = sum(r["mining_s"] for r in rows)
    stages = {k: sum(r[k] for r in rows) for k in ("hashing_s", "reexecution_s", "transactions_s")}
    verify = sum(stages.values())
    return {
        "network": params.network,
        "spot_checks": params.spot_checks,
        "blocks": len(rows),
        "units_mined": sum(r["units"] for r in rows),
        "mean_units_per_block": sum(r["units"] for r in rows) / len(rows),
        "mining_s_per_block": mining / len(rows),
        "verify_s_per_block": verify / len(rows),
        "verify_over_mining": verify / mining,
        "share_reexecution": stages["reexecution_s"] / verify,
        "share_hashing": stages["hashing_s"] / verify,
        "share_transactions": stages["transactions_s"] / verify,
        "connect_s_per_block": sum(r["connect_s"] for r in rows) / len(rows),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pouw bench verify")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--network", default="devnet")
    parser.add_argument("--blocks", type=int, default=None)
    args = parser.parse_args(argv)
    params = load_params(args.network)
    report = run(params, args.blocks or (2 if args.quick else 8), progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"network {report['network']}, k = {report['spot_checks']}, {report['blocks']} "
        f"blocks, {report['mean_units_per_block']:.0f} units per block on average"
    )
    print(f"{'measure':<34}{'value':>14}")
    for label, value in (
        ("mining time per block (s)", f"{report['mining_s_per_block']:.3f}"),
        ("verification time per block (s)", f"{report['verify_s_per_block']:.3f}"),
        ("verification / mining", f"{100 * report['verify_over_mining']:.2f} %"),
        ("  share: re-execution", f"{100 * report['share_reexecution']:.1f} %"),
        ("  share: hashing, roots, signature", f"{100 * report['share_hashing']:.1f} %"),
        ("  share: transactions, state root", f"{100 * report['share_transactions']:.1f} %"),
        ("connect incl. LevelDB write (s)", f"{report['connect_s_per_block']:.3f}"),
    ):
        print(f"{label:<34}{value:>14}")
    return 0
