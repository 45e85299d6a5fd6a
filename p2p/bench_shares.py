"""Shares on a real devnet: useful fraction, verification cost and training progress, measured.

Runs the same three-node network twice in one run, without shares and with them: real
`pouw node` processes on loopback, each mining on one thread, peered with each other, on a
training task. After `--blocks` blocks it pauses mining and reads, for each network:
- units credited to the task at the tip / units mined by all nodes (every unit any miner ran,
  the winners' and everyone else's, abandoned attempts included);
- verification time / mining time over all nodes: seconds spent processing blocks (validation
  with re-execution, connecting, storing) plus re-running gossiped share claims, against the
  seconds spent running units;
- held-out accuracy of the task's state by height (the ledger's state after each block),
  evaluated here from the stopped node's store;
and writes a plot of accuracy against height for both (docs/img/shares_accuracy.png).

Verification is reported twice: by wall time (seconds a claim took from the start of its
check to its end, which on a loaded machine includes waiting for the CPU and for the miner
thread of the same process) and by CPU time of the verifying thread (`time.thread_time`),
against the miner thread's CPU time per unit; block processing counts by wall time in both.

    pouw bench shares --blocks 30
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NETWORK = """base = "devnet"
network = "benchshares"
genesis_time_ms = {genesis}
block_interval_ms = {interval}
retarget_half_life_ms = {half_life}
initial_units_per_block = {units}
spot_checks = 3
reward_maturity = 5
shares_per_block = {shares}
max_share_claims = 64

[default_task]
units = 0
objective = "lights"
batch_size = {batch}
steps_per_unit = 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    datadir: Path
    p2p: int
    api: int
    proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.p2p}"

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api}{path}", timeout=20) as r:
            raw = r.read()
            return json.loads(raw) if r.headers.get_content_type() == "application/json" else raw

    def admin(self, path: str, body: dict) -> None:
        token = (self.datadir / "api.cookie").read_text().strip()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api}/api/admin/{path}",
            data=json.dumps(body).encode(),
            method="POST",
        )
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {token}")
        urllib.request.urlopen(req, timeout=20).read()

    def text(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api}{path}", timeout=20) as r:
            return str(r.read(), "utf-8")

    def status(self) -> dict:
        out = self.get("/api/status")
        assert isinstance(out, dict)
        return out


def start_nodes(workdir: Path, network: Path, count: int) -> list[Node]:
    nodes: list[Node] = []
    for i in range(count):
        node = Node(f"n{i}", workdir / f"n{i}", free_port(), free_port())
        cmd = [
            sys.executable,
            "-m",
            "p2p.cli",
            "node",
            "--datadir",
            str(node.datadir),
            "--listen",
            node.addr,
            "--api",
            f"127.0.0.1:{node.api}",
            "--network",
            str(network),
            "--device",
            "cpu",
            "--threads",
            "1",
            "--mine",
        ]
        for other in nodes:
            cmd += ["--peer", other.addr]
        log = open(workdir / f"n{i}.log", "ab")  # noqa: SIM115 (the node process writes it until it stops)
        node.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        nodes.append(node)
    for node in nodes:
        wait(lambda n=node: _up(n), 120, f"{node.name} to start")
    return nodes


def _up(node: Node) -> bool:
    try:
        node.status()
        return True
    except OSError:
        return False


def wait(predicate, timeout: float, what: str, interval: float = 1.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_network(workdir: Path, shares: int, args: argparse.Namespace) -> dict:
    workdir.mkdir(parents=True)
    network = workdir / "network.toml"
    network.write_text(
        NETWORK.format(
            genesis=int(time.time() * 1000) - 2000,
            interval=args.interval_ms,
            half_life=args.interval_ms * 8,
            units=args.units,
            shares=shares,
            batch=args.batch,
        )
    )
    nodes = start_nodes(workdir, network, args.nodes)
    label = f"shares_per_block={shares}"
    started = time.monotonic()
    try:
        last = -1
        while True:
            heights = [n.status()["height"] for n in nodes]
            if min(heights) != last:
                last = min(heights)
                print(
                    f"  {label}: height {last} of {args.blocks} "
                    f"({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
            if min(heights) >= args.blocks:
                break
            if time.monotonic() - started > args.timeout:
                raise TimeoutError(f"{label}: only height {min(heights)} after {args.timeout} s")
            time.sleep(2)
        for n in nodes:
            n.admin("mining", {"enabled": False})
        time.sleep(3)
        statuses = [n.status() for n in nodes]
        metrics = [n.text("/metrics") for n in nodes]
        tip = statuses[0]["height"]
        mined = sum(s["units_mined"] for s in statuses)
        mining_s = sum(s["mining_seconds"] for s in statuses)
        mining_cpu = sum(s.get("mining_cpu_seconds", 0.0) for s in statuses)
        share_cpu = sum(s.get("share_verify_cpu_seconds", 0.0) for s in statuses)
        block_s = sum(metric(m, "pouw_block_verification_seconds_sum") for m in metrics)
        share_s = sum(metric(m, "pouw_share_verify_seconds_total") for m in metrics)
        claims_in = sum(metric(m, "pouw_share_claims_total") for m in metrics)
        share_units = sum(s.get("share_units_checked", 0) for s in statuses)
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                os.killpg(n.proc.pid, signal.SIGTERM)
        for n in nodes:
            if n.proc is not None:
                n.proc.wait(timeout=60)
    by_height, credited, included, blocks_with = evaluate_chain(
        nodes[0].datadir, network, tip, args.eval_every, args.heldout
    )
    return {
        "shares_per_block": shares,
        "height": tip,
        "units_mined": mined,
        "units_credited": credited,
        "useful_fraction": credited / mined if mined else 0.0,
        "mining_s": mining_s,
        "block_verification_s": block_s,
        "share_verification_s": share_s,
        "verification_over_mining": (block_s + share_s) / mining_s if mining_s else 0.0,
        "mining_cpu_s": mining_cpu,
        "share_verification_cpu_s": share_cpu,
        "verification_over_mining_cpu": (block_s + share_cpu) / mining_cpu if mining_cpu else 0.0,
        "claims_received": claims_in,
        "share_units_rerun": share_units,
        "claims_included": included,
        "blocks_with_claims": blocks_with,
        "accuracy_by_height": by_height,
        "seconds": time.monotonic() - started,
    }


def evaluate_chain(datadir: Path, network: Path, tip: int, every: int, heldout: int):
    """(held-out accuracy by height, units credited at `tip`, claims included, blocks with any)."""
    from chain.storage import ChainStore
    from consensus.chainstate import ChainState
    from consensus.params import load_params
    from useful_work.evaluate import evaluate_state
    from useful_work.specs import TrainSpec, parse_spec

    params = load_params(str(network))
    store = ChainStore(str(datadir / "chain"))
    try:
        chain = ChainState(store, params)
        task_id = chain.genesis.default_task.task_id
        spec = parse_spec(chain.state.tasks[task_id].spec)
        out: list[tuple[int, float]] = []
        included = blocks_with = 0
        credited = 0
        for h in range(1, tip + 1):
            block_hash = chain.hash_at(h)
            block = chain.get_block(block_hash) if block_hash is not None else None
            if block is None:
                continue
            included += len(block.shares)
            blocks_with += bool(block.shares)
            credited += block.header.work[0].unit_count + sum(len(s.leaves) for s in block.shares)
            if h % every == 0 or h == tip:
                blob = store.get_blob(block.header.task_state)
                if blob is not None:
                    assert isinstance(spec, TrainSpec)
                    result = evaluate_state(blob, spec, count=heldout)
                    out.append((h, float(result.accuracy)))
        return out, credited, included, blocks_with
    finally:
        store.close()


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in results:
        hs = [h for h, _ in r["accuracy_by_height"]]
        acc = [a for _, a in r["accuracy_by_height"]]
        name = (
            "without shares"
            if not r["shares_per_block"]
            else f"shares_per_block = {r['shares_per_block']}"
        )
        ax.plot(hs, acc, marker="o", label=f"{name} ({r['useful_fraction']:.0%} of units useful)")
    ax.set_xlabel("height")
    ax.set_ylabel("held-out accuracy (light count)")
    ax.set_title("Three-node devnet: the task's model by height")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--shares-per-block", type=int, default=12)
    parser.add_argument("--units", type=int, default=900, help="initial units per block (network)")
    parser.add_argument("--interval-ms", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=8, help="images per SGD step of the task")
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--heldout", type=int, default=512, help="held-out images per evaluation")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--plot", type=Path, default=REPO / "docs/img/shares_accuracy.png")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here too")


def run(args: argparse.Namespace) -> int:
    results = []
    with tempfile.TemporaryDirectory(prefix="pouw-bench-shares-") as tmp:
        for shares in (0, args.shares_per_block):
            print(f"network with shares_per_block = {shares}:", flush=True)
            results.append(run_network(Path(tmp) / f"s{shares}", shares, args))
    print()
    print(f"{'':28}{'no shares':>14}{'shares':>14}")
    rows = [
        ("blocks", "height", "{:d}"),
        ("units mined (all nodes)", "units_mined", "{:d}"),
        ("units credited", "units_credited", "{:d}"),
        ("useful fraction", "useful_fraction", "{:.1%}"),
        ("mining s (all nodes)", "mining_s", "{:.1f}"),
        ("block verification s", "block_verification_s", "{:.1f}"),
        ("share verification s", "share_verification_s", "{:.1f}"),
        ("verification / mining", "verification_over_mining", "{:.1%}"),
        ("mining CPU s", "mining_cpu_s", "{:.1f}"),
        ("share verification CPU s", "share_verification_cpu_s", "{:.1f}"),
        ("verification / mining, CPU", "verification_over_mining_cpu", "{:.1%}"),
        ("share claims received", "claims_received", "{:.0f}"),
        ("units re-run for claims", "share_units_rerun", "{:d}"),
        ("share claims included", "claims_included", "{:d}"),
        ("blocks with claims", "blocks_with_claims", "{:d}"),
    ]
    for title, key, fmt in rows:
        print(f"{title:28}" + "".join(f"{fmt.format(r[key]):>14}" for r in results))
    print("held-out accuracy by height:")
    heights = sorted({h for r in results for h, _ in r["accuracy_by_height"]})
    for h in heights:
        cells = [dict(r["accuracy_by_height"]).get(h) for r in results]
        print(
            f"  {h:>4}" + "".join(f"{c:>14.3f}" if c is not None else f"{'-':>14}" for c in cells)
        )
    plot(results, args.plot)
    print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
