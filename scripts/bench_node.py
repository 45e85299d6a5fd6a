#!/usr/bin/env python3
"""Full-node benchmark on loopback: block propagation across three nodes, and sync speed against
the node's own validation speed for the same blocks, in one run.

    .venv/bin/python scripts/bench_node.py [--blocks 200] [--interval-ms 100] [--json]

1. Propagation. Three `pouw node` processes (a, b, c) on 127.0.0.1 in a full mesh (a line would
   not stay one: address gossip lets c find a); only a mines, so every block starts in one
   place. A block's propagation time to a node is its `connected_ms` there minus its
   `connected_ms` on a (GET /api/blocks/{hash}: the wall-clock time the node connected the block
   to its best chain; the processes share this machine's clock). "First peer" is the quicker of
   b and c, "all peers" the slower: the time until all three report the same tip. Blocks 1 ..
   --warmup are left out (at the initial target the first blocks come in bursts a few
   milliseconds apart).
2. Sync. When a has --blocks blocks its mining stops, and a fresh node d (started earlier, with
   no peers) is given a, b and c as peers. Sync speed = blocks / (d's connected_ms of the last
   block - d's received_ms of the first body): bodies in flight, validation and storage, without
   the connection set-up and the header download, which are reported apart ("end to end": from
   the admin call that adds the peers).
3. Validation. The same blocks, fetched from a over the wire, are replayed in this process through
   ChainState.process_block on a fresh store (header and body checks, re-execution of the winner
   and the spot checks, the ledger transition, one LevelDB write batch: what a node does per
   block), with the nodes' torch thread count, once just before and once just after d's sync
   (the nodes idle meanwhile), so that a change in the machine's load shows. The ratio
   sync / validation (against the mean of the two replays) is the share of the node's own
   validation speed that the network path keeps. The same ratio in CPU time (d's process CPU
   seconds during the sync, from /proc, against this process's CPU seconds per replay) does not
   depend on what else the machine runs.

The nodes run with --device cpu --threads 1 (as in the tests). Their logs stay in --workdir when
given (default: a temporary directory, removed afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "p2p"))  # the functional-test framework drives the nodes

from framework import NodeProcess, fetch_blocks, wait_until, write_network  # noqa: E402


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def _same_tip(nodes: list[NodeProcess]) -> dict | None:
    st = [n.status() for n in nodes]
    return st[0] if len({s["best_hash"] for s in st}) == 1 else None


def propagation(a: NodeProcess, others: list[NodeProcess], hashes: list[str], warmup: int) -> dict:
    first, last, validate = [], [], []
    for height, h in enumerate(hashes):
        if height <= warmup:
            continue
        origin = a.get(f"/api/blocks/{h}")
        seen = [n.get(f"/api/blocks/{h}") for n in others]
        if origin["connected_ms"] is None or any(s["connected_ms"] is None for s in seen):
            continue  # connected before the node's start, or evicted: not measurable
        delays = [s["connected_ms"] - origin["connected_ms"] for s in seen]
        first.append(min(delays))
        last.append(max(delays))
        validate += [
            s["connected_ms"] - s["received_ms"] for s in seen if s["received_ms"] is not None
        ]
    return {
        "first_peer": _stats(first),
        "all_peers": _stats(last),
        "receive_to_connect": _stats(validate),
    }


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def replay(network: Path, blocks: list, threads: int, path: Path) -> dict:
    import torch

    from chain.storage import ChainStore
    from consensus.chainstate import ChainState, Outcome
    from consensus.params import load_params

    torch.set_num_threads(threads)
    store = ChainStore(str(path))
    try:
        chain = ChainState(store, load_params(str(network)))
        started, cpu0 = time.perf_counter(), time.process_time()
        for block in blocks:
            result = chain.process_block(block)
            if result.outcome != Outcome.NEW_TIP:
                raise RuntimeError(
                    f"replay: block at height {block.header.height}: {result.outcome.value} "
                    f"{result.detail}"
                )
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        store.close()
    return {
        "seconds": round(seconds, 3),
        "blocks_per_second": round(len(blocks) / seconds, 1),
        "cpu_seconds": round(cpu, 3),
        "blocks_per_cpu_second": round(len(blocks) / cpu, 1),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict:
    network = write_network(workdir / "bench.toml", block_interval_ms=args.interval_ms)
    a, b, c, d = (NodeProcess(workdir / n, network=network, name=n) for n in "abcd")
    nodes = [a, b, c, d]
    try:
        a.start()  # mining starts once the mesh is up, so no block predates it
        b.start(peers=[a.p2p_addr])
        c.start(peers=[a.p2p_addr, b.p2p_addr])
        d.start()  # the late node, no peers yet
        for n in nodes:
            n.wait_ready(timeout=120)
        wait_until(
            lambda: all(n.status()["peers"] >= 2 for n in (a, b, c)), 60, "the three nodes to peer"
        )
        a.admin("mining", {"enabled": True})
        t_mine = time.monotonic()
        wait_until(
            lambda: a.height() >= args.blocks,
            args.blocks * 5 + 60,
            f"{args.blocks} blocks on the miner",
            interval=0.5,
        )
        a.pause_mining()
        mined_s = time.monotonic() - t_mine
        tip = wait_until(lambda: _same_tip([a, b, c]), 60, "one tip on the three nodes")
        height = tip["height"]
        hashes = a.block_hashes(height)
        prop = propagation(a, [b, c], hashes, args.warmup)

        blocks = asyncio.run(fetch_blocks(a, [bytes.fromhex(h) for h in hashes[1:]]))
        units = [blk.header.work[0].unit_count for blk in blocks]
        sizes = [len(blk.to_bytes()) for blk in blocks]
        before = replay(network, blocks, 1, workdir / "replay-before")

        # Sync: the late node d gets all three as peers.
        cpu0 = process_cpu_seconds(d.proc.pid)
        t0_ms = time.time() * 1000
        for n in (a, b, c):
            d.admin("peers", {"address": n.p2p_addr})
        wait_until(
            lambda: d.status()["best_hash"] == tip["best_hash"],
            600,
            "the late node to sync",
            interval=0.05,
        )
        cpu1 = process_cpu_seconds(d.proc.pid)
        first = d.get(f"/api/blocks/{hashes[1]}")
        last = d.get(f"/api/blocks/{hashes[-1]}")
        body_s = (last["connected_ms"] - first["received_ms"]) / 1000
        end_s = (last["connected_ms"] - t0_ms) / 1000
        served = {p["listen"]: p["bytes_in"] for p in d.get("/api/peers")["peers"]}
        sync_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
        sync = {
            "blocks": height,
            "seconds": round(body_s, 3),
            "blocks_per_second": round(height / body_s, 1),
            "end_to_end_seconds": round(end_s, 3),
            "cpu_seconds": round(sync_cpu, 2)
            if sync_cpu
            else None,  # d's process, add-peer to synced
            "blocks_per_cpu_second": round(height / sync_cpu, 1) if sync_cpu else None,
            "peers_serving": sum(1 for v in served.values() if v > 0),
        }
        after = replay(network, blocks, 1, workdir / "replay-after")
    finally:
        for n in nodes:
            n.shut_down(timeout=30)
    validation = {
        "blocks": len(blocks),
        "before_sync": before,
        "after_sync": after,
        "blocks_per_second": round(
            statistics.fmean([before["blocks_per_second"], after["blocks_per_second"]]), 1
        ),
        "blocks_per_cpu_second": round(
            statistics.fmean([before["blocks_per_cpu_second"], after["blocks_per_cpu_second"]]), 1
        ),
    }
    return {
        "config": {
            "network": f"tests/p2p/fast.toml, block_interval_ms={args.interval_ms}",
            "topology": "mesh",
            "nodes": "3 + 1 late, 127.0.0.1, --device cpu --threads 1",
            "machine": (
                f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
            ),
            "blocks": height,
            "mining_seconds": round(mined_s, 1),
            "units_per_block_mean": round(statistics.fmean(units), 1),
            "block_bytes_mean": int(statistics.fmean(sizes)),
            "warmup_blocks_skipped": args.warmup,
        },
        "propagation": prop,
        "sync": sync,
        "validation": validation,
        "sync_over_validation": round(
            sync["blocks_per_second"] / validation["blocks_per_second"], 3
        ),
        "sync_over_validation_cpu": (
            round(sync["blocks_per_cpu_second"] / validation["blocks_per_cpu_second"], 3)
            if sync["blocks_per_cpu_second"]
            else None
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def table(r: dict) -> str:
    def ms(s: dict) -> str:
        if not s.get("n"):
            return "no measurable blocks"
        return (
            f"median {s['median_ms']:.1f} ms, p90 {s['p90_ms']:.1f} ms, max {s['max_ms']:.1f} ms "
            f"(n={s['n']})"
        )

    cfg, p, s, v = r["config"], r["propagation"], r["sync"], r["validation"]
    rows = [
        ("block propagation, miner -> first peer", ms(p["first_peer"])),
        ("block propagation, miner -> all peers (same tip)", ms(p["all_peers"])),
        ("  of which receive -> connect on a peer", ms(p["receive_to_connect"])),
        (
            f"sync from {s['peers_serving']} peers, {s['blocks']} blocks",
            f"{s['blocks_per_second']:.1f} blocks/s ({s['seconds']:.2f} s; end to end "
            f"{s['end_to_end_seconds']:.2f} s)",
        ),
        (
            "validation in-process (ChainState.process_block)",
            f"{v['blocks_per_second']:.1f} blocks/s (before the sync "
            f"{v['before_sync']['blocks_per_second']:.1f}, after "
            f"{v['after_sync']['blocks_per_second']:.1f})",
        ),
        ("sync / validation (wall time)", f"{r['sync_over_validation']:.2f}"),
    ]
    if r["sync_over_validation_cpu"] is not None:
        rows += [
            (
                "sync, CPU time of the syncing node",
                f"{s['blocks_per_cpu_second']:.1f} blocks per CPU second ({s['cpu_seconds']:.2f} "
                "s)",
            ),
            (
                "validation, CPU time in-process",
                f"{v['blocks_per_cpu_second']:.1f} blocks per CPU second",
            ),
            ("sync / validation (CPU time)", f"{r['sync_over_validation_cpu']:.2f}"),
        ]
    width = max(len(k) for k, _ in rows)
    head = [
        f"pouw node benchmark: {cfg['network']}, {cfg['topology']}, {cfg['nodes']}",
        f"{cfg['machine']}; {cfg['blocks']} blocks mined in {cfg['mining_seconds']} s, "
        f"{cfg['units_per_block_mean']} units and {cfg['block_bytes_mean']} bytes per block on "
        f"average; load average {r['load_average'][0]:.2f}",
        "",
        f"{'metric'.ljust(width)}  value",
        f"{'-' * width}  {'-' * 40}",
    ]
    return "\n".join(head + [f"{k.ljust(width)}  {val}" for k, val in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--blocks", type=int, default=200, help="blocks to mine, propagate and sync (default 200)"
    )
    parser.add_argument(
        "--interval-ms", type=int, default=100, help="the network's block interval (default 100)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="first blocks left out of the propagation figures (default 10)",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="keep the nodes' data and logs here (default: a temporary directory)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if not 20 <= args.blocks <= 5_000:
        parser.error("--blocks must be 20 .. 5000")
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        if workdir.exists() and any(workdir.iterdir()):
            parser.error(f"--workdir {workdir} is not empty")
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="pouw-bench-node-"))
    try:
        result = run(args, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
