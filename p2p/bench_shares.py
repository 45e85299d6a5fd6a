"""Shares on a real devnet: useful fraction, verification cost, training progress and a paid
render task, measured.

Runs the same three-node network twice in one run, without shares and with them: real
`pouw node` processes on loopback, each mining on one thread, peered with each other, on the
sharenet preset (consensus/presets/sharenet.toml: 30 s blocks, k = 3, maturity 5, a small
training task; the options below override its values; the no-shares run is the same network with
`shares_per_block` = 0). After `--blocks` blocks it pauses mining and reads, for each network:
- units credited to the task at the tip / units mined by all nodes (every unit any miner ran,
  the winners' and everyone else's, abandoned attempts included);
- verification time / mining time over all nodes: block processing (validation with
  re-execution, connecting, storing) plus re-running gossiped share claims, against running
  units; by wall time, and by CPU time of the threads doing each (`time.thread_time`: the chain
  worker for blocks, the verifying thread for claims, the miner thread for units);
- held-out accuracy of the task's state by height (the ledger's state after each block),
  evaluated here from the stopped node's store;
then, with the figures read, a paid render task of `--render-units` units: submitted with
`pouw task submit render` from a key the network's genesis funds, mining resumed, followed until
done. The blocks it took (from the block after its submission to the block that completed it),
with and without shares, against the ratio of units credited per block in the training
measurement, say whether it completes in proportionally fewer blocks. A plot of accuracy against
height for both goes to docs/img/shares_accuracy.png.

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

NETWORK = """base = "sharenet"
genesis_time_ms = {genesis}
block_interval_ms = {interval}
retarget_half_life_ms = {half_life}
initial_units_per_block = {units}
shares_per_block = {shares}

[default_task]
batch_size = {batch}

[[allocations]]
address = "{payer}"
amount = {funds}
"""
PAYER_WALLET = "bench"
PAYER_PASSWORD = "bench-shares-payer"  # a throwaway key of a throwaway network
PAYER_FUNDS = 1_000 * 100_000_000
RENDER_BOUNTY = "10"  # POUW for the whole render task


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


def pouw_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> dict:
    """Run `pouw ARGS --json` as a separate process (the wallet user's path); its JSON answer."""
    out = subprocess.run(
        [sys.executable, "-m", "p2p.cli", *args, "--json"],
        cwd=REPO,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"pouw {' '.join(args[:3])}: exit {out.returncode}: {out.stdout}")
    answer = json.loads(out.stdout)
    assert isinstance(answer, dict)
    return answer


def payer_wallet(root: Path) -> tuple[str, dict[str, str]]:
    """A new wallet in `root/wallet` (the key the networks' genesis funds); its address and the
    environment the `pouw` commands that use it need."""
    env = {
        "POUW_WALLET_DIR": str(root / "wallet"),
        "POUW_WALLET_PASSWORD": PAYER_PASSWORD,
        "POUW_WALLET_SCRYPT_N": str(1 << 12),  # the default 2^17 only slows the bench down
    }
    created = pouw_cli(["wallet", "create", "-w", PAYER_WALLET], env)
    return str(created["address"]), env


def wait_height(nodes: list[Node], height: int, label: str, started: float, timeout: float):
    last = -1
    while True:
        heights = [n.status()["height"] for n in nodes]
        if min(heights) != last:
            last = min(heights)
            print(
                f"  {label}: height {last} of {height} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
        if min(heights) >= height:
            return
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{label}: only height {min(heights)} after {timeout} s")
        time.sleep(2)


def render_phase(nodes: list[Node], args: argparse.Namespace, env: dict[str, str], label: str):
    """Submit a paid render task of `--render-units` units with `pouw task submit render` from
    the funded key (mining is paused, so it waits in the mempool), resume mining and follow the
    task until it is done. Returns its heights and blocks."""
    url = f"http://127.0.0.1:{nodes[0].api}"
    submitted = pouw_cli(
        [
            "task",
            "submit",
            "render",
            "--count",
            str(args.render_units),
            "--images-per-unit",
            "1",
            "--bounty",
            RENDER_BOUNTY,
            "-w",
            PAYER_WALLET,
            "--node",
            url,
            "-y",
        ],
        env,
    )
    task_id = str(submitted["task_id"])
    submitted_at = nodes[0].status()["height"]
    wait(lambda: all(_pending(n, task_id) for n in nodes), 60, "the task in every mempool", 0.5)
    for n in nodes:
        n.admin("mining", {"enabled": True})
    started = time.monotonic()
    last = -1
    while True:
        task = nodes[0].get(f"/api/tasks/{task_id}")
        assert isinstance(task, dict)
        if task["units_done"] != last:
            last = task["units_done"]
            print(
                f"  {label}: render task {last} of {args.render_units} units, height "
                f"{nodes[0].status()['height']} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
        if task["status"] == "done":
            break
        if time.monotonic() - started > args.timeout:
            raise TimeoutError(f"{label}: render task not done after {args.timeout} s")
        time.sleep(2)
    for n in nodes:
        n.admin("mining", {"enabled": False})
    created, completed = int(task["created_height"]), int(task["completed_height"])
    return {
        "task_id": task_id,
        "units": int(task["units_total"]),
        "submitted_at_height": submitted_at,
        "created_height": created,  # the block holding the submission
        "active_from_height": created + 1,  # the first block that works on it
        "completed_height": completed,
        "blocks_taken": completed - created,
        "blocks_credited": int(task["blocks"]),
        "seconds": time.monotonic() - started,
    }


def _pending(node: Node, task_id: str) -> bool:
    try:
        task = node.get(f"/api/tasks/{task_id}")
    except OSError:
        return False
    return isinstance(task, dict) and task.get("status") in ("pending", "open", "done")


def run_network(workdir: Path, shares: int, args: argparse.Namespace, payer: tuple) -> dict:
    address, env = payer
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
            payer=address,
            funds=PAYER_FUNDS,
        )
    )
    nodes = start_nodes(workdir, network, args.nodes)
    label = f"shares_per_block={shares}"
    started = time.monotonic()
    render = None
    try:
        wait_height(nodes, args.blocks, label, started, args.timeout)
        for n in nodes:
            n.admin("mining", {"enabled": False})
        time.sleep(3)
        # The training figures, read before the render phase mines on.
        statuses = [n.status() for n in nodes]
        metrics = [n.text("/metrics") for n in nodes]
        tip = statuses[0]["height"]
        tip_hash = bytes.fromhex(statuses[0]["best_hash"])
        mined = sum(s["units_mined"] for s in statuses)
        mining_s = sum(s["mining_seconds"] for s in statuses)
        mining_cpu = sum(s["mining_cpu_seconds"] for s in statuses)
        share_cpu = sum(s["share_verify_cpu_seconds"] for s in statuses)
        block_cpu = sum(s["block_verify_cpu_seconds"] for s in statuses)
        block_s = sum(metric(m, "pouw_block_verification_seconds_sum") for m in metrics)
        share_s = sum(metric(m, "pouw_share_verify_seconds_total") for m in metrics)
        claims_in = sum(metric(m, "pouw_share_claims_total") for m in metrics)
        share_units = sum(s.get("share_units_checked", 0) for s in statuses)
        training_s = time.monotonic() - started
        if args.render_units:
            render = render_phase(nodes, args, env, label)
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                os.killpg(n.proc.pid, signal.SIGTERM)
        for n in nodes:
            if n.proc is not None:
                n.proc.wait(timeout=60)
    by_height, credited, included, blocks_with = evaluate_chain(
        nodes[0].datadir, network, tip_hash, args.eval_every, args.heldout
    )
    return {
        "shares_per_block": shares,
        "height": tip,
        "units_mined": mined,
        "units_credited": credited,
        "useful_fraction": credited / mined if mined else 0.0,
        "credited_per_block": credited / tip if tip else 0.0,
        "mining_s": mining_s,
        "block_verification_s": block_s,
        "share_verification_s": share_s,
        "verification_over_mining": (block_s + share_s) / mining_s if mining_s else 0.0,
        "mining_cpu_s": mining_cpu,
        "block_verification_cpu_s": block_cpu,
        "share_verification_cpu_s": share_cpu,
        "verification_over_mining_cpu": (block_cpu + share_cpu) / mining_cpu if mining_cpu else 0.0,
        "claims_received": claims_in,
        "share_units_rerun": share_units,
        "claims_included": included,
        "blocks_with_claims": blocks_with,
        "accuracy_by_height": by_height,
        "render": render,
        "training_seconds": training_s,
        "seconds": time.monotonic() - started,
    }


def evaluate_chain(datadir: Path, network: Path, tip_hash: bytes, every: int, heldout: int):
    """(held-out accuracy by height, units credited, claims included, blocks with any) of the
    chain ending at `tip_hash` (the tip when the figures were read; blocks mined after it, for
    the render task, are not counted)."""
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
        blocks = []
        block = chain.get_block(tip_hash)
        while block is not None and block.header.height > 0:
            blocks.append(block)
            block = chain.get_block(block.header.prev_hash)
        tip = blocks[0].header.height if blocks else 0
        out: list[tuple[int, float]] = []
        included = blocks_with = 0
        credited = 0
        for block in reversed(blocks):
            h = block.header.height
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
    from consensus.params import load_params
    from useful_work.specs import TrainSpec

    preset = load_params("sharenet")
    task = preset.default_task
    assert isinstance(task, TrainSpec)
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--shares-per-block",
        type=int,
        default=preset.shares_per_block,
        help=f"shares_per_block of the shares run (sharenet: {preset.shares_per_block})",
    )
    parser.add_argument(
        "--units",
        type=int,
        default=preset.initial_units_per_block,
        help=f"initial units per block (sharenet: {preset.initial_units_per_block})",
    )
    parser.add_argument(
        "--interval-ms",
        type=int,
        default=preset.block_interval_ms,
        help=f"block interval; the retarget half-life is 8 of them (sharenet: "
        f"{preset.block_interval_ms})",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=task.batch_size,
        help=f"images per SGD step of the task (sharenet: {task.batch_size})",
    )
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--heldout", type=int, default=1024, help="held-out images per evaluation")
    parser.add_argument(
        "--render-units",
        type=int,
        default=8000,
        help="units (one 32x32 image each) of the paid render task after the training "
        "measurement; 0 skips it (default 8000: about 7 blocks without shares)",
    )
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--plot", type=Path, default=REPO / "docs/img/shares_accuracy.png")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here too")


def run(args: argparse.Namespace) -> int:
    results = []
    with tempfile.TemporaryDirectory(prefix="pouw-bench-shares-") as tmp:
        payer = payer_wallet(Path(tmp))
        for shares in (0, args.shares_per_block):
            print(f"network with shares_per_block = {shares}:", flush=True)
            results.append(run_network(Path(tmp) / f"s{shares}", shares, args, payer))
    print()
    print(f"{'':34}{'no shares':>14}{'shares':>14}")
    rows = [
        ("blocks", "height", "{:d}"),
        ("units mined (all nodes)", "units_mined", "{:d}"),
        ("units credited", "units_credited", "{:d}"),
        ("units credited per block", "credited_per_block", "{:.1f}"),
        ("useful fraction", "useful_fraction", "{:.1%}"),
        ("mining s (all nodes)", "mining_s", "{:.1f}"),
        ("block verification s", "block_verification_s", "{:.1f}"),
        ("share verification s", "share_verification_s", "{:.1f}"),
        ("verification / mining", "verification_over_mining", "{:.1%}"),
        ("mining CPU s", "mining_cpu_s", "{:.1f}"),
        ("block verification CPU s", "block_verification_cpu_s", "{:.1f}"),
        ("share verification CPU s", "share_verification_cpu_s", "{:.1f}"),
        ("verification / mining, CPU", "verification_over_mining_cpu", "{:.1%}"),
        ("share claims received", "claims_received", "{:.0f}"),
        ("units re-run for claims", "share_units_rerun", "{:d}"),
        ("share claims included", "claims_included", "{:d}"),
        ("blocks with claims", "blocks_with_claims", "{:d}"),
    ]
    for title, key, fmt in rows:
        print(f"{title:34}" + "".join(f"{fmt.format(r[key]):>14}" for r in results))
    render = render_summary(results)
    if render is not None:
        for title, key in (
            ("render task: active from height", "active_from_height"),
            ("render task: completed at height", "completed_height"),
            ("render task: blocks taken", "blocks_taken"),
        ):
            print(f"{title:34}" + "".join(f"{r['render'][key]:>14d}" for r in results))
        print(
            f"{'render blocks, shares / no shares':34}{render['blocks_ratio']:>28.2f}\n"
            f"{'credited per block, no / shares':34}{render['expected_ratio']:>28.2f}"
        )
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
        args.json.write_text(json.dumps({"networks": results, "render": render}, indent=1))
    return 0


def render_summary(results: list[dict]) -> dict | None:
    """Blocks the render task took with shares over without, beside the expectation if it takes
    proportionally fewer: units credited per block without shares over with them (training)."""
    if len(results) != 2 or any(r["render"] is None for r in results):
        return None
    without, with_shares = results
    taken = [r["render"]["blocks_taken"] for r in results]
    return {
        "units": without["render"]["units"],
        "blocks_taken_without_shares": taken[0],
        "blocks_taken_with_shares": taken[1],
        "blocks_ratio": taken[1] / taken[0] if taken[0] else 0.0,
        "expected_ratio": (
            without["credited_per_block"] / with_shares["credited_per_block"]
            if with_shares["credited_per_block"]
            else 0.0
        ),
    }


if __name__ == "__main__":
    raise SystemExit(main())
