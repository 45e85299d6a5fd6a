"""`pouw devnet`: N mining nodes peered on loopback, a prefunded wallet, and a live view.

What a wallet user needs comes with it (as `geth --dev` does): fixed ports (node i serves its API
on --api-port + i and peers on --p2p-port + i), `DATADIR/nodes.json` with each node's addresses,
the `export POUW_NODE=...` line to paste, and a wallet named `dev` in the user's wallet directory
(password `dev`) that the devnet's genesis funds and its miners pay. The network file the nodes
run, `DATADIR/network.toml`, is written on the first start (the chosen network plus that
allocation and a genesis time of now; on a preset, an easier start so the first block comes in
seconds) and reused after, so a restarted devnet carries on its chain.

The nodes die with the launcher however it dies: each holds the read end of a pipe whose only
writer is the launcher, and stops when it reads end of file (p2p.lifecycle.watch_parent).
The live view redraws in place on a terminal (rich) and prints plain lines when piped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from p2p.lifecycle import EXIT_NETWORK, EXIT_PORT, port_free

DEV_WALLET = "dev"
DEV_PASSWORD = "dev"  # a devnet's coins are worth nothing; the password is printed for the user
DEV_FUNDS_POUW = 1_000_000
DEFAULT_API_PORT = 18080
DEFAULT_P2P_PORT = 18330
# initial_units_per_block of a devnet made from a preset (the preset's is for a settled network)
FAST_START_UNITS = 10
NETWORK_FILE = "network.toml"
NODES_FILE = "nodes.json"
_HEADER = re.compile(r"^# pouw devnet network, from (?P<source>.+?), wallet (?P<wallet>\S+)$")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "devnet",
        help="start N local mining nodes peered on loopback, a prefunded dev wallet, a live view",
    )
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument(
        "--datadir",
        default="devnet-data",
        help="directory for the nodes' data (default ./devnet-data)",
    )
    p.add_argument(
        "--network",
        default="devnet",
        help="devnet, testnet, sharenet (shares, 30 s blocks) or a network TOML file to start from "
        "(default devnet)",
    )
    p.add_argument("--device", default="cpu", help="device for every node (default cpu)")
    p.add_argument("--no-mine", action="store_true", help="start the nodes without mining")
    p.add_argument(
        "--api-port",
        type=int,
        default=DEFAULT_API_PORT,
        help=f"node i's API port is this + i (default {DEFAULT_API_PORT})",
    )
    p.add_argument(
        "--p2p-port",
        type=int,
        default=DEFAULT_P2P_PORT,
        help=f"node i's peer port is this + i (default {DEFAULT_P2P_PORT})",
    )
    p.add_argument(
        "--wallet-dir",
        default=None,
        help="where the dev wallet goes (default $POUW_WALLET_DIR or ~/.pouw/wallet)",
    )
    p.add_argument(
        "--no-wallet", action="store_true", help="no dev wallet and no genesis allocation"
    )
    p.add_argument(
        "--miner-address",
        default=None,
        help="where mining rewards go (default: the dev wallet's address)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between live-view refreshes (default 2)",
    )
    p.add_argument("--plain", action="store_true", help="plain scrolling lines even on a terminal")
    p.set_defaults(func=_cmd_devnet)


@dataclass
class DevNode:
    name: str
    datadir: Path
    api_port: int
    p2p_port: int
    proc: subprocess.Popen | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def p2p(self) -> str:
        return f"127.0.0.1:{self.p2p_port}"

    def last_error(self) -> str:
        try:
            lines = (self.datadir / "stderr.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


def _get_json(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


# --- setup -------------------------------------------------------------------------------------


def dev_wallet(wallet_dir: str | None) -> tuple[str, Path, bool]:
    """The dev wallet's address, its file, and whether it was created now (with DEV_PASSWORD)."""
    from chain.keys import PrivateKey
    from p2p.wallet.keystore import Keystore, KeystoreError, resolve_wallet_dir

    store = Keystore(resolve_wallet_dir(wallet_dir))
    try:
        if store.exists(DEV_WALLET):
            entry = store.load(DEV_WALLET)
            return entry.keyfile.address, entry.path, False
        entry = store.create(DEV_WALLET, PrivateKey.generate(), DEV_PASSWORD)
    except KeystoreError as exc:
        from p2p.errors import UserError

        raise UserError(f"dev wallet: {exc}") from None
    return entry.keyfile.address, entry.path, True


def network_file(root: Path, source: str, address: str | None) -> tuple[Path, bool]:
    """`root/network.toml`: made now from `source` with `address` funded at genesis, or the one an
    earlier start made (it must come from the same source). Returns the path and whether it is
    new."""
    from consensus.params import PRESETS, ParamsError, load_params
    from p2p.errors import UserError

    path = root / NETWORK_FILE
    if path.exists():
        match = _HEADER.match(path.read_text().splitlines()[0] if path.read_text() else "")
        if match and match["source"] != source:
            raise UserError(
                f"{root} holds a devnet made from {match['source']}, not {source}: "
                f"delete {root} or pick another --datadir"
            )
        return path, False
    if source in PRESETS:
        body = (
            f'base = "{source}"\n'
            "# an easier start than the preset, so the first block comes in seconds\n"
            f"initial_units_per_block = {FAST_START_UNITS}\n"
        )
    else:
        try:
            body = Path(source).read_text()
            tomllib.loads(body)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            print(f"pouw: error: --network {source}: cannot read ({exc})", file=sys.stderr)
            raise SystemExit(EXIT_NETWORK) from None
    # A file that fixes its genesis time keeps it; else the genesis is now, so each new devnet is a
    # new chain.
    head = [f"# pouw devnet network, from {source}, wallet {address or 'none'}"]
    if "genesis_time_ms" not in tomllib.loads(body):
        head.append(f"genesis_time_ms = {int(time.time() * 1000)}")
    tail = (
        [
            "",
            "[[allocations]]",
            f'address = "{address}"',
            f"amount = {DEV_FUNDS_POUW * 100_000_000}",
        ]
        if address
        else []
    )
    text = "\n".join(head) + "\n" + body.rstrip("\n") + "\n" + "\n".join(tail) + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    try:
        load_params(tmp)
    except ParamsError as exc:
        tmp.unlink()
        print(f"pouw: error: --network {source}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_NETWORK) from None
    tmp.replace(path)
    return path, True


# --- the live view -----------------------------------------------------------------------------


def _node_row(n: DevNode, st: dict | None) -> dict:
    if n.proc is not None and n.proc.poll() is not None:
        return {
            "node": n.name,
            "state": f"exited {n.proc.returncode}",
            "detail": n.last_error() or f"see {n.datadir / 'node.log'}",
        }
    if st is None:
        return {
            "node": n.name,
            "state": "starting",
            "detail": f"PID {n.proc.pid if n.proc else '?'}",
        }
    return {
        "node": n.name,
        "state": st["sync"]["state"],
        "height": st["height"],
        "tip": st["best_hash"][:12],
        "peers": st["peers"],
        "mining": st.get("mining_state", "on" if st["mining"] else "off"),
        "units": st["units_mined"],
        "found": st["blocks_mined"],
        "detail": st.get("mining_error") or "",
    }


class LiveView:
    def __init__(
        self, nodes: list[DevNode], wallet: str | None, plain: bool, interval: float
    ) -> None:
        self.nodes, self.wallet, self.interval = nodes, wallet, interval
        self.plain = plain or not sys.stdout.isatty()
        self.accuracy: dict[str, str] = {}
        self.refreshes = 0
        self.first_block_s: float | None = None
        self.start_height: int | None = (
            None  # the height when the first node answered (a restart carries on a chain)
        )
        self.up_s: float | None = None  # when every node first answered
        self.started = time.monotonic()

    def poll(self) -> tuple[list[dict], list[str]]:
        self.refreshes += 1
        statuses = [_get_json(f"{n.api}/api/status") for n in self.nodes]
        rows = [_node_row(n, st) for n, st in zip(self.nodes, statuses)]
        extra = []
        up = next((st for st in statuses if st), None)
        if up is not None and self.start_height is None:
            self.start_height = up["height"]
        if self.up_s is None and all(statuses):
            self.up_s = time.monotonic() - self.started
        if (
            up is not None
            and self.first_block_s is None
            and up["height"] > (self.start_height or 0)
        ):
            self.first_block_s = time.monotonic() - self.started
        task = (up or {}).get("active_task") or {}
        api = next((n.api for n, st in zip(self.nodes, statuses) if st), None)
        if task.get("task_id") and api:
            if self.refreshes % 5 == 1 and task.get("kind") == "train":
                m = _get_json(f"{api}/api/tasks/{task['task_id']}/metrics", timeout=5)
                held = (m or {}).get("heldout")
                if held:
                    self.accuracy[task["task_id"]] = (
                        f", held-out accuracy {100 * held['accuracy']:.1f}% after {held['step']} "
                        "steps"
                    )
            extra.append(
                f"task {task['task_id'][:12]} {task.get('kind', '?')}: "
                f"{task.get('units_done', 0)} units done" + self.accuracy.get(task["task_id"], "")
            )
        if self.wallet and api:
            acct = _get_json(f"{api}/api/accounts/{self.wallet}")
            if acct:
                extra.append(
                    f"wallet {DEV_WALLET}: {acct['spendable'] / 1e8:,.4f} POUW spendable, "
                    f"{acct['immature'] / 1e8:,.4f} immature"
                )
        if self.first_block_s is not None:
            after_up = (
                f", {max(0.0, self.first_block_s - self.up_s):.1f} s after the nodes were up"
                if self.up_s is not None
                else ""
            )
            extra.append(f"first new block {self.first_block_s:.1f} s after the launch{after_up}")
        return rows, extra

    def table(self, rows: list[dict], extra: list[str]):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        t = Table(
            title=f"pouw devnet  {time.strftime('%Y-%m-%d %H:%M:%S')}  (Ctrl-C stops)",
            title_justify="left",
        )
        cols = ("node", "state", "height", "tip", "peers", "mining", "units", "found", "detail")
        for c in cols:
            t.add_column(
                c, justify="right" if c in ("height", "peers", "units", "found") else "left"
            )
        for r in rows:
            t.add_row(*(str(r.get(c, "")) for c in cols))
        return Group(t, *(Text(line) for line in extra))

    def lines(self, rows: list[dict], extra: list[str]) -> str:
        out = [time.strftime("%Y-%m-%dT%H:%M:%S")]
        for r in rows:
            if "height" in r:
                out.append(
                    f"  {r['node']}: height {r['height']:5d}  tip {r['tip']}  peers {r['peers']}  "
                    f"{r['state']:8s}  miner {r['mining']}  units {r['units']:6d}  found "
                    f"{r['found']:4d}  {r['detail']}".rstrip()
                )
            else:
                out.append(f"  {r['node']}: {r['state']} ({r['detail']})")
        out += [f"  {line}" for line in extra]
        return "\n".join(out)

    def run(self, stop: dict) -> None:
        def wait() -> None:
            # Quick refreshes until the first block, so the view shows when it came.
            end = time.monotonic() + (
                self.interval if self.first_block_s is not None else min(self.interval, 0.5)
            )
            while not stop["now"] and time.monotonic() < end and not self.all_exited():
                time.sleep(0.1)

        if self.plain:
            while not stop["now"] and not self.all_exited():
                print(self.lines(*self.poll()), flush=True)
                wait()
            return
        from rich.console import Console
        from rich.live import Live

        with Live(self.table(*self.poll()), console=Console(), auto_refresh=False) as live:
            while not stop["now"] and not self.all_exited():
                wait()
                live.update(self.table(*self.poll()), refresh=True)

    def all_exited(self) -> bool:
        return all(n.proc is not None and n.proc.poll() is not None for n in self.nodes)


# --- the command -------------------------------------------------------------------------------


def _cmd_devnet(args: argparse.Namespace) -> int:
    from p2p.errors import UserError

    if not 1 <= args.nodes <= 16:
        raise UserError("--nodes must be 1 .. 16")
    for option, base in (("--api-port", args.api_port), ("--p2p-port", args.p2p_port)):
        if not 1 <= base <= 65535 - args.nodes:
            raise UserError(f"{option} {base}: out of range 1 .. {65535 - args.nodes}")
    root = Path(args.datadir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    nodes = [
        DevNode(f"node{i}", root / f"node{i}", args.api_port + i, args.p2p_port + i)
        for i in range(args.nodes)
    ]
    for n in nodes:
        for option, port in (("--api-port", n.api_port), ("--p2p-port", n.p2p_port)):
            if not port_free("127.0.0.1", port):
                print(
                    f"pouw: error: port {port} ({n.name}'s {option[2:5]}) is in use: is another "
                    f"devnet running? ({option} picks other ports)",
                    file=sys.stderr,
                )
                return EXIT_PORT
    wallet = wallet_path = None
    created = False
    if not args.no_wallet:
        wallet, wallet_path, created = dev_wallet(args.wallet_dir)
    net_path, new_network = network_file(root, args.network, wallet)
    header = _HEADER.match(net_path.read_text().splitlines()[0])
    funded = header["wallet"] if header else None
    miner_address = args.miner_address or wallet

    read_end, write_end = os.pipe()  # the nodes' watchdog: end of file when this process is gone
    threads = max(1, (os.cpu_count() or 1) // args.nodes)
    for n in nodes:
        n.datadir.mkdir(exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "p2p.cli",
            "node",
            "--datadir",
            str(n.datadir),
            "--listen",
            n.p2p,
            "--api",
            f"127.0.0.1:{n.api_port}",
            "--network",
            str(net_path),
            "--device",
            args.device,
            "--threads",
            str(threads),
            "--log-file",
            str(n.datadir / "node.log"),
            "--parent-fd",
            str(read_end),
        ]
        cmd += [a for m in nodes if m is not n for a in ("--peer", m.p2p)]
        if not args.no_mine:
            cmd.append("--mine")
        if miner_address:
            cmd += ["--miner-address", miner_address]
        with open(n.datadir / "stderr.log", "wb") as err:
            n.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=(read_end,),
                start_new_session=True,
            )
    os.close(read_end)
    info = {
        "network": str(net_path),
        "made_from": args.network,
        "launcher_pid": os.getpid(),
        "wallet": {
            "name": DEV_WALLET,
            "address": wallet,
            "file": str(wallet_path),
            "password": DEV_PASSWORD,
            "funded_at_genesis": funded == wallet,
        }
        if wallet
        else None,
        "nodes": [
            {
                "name": n.name,
                "api": n.api,
                "p2p": n.p2p,
                "datadir": str(n.datadir),
                "log": str(n.datadir / "node.log"),
                "pid": n.proc.pid if n.proc else None,
            }
            for n in nodes
        ],
    }
    (root / NODES_FILE).write_text(json.dumps(info, indent=2) + "\n")

    stop = {"now": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    view = LiveView(nodes, wallet, args.plain, args.interval)
    code = 0
    try:
        print(
            f"devnet: {args.nodes} node{'s' * (args.nodes > 1)}, network {net_path} "
            f"({'new' if new_network else 'reused'}, from {args.network}), data in {root}"
        )
        for n in nodes:
            print(f"  {n.name}: API {n.api}  peers {n.p2p}  log {n.datadir / 'node.log'}")
        if wallet:
            how = f"created in {wallet_path}" if created else f"from {wallet_path}"
            funds = (
                f"prefunded with {DEV_FUNDS_POUW:,} POUW at genesis"
                if funded == wallet
                else f"not funded by this devnet's genesis (made for {funded}: delete {root} for a "
                "fresh one)"
            )
            print(
                f"wallet '{DEV_WALLET}' ({how}, password '{DEV_PASSWORD}'): {wallet}, {funds}"
                + (
                    "; mining rewards go to it too"
                    if miner_address == wallet and not args.no_mine
                    else ""
                )
            )
        print(f"  export POUW_NODE={nodes[0].api}")
        if wallet:
            print(
                f"  pouw wallet balance -w {DEV_WALLET}    pouw wallet send ADDRESS 10 -w "
                f"{DEV_WALLET}"
            )
        print(f"nodes and addresses: {root / NODES_FILE}   stop: Ctrl-C", flush=True)
        view.run(stop)
        if view.all_exited():
            code = 1
            for n in nodes:
                code_of = n.proc.returncode if n.proc is not None else None
                print(
                    f"devnet: {n.name} exited with code {code_of}: "
                    f"{n.last_error() or 'see ' + str(n.datadir / 'node.log')}",
                    file=sys.stderr,
                )
    except BrokenPipeError:
        from p2p.cli.exits import quiet_broken_pipe

        code = quiet_broken_pipe()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _stop_nodes(nodes, quiet=code == 141)
        os.close(write_end)
    return code


def _stop_nodes(nodes: list[DevNode], quiet: bool) -> None:
    def say(text: str) -> None:
        if not quiet:
            try:
                print(text, flush=True)
            except BrokenPipeError:
                pass

    say("devnet: stopping the nodes...")
    for n in nodes:
        if n.proc is not None and n.proc.poll() is None:
            n.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for n in nodes:
        if n.proc is None:
            continue
        try:
            n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait()
    say(
        "devnet: stopped ("
        + ", ".join(f"{n.name} exit {n.proc.returncode}" for n in nodes if n.proc)
        + ")"
    )
