#!/usr/bin/env python3
"""How a node's costs grow with the ledger and the chain, measured in one run:

    pouw bench node-scale [--accounts 1000,10000,100000,1000000] [--chain 1000,10000,50000]
        [--db-cache 256] [--json]
    (or .venv/bin/python scripts/bench_node_scale.py with the same options)

1. Connect cost of a block of 100 transfers at each ledger size: a genesis that allocates to N
   accounts (written by ChainStore.init_genesis, its tree built once), then blocks of 100
   transfers from 100 funded keys to recipients drawn from all N accounts, each timed through
   apply_block, the state root, and ChainStore.connect_block (one synced LevelDB batch), the
   same calls a validating node makes. Median of the blocks after the first (which fills the
   caches). The ratio to the smallest ledger is the figure to watch.
2. Start-up at each chain length: a chain of synthetic blocks (4 transfers and an 8-unit claim
   each; hash-chained leaves, no task execution: this measures storage, not work), written
   through apply_block and connect_block into the data directory of the p2p test network; then
   a real `pouw node` process is started on it and timed until its API answers (status 200),
   with its resident memory (VmRSS) at that moment. Python's own start (imports) is in the
   figure: the row for the shortest chain shows it.
3. Disk per 1,000 blocks, unpruned and pruned to the last 100: --disk-blocks blocks that open 3
   states of --opening-bytes each (a devnet block carries about 160 KB of leaves and openings)
   written as above, the store compacted, then ChainStore.prune (what --prune runs) and compacted.
4. Sync with and without assume-valid: a real node mines --sync-blocks blocks on the p2p test
   network with --image-size renders (2 spot checks: a verifier re-executes 3 units per block);
   the blocks,
   fetched over the wire, are replayed in this process through ChainState.process_block on a
   fresh store (what a syncing node does per block), once with full re-execution and once with
   the last block as the assume-valid block (whose winning unit is still re-run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "p2p"))  # the functional-test framework starts the node

from framework import NodeProcess, fetch_blocks, wait_until, write_network  # noqa: E402
from tqdm import tqdm  # noqa: E402

from chain.address import address_of  # noqa: E402
from chain.block import (  # noqa: E402
    NO_SIGNATURE,
    Block,
    BlockHeader,
    Opening,
    WorkClaim,
    WorkProof,
    header_commitment,
    sign_header,
    tx_root,
)
from chain.keys import PrivateKey  # noqa: E402
from chain.state import LedgerState, apply_block, default_task_record, genesis_state  # noqa: E402
from chain.storage import LEVELDB_CACHE_BYTES, ChainStore  # noqa: E402
from chain.tx import Transaction, make_transfer  # noqa: E402
from consensus.genesis import build_genesis  # noqa: E402
from consensus.params import load_params  # noqa: E402
from useful_work.hashing import ZERO_HASH, int_bytes, tagged_hash  # noqa: E402
from useful_work.specs import TrainSpec, encode_spec  # noqa: E402
from useful_work.trace import Leaf, state_hash, trace_root  # noqa: E402

MINER = PrivateKey.from_bytes(tagged_hash("scale-miner"))
SENDERS = [PrivateKey.from_bytes(tagged_hash("scale-key", int_bytes(i))) for i in range(100)]


def _header(
    height: int,
    prev: bytes,
    version: int,
    txs: list[Transaction],
    work: tuple,
    task_state: bytes = ZERO_HASH,
) -> BlockHeader:
    return BlockHeader(
        version=version,
        height=height,
        prev_hash=prev,
        time_ms=1_700_000_000_000 + height * 1000,
        target=1 << 255,
        miner=address_of(MINER.public_key()),
        miner_key=MINER.public_key().raw,
        payout=address_of(MINER.public_key()),
        tx_root=tx_root(txs),
        state_root=ZERO_HASH,
        work=work,
        task_state=task_state,
        signature=NO_SIGNATURE,
    )


OPENED = (2, 5, 7)  # the units a block opens when it carries openings (the winner is unit 7)


def make_block(
    state: LedgerState,
    parent: BlockHeader,
    txs: list[Transaction],
    version: int,
    subsidy: int,
    maturity: int,
    opening_bytes: int = 0,
) -> tuple[Block, LedgerState, object]:
    """A signed block on `parent` with these transfers and an 8-unit claim on the active task;
    with `opening_bytes`, it opens units OPENED with input states of that size (stand-ins for a
    task's states, hashing to their leaves as a real body's do)."""
    task = min(
        (t for t in state.tasks.values() if t.is_open), key=lambda t: (t.created_height, t.task_id)
    )
    shell = _header(parent.height + 1, parent.hash, version, txs, ())
    committed = header_commitment(shell.tx_root, shell.time_ms, shell.payout)
    states = (
        {
            u: random.Random(parent.hash + bytes([u])).randbytes(
                opening_bytes
            )  # incompressible, as weights are
            for u in OPENED
        }
        if opening_bytes
        else {}
    )
    leaves, current = [], task.state_hash
    for u in range(8):
        out = (
            state_hash(states[u + 1])
            if u + 1 in states
            else tagged_hash("scale-out", current, parent.hash, int_bytes(u))
        )
        leaves.append(Leaf(current, out, tagged_hash("scale-digest", out), committed))
        current = out
    claim = WorkClaim(task.task_id, len(leaves), trace_root(leaves))
    draft = _header(parent.height + 1, parent.hash, version, txs, (claim,), current)
    openings = tuple(Opening(u, s) for u, s in sorted(states.items()))
    body = (tuple(txs), (WorkProof(tuple(leaves), openings),))
    new_state, undo = apply_block(state, Block(draft, *body), subsidy, maturity)
    return (
        Block(sign_header(replace(draft, state_root=new_state.root), MINER), *body),
        new_state,
        undo,
    )


def transfers(
    state: LedgerState, chain_id: bytes, count: int, recipients: list[bytes], rng: random.Random
) -> list[Transaction]:
    out = []
    for i in range(count):
        key = SENDERS[i % len(SENDERS)]
        nonce = state.account(address_of(key.public_key())).nonce + i // len(SENDERS)
        out.append(make_transfer(key, chain_id, nonce, 10, rng.choice(recipients), 1 + i))
    return out


# --- 1. connect cost against ledger size -------------------------------------------------------


def connect_cost(
    accounts: int, blocks: int, rng: random.Random, cache_bytes: int = LEVELDB_CACHE_BYTES
) -> dict:
    chain_id = tagged_hash("scale-chain")
    recipients = [
        tagged_hash("scale-account", int_bytes(i))[:20] for i in range(accounts - len(SENDERS))
    ]
    allocations = {address_of(k.public_key()): 10**15 for k in SENDERS}
    allocations.update((a, 1_000) for a in recipients)
    task = default_task_record(encode_spec(TrainSpec()))
    start = time.perf_counter()
    state = genesis_state(chain_id, allocations, task)
    genesis = Block(
        sign_header(replace(_header(0, ZERO_HASH, 3, [], ()), state_root=state.root), MINER), (), ()
    )
    with tempfile.TemporaryDirectory(prefix="pouw-scale-") as tmp:
        store = ChainStore(tmp, cache_bytes=cache_bytes)
        store.init_genesis(genesis, state, chain_work=1)
        setup_s = time.perf_counter() - start
        del state, allocations
        parent, times = genesis.header, []
        for _ in range(blocks):
            tip = store.state()
            txs = transfers(tip, chain_id, 100, recipients, rng)
            t0 = time.perf_counter()
            block, new_state, undo = make_block(tip, parent, txs, 3, 5_000, 0)
            store.connect_block(block, undo, new_state, chain_work=parent.height + 2)  # type: ignore[arg-type]
            times.append(time.perf_counter() - t0)
            parent = block.header
        store.close()
    # make_block also signs the header (one Ed25519 signature): part of a miner's cost, and small
    return {
        "accounts": accounts,
        "setup_s": setup_s,
        "connect_ms": statistics.median(times[1:]) * 1000,
    }


# --- 2. start-up against chain length ----------------------------------------------------------


def extend_chain(
    store: ChainStore, params, upto: int, rng: random.Random, opening_bytes: int = 0
) -> None:
    genesis = build_genesis(params)
    recipients = [address_of(k.public_key()) for k in SENDERS]
    parent = store.get_header(store.tip())
    assert parent is not None
    for _ in tqdm(range(parent.height, upto), desc=f"chain to {upto} blocks", leave=False):
        tip = store.state()
        txs = transfers(tip, genesis.chain_id, 4, recipients, rng)
        block, new_state, undo = make_block(
            tip,
            parent,
            txs,
            params.version,
            params.block_subsidy(parent.height + 1),
            params.reward_maturity,
            opening_bytes,
        )
        store.connect_block(block, undo, new_state, chain_work=parent.height + 2)  # type: ignore[arg-type]
        parent = block.header


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def start_up(datadir: Path, network: Path) -> dict:
    node = NodeProcess(datadir, network, name=f"scale-{datadir.name}")
    t0 = time.perf_counter()
    node.start()
    try:
        node.wait_ready(timeout=600)
        seconds = time.perf_counter() - t0
        rss_kb = 0
        for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
        height = node.status()["height"]
    finally:
        node.stop()
    log_text = node.log_path.read_text()
    found = re.findall(r"every record read back in ([0-9.]+) s", log_text)  # the log appends
    check_s = float(found[-1]) if found else float("nan")
    return {"start_s": seconds, "rss_mb": rss_kb / 1024, "height": height, "check_s": check_s}


def chain_rows(lengths: list[int], workdir: Path, rng: random.Random) -> list[dict]:
    allocations = [(str_address(k), 10**15) for k in SENDERS]
    network = write_network(
        workdir / "network.toml", allocations, genesis_time_ms=1_600_000_000_000
    )
    params = load_params(network)
    datadir = workdir / "node"
    chain_dir = datadir / "chain"
    chain_dir.parent.mkdir(parents=True)
    rows = []
    store = ChainStore(str(chain_dir))
    genesis = build_genesis(params)
    store.init_genesis(
        genesis.block, genesis.state, genesis.chain_work, [genesis.default_task_state]
    )
    for length in lengths:
        t0 = time.perf_counter()
        extend_chain(store, params, length, rng)
        build_s = time.perf_counter() - t0
        store.close()
        row = {"blocks": length, "build_s": build_s, "store_bytes": dir_bytes(chain_dir)}
        row.update(start_up(datadir, network))
        # Started again: the first start after the bulk write also waits on LevelDB compacting it.
        again = start_up(datadir, network)
        row.update(restart_s=again["start_s"], restart_rss_mb=again["rss_mb"])
        rows.append(row)
        store = ChainStore(str(chain_dir))
    store.close()
    return rows


def str_address(key: PrivateKey) -> str:
    from chain.address import format_address

    return format_address(address_of(key.public_key()))


# --- 3. disk per 1,000 blocks, pruned and unpruned ----------------------------------------------


def disk_rows(
    blocks: int, keep: int, opening_bytes: int, workdir: Path, rng: random.Random
) -> dict:
    """A chain of blocks with openings, its store compacted; then pruned to `keep`, compacted."""
    network = write_network(
        workdir / "disk.toml",
        [(str_address(k), 10**15) for k in SENDERS],
        genesis_time_ms=1_600_000_000_000,
    )
    params = load_params(network)
    genesis = build_genesis(params)
    path = workdir / "disk"
    store = ChainStore(str(path))
    store.init_genesis(
        genesis.block, genesis.state, genesis.chain_work, [genesis.default_task_state]
    )
    extend_chain(store, params, blocks, rng, opening_bytes)
    store.db.compact_range(
        start=b"\x00", stop=b"\xff"
    )  # the whole key range (no arguments: not all)
    unpruned = dir_bytes(path)
    while store.prune(keep, max_blocks=1000):
        pass
    store.db.compact_range(
        start=b"\x00", stop=b"\xff"
    )  # the whole key range (no arguments: not all)
    pruned = dir_bytes(path)
    store.close()
    return {
        "blocks": blocks,
        "keep": keep,
        "opening_bytes": opening_bytes,
        "unpruned_per_1000": unpruned / blocks * 1000,
        "pruned_per_1000": pruned / blocks * 1000,
    }


# --- 4. sync with and without assume-valid ---------------------------------------------------


def sync_rows(blocks: int, workdir: Path, image_size: int) -> dict:
    import asyncio

    from consensus.chainstate import ChainState, Outcome

    network = write_network(workdir / "sync.toml", block_interval_ms=100)
    # units of a devnet-like size (64x64 images) rather than the tests' 16x16, so that the share
    # of re-execution in a block's validation is near a real network's
    network.write_text(network.read_text().replace("image_size = 16", f"image_size = {image_size}"))
    node = NodeProcess(workdir / "miner", network, name="scale-miner").start(mine=True).wait_ready()
    try:
        wait_until(lambda: node.height() >= blocks, 3600, f"{blocks} mined blocks", interval=1.0)
        node.pause_mining()
        hashes = [bytes.fromhex(node.get(f"/api/blocks/{h}")["hash"]) for h in range(1, blocks + 1)]
        mined = asyncio.run(fetch_blocks(node, hashes))
    finally:
        node.stop()
    params = load_params(network)
    out = {"blocks": blocks}
    runs = (
        ("warm-up", None, mined[:5]),
        ("full", None, mined),
        ("assume_valid", mined[-1].hash, mined),
    )
    for name, assume, replayed in runs:  # the warm-up pays the first task set-up and imports
        store = ChainStore(str(workdir / f"replay-{name}"))
        chain = ChainState(store, params, assume_valid=assume)
        t0 = time.perf_counter()
        for block in replayed:  # headers first, as a syncing node gets them
            chain.process_header(block.header)
        for block in tqdm(replayed, desc=f"sync {name}", leave=False):
            result = chain.process_block(block)
            if result.outcome != Outcome.NEW_TIP:
                raise RuntimeError(
                    f"replay at {block.header.height}: {result.outcome.value} {result.detail}"
                )
        out[f"{name}_s"] = time.perf_counter() - t0
        out[f"{name}_assumed"] = chain.assumed_connects
        store.close()
    return out


# --- the table ---------------------------------------------------------------------------------


def table(r: dict) -> str:
    lines = [
        f"connect a block of 100 transfers (LevelDB cache {r.get('db_cache_mib', 64)} MiB)",
        f"{'accounts':>12} {'connect ms':>11} {'x smallest':>11} {'setup s':>9}",
    ]
    base = r["connect"][0]["connect_ms"] if r["connect"] else 1.0
    for row in r["connect"]:
        lines.append(
            f"{row['accounts']:>12,} {row['connect_ms']:>11.1f} {row['connect_ms'] / base:>11.2f} "
            f"{row['setup_s']:>9.1f}"
        )
    lines += [
        "",
        "node start-up (real `pouw node` process, until its API answers)",
        f"{'blocks':>8} {'start s':>8} {'of it, check s':>15} {'RSS MB':>8} "
        f"{'store MB':>9} {'build s':>8} {'again s':>8} {'again RSS':>10}",
    ]
    for row in r["chain"]:
        lines.append(
            f"{row['blocks']:>8,} {row['start_s']:>8.2f} {row['check_s']:>15.2f} "
            f"{row['rss_mb']:>8.1f} "
            f"{row['store_bytes'] / 2**20:>9.1f} {row['build_s']:>8.1f} "
            f"{row.get('restart_s', float('nan')):>8.2f} {row.get('restart_rss_mb', 0.0):>10.1f}"
        )
    disk = r.get("disk")
    if disk:
        lines += [
            "",
            f"disk per 1,000 blocks ({disk['blocks']:,} blocks opening {len(OPENED)} states of "
            f"{disk['opening_bytes']:,} bytes each, store compacted)",
            f"  unpruned {disk['unpruned_per_1000'] / 2**20:.1f} MB, "
            f"pruned to the last {disk['keep']} blocks "
            f"{disk['pruned_per_1000'] / 2**20:.1f} MB",
        ]
    sync = r.get("sync")
    if sync:
        lines += [
            "",
            f"sync of {sync['blocks']} mined blocks (ChainState.process_block on a fresh store)",
            f"  full re-execution {sync['full_s']:.2f} s, "
            f"assume-valid {sync['assume_valid_s']:.2f} s "
            f"({sync['assume_valid_assumed']} blocks not re-executed): "
            f"{sync['full_s'] / sync['assume_valid_s']:.1f}x faster",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="1000,10000,100000,1000000", help="ledger sizes")
    parser.add_argument("--chain", default="1000,10000,50000", help="chain lengths for start-up")
    parser.add_argument("--blocks", type=int, default=6, help="timed blocks per ledger size")
    parser.add_argument(
        "--sync-blocks", type=int, default=300, help="mined blocks for the sync rows (0: skip)"
    )
    parser.add_argument(
        "--disk-blocks", type=int, default=2000, help="blocks of the disk rows (0: skip)"
    )
    parser.add_argument(
        "--opening-bytes", type=int, default=40_000, help="size of each opened state there"
    )
    parser.add_argument(
        "--image-size", type=int, default=64, help="render image size of the sync network's task"
    )
    parser.add_argument(
        "--db-cache", type=int, default=256, help="LevelDB block cache of the connect rows, MiB"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rng = random.Random(13)
    results: dict = {"connect": [], "chain": []}
    for n in tqdm([int(x) for x in args.accounts.split(",") if x], desc="ledger sizes"):
        results["connect"].append(connect_cost(n, args.blocks, rng, args.db_cache << 20))
    workdir = Path(tempfile.mkdtemp(prefix="pouw-scale-chain-"))
    try:
        results["chain"] = chain_rows([int(x) for x in args.chain.split(",") if x], workdir, rng)
        if args.disk_blocks:
            results["disk"] = disk_rows(args.disk_blocks, 100, args.opening_bytes, workdir, rng)
        if args.sync_blocks:
            results["sync"] = sync_rows(args.sync_blocks, workdir, args.image_size)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["cpus"] = os.cpu_count()
    results["db_cache_mib"] = args.db_cache
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
