"""What each remaining attack on the lottery costs the attacker and the victim, measured in one run.

    .venv/bin/python scripts/bench_attacks.py [--json] [--depth 200]

Rows (docs/protocol.md, "Threat model"):
- a fake header: hashes to grind its ticket at devnet's target, against the victim's header checks;
- a poisoned body (a devnet-size block, a transaction dropped): the relay's cost against the
  victim's body check that refuses it;
- a malformed opening: the victim's time to find it is invalid work;
- a fake branch from genesis `--depth` blocks below the tip, first body invalid: the victim
  rebuilds the fork point's state from undo records and re-executes, the tip never moves;
- free tickets: units per found block of an honest miner and of a re-roller (chained seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from chain.address import address_of, format_address
from chain.keys import PrivateKey
from chain.mempool import Mempool
from chain.storage import ChainStore
from chain.tx import make_transfer
from consensus.attacks import RerollMiner, forge_header, forge_unrun_block
from consensus.chainstate import ChainState, Limits, Outcome
from consensus.miner import Miner, make_template
from consensus.params import Allocation, ConsensusParams, load_params
from consensus.tickets import ticket
from consensus.validation import InvalidBlock, check_body, check_header
from useful_work.hashing import int_bytes, tagged_hash
from useful_work.specs import RenderSpec


def _key(label: str, i: int = 0) -> PrivateKey:
    return PrivateKey.from_bytes(tagged_hash("bench-attack", label.encode(), int_bytes(i)))


class Clock:
    def __init__(self, now: int, step: int) -> None:
        self.now, self.step = now, step

    def __call__(self) -> int:
        return self.now


def _fast_params() -> ConsensusParams:
    """Tiny render units so that hundreds of real blocks take seconds."""
    funder = _key("funder")
    return ConsensusParams(
        network="benchattack",
        block_interval_ms=1_000,
        initial_units_per_block=4,
        spot_checks=3,
        reward_maturity=10,
        genesis_time_ms=1_800_000_000_000,
        allocations=(Allocation(format_address(address_of(funder.public_key())), 10**15),),
        default_task=RenderSpec(units=0, images_per_unit=1, image_size=16, max_objects=2),
    )


def _timed(fn, repeat: int) -> float:
    """Median seconds of one call."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def header_costs(tmp: Path) -> dict:
    params = load_params("devnet")
    clock = Clock(params.genesis_time_ms + params.block_interval_ms, params.block_interval_ms)
    chain = ChainState(ChainStore(str(tmp / "devnet")), params, clock=clock)
    parent = chain.header(chain.tip.hash)
    info = chain.parent_info(parent.hash)
    key = _key("headers")
    task_id = chain.genesis.default_task.task_id
    forge_s = _timed(lambda: forge_header(params, parent, info, key, task_id, clock.now), 20)
    header = forge_header(params, parent, info, key, task_id, clock.now)
    check_s = _timed(
        lambda: check_header(params, header, chain.parent_info(parent.hash), clock.now), 200
    )
    ticket_s = _timed(lambda: ticket(parent.hash, header.miner, header.work[0].trace_root), 2_000)
    chain.store.close()
    return {
        "forge_header_s": forge_s,
        "expected_hashes_per_header": params.initial_units_per_block,
        "ticket_hash_s": ticket_s,
        "victim_header_check_s": check_s,
    }


def body_costs(tmp: Path) -> dict:
    """A devnet-parameter block (160 units expected, k = 3) of the training task, 50 transfers."""
    params = load_params("devnet")
    funder = _key("funder")
    params = replace(
        params, allocations=(Allocation(format_address(address_of(funder.public_key())), 10**15),)
    )
    clock = Clock(params.genesis_time_ms + params.block_interval_ms, params.block_interval_ms)
    mempool = Mempool(16 << 20)
    chain = ChainState(ChainStore(str(tmp / "body")), params, mempool=mempool, clock=clock)
    for n in range(50):
        to = address_of(_key("to", n).public_key())
        mempool.add(
            make_transfer(funder, chain.chain_id, n, 10, to, 1000), chain.state, chain.chain_id
        )
    # A short trace: the body check does not re-execute, so the units need not be many.
    block = Miner(chain, _key("miner"), mempool=mempool, clock=clock).mine_block(max_units=400)
    assert block is not None, "no block in 400 units: run again"
    poisoned = replace(block, txs=block.txs[1:])
    relay_s = _timed(lambda: replace(block, txs=block.txs[1:]), 200)

    def refuse() -> None:
        try:
            check_body(params, poisoned)
        except InvalidBlock:
            return
        raise AssertionError("the poisoned body passed")

    refuse_s = _timed(refuse, 20)
    chain.store.close()
    return {
        "block_bytes": len(block.to_bytes()),
        "units": block.header.work[0].unit_count,
        "relay_mutation_s": relay_s,
        "victim_body_refusal_s": refuse_s,
    }


def branch_costs(tmp: Path, depth: int) -> dict:
    params = _fast_params()
    clock = Clock(params.genesis_time_ms + 1_000, 1_000)
    chain = ChainState(
        ChainStore(str(tmp / "victim")),
        params,
        clock=clock,
        limits=Limits(max_reorg_in_memory=4 * depth),
    )
    miner = Miner(chain, _key("honest"), clock=clock)
    for _ in range(depth):
        clock.now += 1_000
        assert chain.process_block(miner.mine_block()).outcome is Outcome.NEW_TIP
    tip = chain.tip.hash
    # The attacker's branch from genesis: faster blocks (harder targets, more work each), headers
    # first.
    forger = ChainState(
        ChainStore(str(tmp / "forger")),
        params,
        clock=clock,
        limits=Limits(max_headers_ahead=10 * depth),
    )
    template = make_template(forger)
    parent = forger.header(forger.tip.hash)
    t = template.min_time_ms
    branch = []
    started = time.perf_counter()
    for i in range(depth + 20):
        t += 400
        block = forge_unrun_block(
            params,
            parent,
            forger.parent_info(parent.hash),
            _key("branch", i),
            template.start_state,
            b"garbage",
            template.task_id,
            t,
        )
        assert forger.process_header(block.header).outcome is Outcome.HEADER
        branch.append(block)
        parent = block.header
    forge_s = time.perf_counter() - started
    assert forger.best_header().chain_work > chain.tip.chain_work
    t0 = time.perf_counter()
    for block in branch:
        chain.process_header(block.header)
    headers_s = time.perf_counter() - t0
    # The bodies: stored while their branch has less work; the one that makes it the heaviest
    # triggers validation from the fork point (genesis), which fails at the first block.
    bodies_s, last_s, verdict = 0.0, 0.0, ""
    for block in branch:
        t0 = time.perf_counter()
        result = chain.process_block(block)
        last_s = time.perf_counter() - t0
        bodies_s += last_s
        if result.invalidated or result.outcome is Outcome.INVALID:
            verdict = (result.invalidated[0][1] if result.invalidated else result.detail).split(
                ":"
            )[0]
            break
    assert chain.tip.hash == tip, "the fake branch moved the tip"
    chain.store.close()
    forger.store.close()
    return {
        "depth": depth,
        "attacker_forge_s": forge_s,
        "victim_headers_s": headers_s,
        "victim_bodies_s": bodies_s,
        "victim_validation_s": last_s,
        "verdict": verdict,
    }


def ticket_costs(tmp: Path, blocks: int = 300) -> dict:
    params = replace(_fast_params(), initial_units_per_block=12)
    clock = Clock(params.genesis_time_ms + 1_000, 1_000)
    chain = ChainState(ChainStore(str(tmp / "tickets")), params, clock=clock)
    out = {}
    for name, make in (
        ("honest", lambda k: Miner(chain, k, clock=clock)),
        (
            "reroller",
            lambda k: RerollMiner(chain, k, strategy="chained", honest_prefix=8, clock=clock),
        ),
    ):
        units = 0
        for i in range(blocks):
            miner = make(_key(name, i))
            miner.mine_block()
            units += miner.stats.units
        out[f"{name}_units_per_found_block"] = units / blocks
    chain.store.close()
    return out


ROWS = [
    ("fake header: attacker's grinding (devnet target)", "forge_header_s", "s"),
    ("fake header: victim's header rules", "victim_header_check_s", "s"),
    ("poisoned body: relay's mutation", "relay_mutation_s", "s"),
    ("poisoned body: victim's refusal (devnet block)", "victim_body_refusal_s", "s"),
    ("fake branch: attacker forging all headers", "attacker_forge_s", "s"),
    ("fake branch: victim indexing all headers", "victim_headers_s", "s"),
    ("fake branch: victim storing its bodies, validation included", "victim_bodies_s", "s"),
    (
        "fake branch: of which the validation from genesis (fork state rebuilt, one unit)",
        "victim_validation_s",
        "s",
    ),
    ("free tickets: honest units per found block", "honest_units_per_found_block", ""),
    ("free tickets: re-roller units per found block", "reroller_units_per_found_block", ""),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--depth", type=int, default=200, help="blocks between genesis and the victim's tip"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pouw-attacks-") as d:
        tmp = Path(d)
        figures = {
            **header_costs(tmp),
            **body_costs(tmp),
            **branch_costs(tmp, args.depth),
            **ticket_costs(tmp),
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print("| measure | value |\n| --- | --- |")
    for label, key, unit in ROWS:
        value = figures[key]
        text = f"{value * 1e3:.3f} ms" if unit == "s" else f"{value:.1f}"
        print(f"| {label} | {text} |")
    print(
        f"\nfake branch depth {figures['depth']} blocks; its first body: {figures['verdict']}; "
        f"devnet block of {figures['units']} units, {figures['block_bytes']} bytes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
