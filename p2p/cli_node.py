"""`pouw node` (a full node) and `pouw devnet` (N local nodes peered on loopback, with a live view)."""

from __future__ import annotations

import argparse
import json
import os
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    node = sub.add_parser("node", help="run a full node (peers, sync, mining, HTTP API)")
    node.add_argument("--datadir", required=True, help="data directory (LevelDB store, node key, API cookie)")
    node.add_argument("--listen", default="127.0.0.1:8333", help="HOST:PORT for peer connections ('' for none; default 127.0.0.1:8333)")
    node.add_argument("--api", default="127.0.0.1:8080", help="HOST:PORT of the HTTP API (default 127.0.0.1:8080)")
    node.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="a peer to keep connected (repeatable)")
    node.add_argument("--mine", action="store_true", help="mine blocks")
    node.add_argument("--miner-address", default=None, help="reward address (default: the node key's address)")
    node.add_argument("--network", default="devnet", help="devnet, testnet or a network TOML file (default devnet)")
    node.add_argument("--device", default="auto", help="auto, cpu or cuda: where mining and re-execution run (default auto)")
    node.add_argument("--reindex", action="store_true", help="rebuild the block index and state from the stored blocks")
    node.add_argument("--threads", type=int, default=0, help="torch CPU threads for mining and verification (0: torch's default)")
    node.add_argument("--verify-budget", type=float, default=20.0, metavar="SECONDS",
                      help="seconds of block validation one peer may cost on blocks that do not become the best chain; "
                           "refills in 100 s (default 20)")
    node.add_argument("--body-timeout", type=float, default=60.0, metavar="SECONDS",
                      help="give up on a header branch with more work than the validated tip when none of its bodies "
                           "arrives for this long, and disconnect the peers that announced it (default 60)")
    node.add_argument("--max-headers-ahead", type=int, default=4096, metavar="N",
                      help="hold headers without bodies at most N blocks above the validated tip (default 4096)")
    node.add_argument("--min-relay-fee-rate", type=int, default=None, metavar="UNITS",
                      help="relay policy: the least fee per transaction byte, in base units (1 POUW = 10^8), that the "
                           "mempool accepts (default 5)")
    node.add_argument("--audit", action="store_true",
                      help="replay every unit of recent best-chain blocks in the background and publish fraud proofs")
    node.add_argument("--audit-share", type=float, default=0.5, metavar="S",
                      help="the share of one CPU the auditor may use, 0 < S <= 1 (default 0.5)")
    node.add_argument("--poison-at", type=int, default=None, metavar="U", help=argparse.SUPPRESS)  # attack for tests only
    node.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    node.set_defaults(func=_cmd_node)

    devnet = sub.add_parser("devnet", help="start N local mining nodes peered on loopback, with a live view")
    devnet.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    devnet.add_argument("--datadir", default="devnet-data", help="directory for the nodes' data (default ./devnet-data)")
    devnet.add_argument("--network", default="devnet", help="devnet, testnet or a network TOML file (default devnet)")
    devnet.add_argument("--device", default="cpu", help="device for every node (default cpu)")
    devnet.add_argument("--no-mine", action="store_true", help="start the nodes without mining")
    devnet.add_argument("--interval", type=float, default=2.0, help="seconds between live-view refreshes")
    devnet.set_defaults(func=_cmd_devnet)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _cmd_node(args: argparse.Namespace) -> int:
    import asyncio

    from chain.address import AddressError, parse_address
    from consensus.chainstate import Limits
    from consensus.params import ParamsError, load_params
    from p2p.cli import CliError
    from p2p.node import DEFAULT_MIN_RELAY_FEE_RATE, Node, NodeConfig
    from p2p.peer import PeerLimits
    from p2p.protocol import parse_hostport

    _setup_logging(args.log_level)
    for name, value in (("--api", args.api), *(("--peer", p) for p in args.peer)) + ((("--listen", args.listen),) if args.listen else ()):
        if parse_hostport(value) is None:
            raise CliError(f"{name} {value!r}: expected HOST:PORT")
    miner_address = None
    if args.miner_address:
        try:
            miner_address = parse_address(args.miner_address)
        except AddressError as exc:
            raise CliError(f"--miner-address: {exc}") from None
    try:
        load_params(args.network)
    except ParamsError as exc:
        raise CliError(f"--network: {exc}") from None
    min_fee_rate = DEFAULT_MIN_RELAY_FEE_RATE if args.min_relay_fee_rate is None else args.min_relay_fee_rate
    if not 0 <= min_fee_rate <= 10**8:
        raise CliError("--min-relay-fee-rate: must be 0 .. 100000000 base units per byte")
    if not 0 < args.verify_budget <= 86_400:
        raise CliError("--verify-budget: must be more than 0 and at most 86400 seconds")
    if not 1 <= args.body_timeout <= 86_400:
        raise CliError("--body-timeout: must be 1 .. 86400 seconds")
    if not 1 <= args.max_headers_ahead <= 1_000_000:
        raise CliError("--max-headers-ahead: must be 1 .. 1000000")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CliError("--device cuda: torch sees no CUDA device here")
    if not 0 < args.audit_share <= 1:
        raise CliError("--audit-share: must be greater than 0 and at most 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = NodeConfig(
        datadir=Path(args.datadir),
        listen=args.listen,
        api=args.api,
        peers=list(args.peer),
        mine=args.mine,
        miner_address=miner_address,
        network=args.network,
        device=args.device,
        reindex=args.reindex,
        min_relay_fee_rate=min_fee_rate,
        limits=PeerLimits(verify_budget_s=args.verify_budget, verify_refill_per_s=args.verify_budget / 100),
        body_timeout_s=args.body_timeout,
        chain_limits=Limits(max_headers_ahead=args.max_headers_ahead),
        audit=args.audit,
        audit_share=args.audit_share,
        poison_at=args.poison_at,
    )
    node = Node(config)
    asyncio.run(node.run_until_stopped())
    return 0


# --- devnet ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def _active_task_id(api_port: int) -> str | None:
    st = _get_json(f"http://127.0.0.1:{api_port}/api/status")
    return ((st or {}).get("active_task") or {}).get("task_id")


def _cmd_devnet(args: argparse.Namespace) -> int:
    from p2p.cli import CliError

    if not 1 <= args.nodes <= 16:
        raise CliError("--nodes must be 1 .. 16")
    root = Path(args.datadir)
    root.mkdir(parents=True, exist_ok=True)
    network = args.network
    if network not in ("devnet", "testnet"):
        network = str(Path(network).resolve())
    ports = [(free_port(), free_port()) for _ in range(args.nodes)]
    procs: list[subprocess.Popen] = []
    print(f"devnet: {args.nodes} nodes, network {args.network}, data in {root.resolve()}")
    for i, (p2p_port, api_port) in enumerate(ports):
        datadir = root / f"node{i}"
        datadir.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "p2p.cli", "node", "--datadir", str(datadir), "--listen", f"127.0.0.1:{p2p_port}",
               "--api", f"127.0.0.1:{api_port}", "--network", network, "--device", args.device,
               "--threads", str(max(1, (os.cpu_count() or 1) // args.nodes))]
        cmd += [a for j, (pp, _) in enumerate(ports) if j != i for a in ("--peer", f"127.0.0.1:{pp}")]
        if not args.no_mine:
            cmd.append("--mine")
        log = open(datadir / "node.log", "ab")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        print(f"  node{i}: API http://127.0.0.1:{api_port}/api/status  peers 127.0.0.1:{p2p_port}  log {datadir / 'node.log'}")
    stop = {"now": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    accuracy: dict[str, str] = {}  # task id -> last held-out accuracy seen
    refreshes = 0
    try:
        while not stop["now"]:
            refreshes += 1
            lines = []
            for i, (_, api_port) in enumerate(ports):
                st = _get_json(f"http://127.0.0.1:{api_port}/api/status")
                if procs[i].poll() is not None:
                    lines.append(f"node{i}: exited with code {procs[i].returncode} (see its node.log)")
                elif st is None:
                    lines.append(f"node{i}: starting...")
                else:
                    task = st.get("active_task") or {}
                    lines.append(
                        f"node{i}: height {st['height']:5d}  tip {st['best_hash'][:12]}  peers {st['peers']}  "
                        f"{st['sync']['state']:7s}  units mined {st['units_mined']:6d}  "
                        f"task {task.get('task_id', '?')[:8]} {task.get('kind', '?')} units {task.get('units_done', 0)}"
                    )
            task_id = _active_task_id(ports[0][1])
            if task_id and refreshes % 5 == 1:
                # The node evaluates each new training state once (cached), on one of its threads.
                m = _get_json(f"http://127.0.0.1:{ports[0][1]}/api/tasks/{task_id}/metrics", timeout=30)
                held = (m or {}).get("heldout")
                if held:
                    accuracy[task_id] = f"held-out accuracy {100 * held['accuracy']:.1f}% after {held['step']} steps"
            if task_id in accuracy:
                lines.append(f"task {task_id[:8]}: {accuracy[task_id]}")
            print(time.strftime("%H:%M:%S"), "\n  ".join(["", *lines]), flush=True)
            end = time.monotonic() + args.interval
            while not stop["now"] and time.monotonic() < end:
                time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        print("devnet: stopping the nodes...")
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        print("devnet: stopped (" + ", ".join(f"node{i} exit {p.returncode}" for i, p in enumerate(procs)) + ")")
    return 0

