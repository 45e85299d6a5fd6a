"""`pouw node status|peers|stop|mining on|off`: control a running node from its data directory.

As bitcoin-cli does, they find the node by its data directory (--datadir, or ~/.pouw/NETWORK):
the API address from the runtime file the node writes there (node.json), the admin token from
its api.cookie, and whether it runs from the lock on node.pid. Every command takes --json.
Errors are one line: exit 6 when no node runs there, 12 when the node answers with an error.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from p2p.cli.exits import handles_user_errors
from p2p.logs import format_duration
from p2p.wallet.errors import NodeError, NodeUnreachable


def register(node_sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: `pouw node --datadir D status` and `pouw node status --datadir D` both work.
    common.add_argument(
        "--datadir",
        default=argparse.SUPPRESS,
        help="the node's data directory (default ~/.pouw/NETWORK)",
    )
    common.add_argument(
        "--network",
        default=argparse.SUPPRESS,
        help="picks the default data directory (default devnet)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")

    p = node_sub.add_parser(
        "status", parents=[common], help="height, sync state, peers, mining of the running node"
    )
    p.set_defaults(func=handles_user_errors(_cmd_status))
    p = node_sub.add_parser("peers", parents=[common], help="the running node's peers")
    p.set_defaults(func=handles_user_errors(_cmd_peers))
    p = node_sub.add_parser(
        "stop", parents=[common], help="stop the running node cleanly and wait until it has exited"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for it to exit (default 60)"
    )
    p.set_defaults(func=handles_user_errors(_cmd_stop))
    p = node_sub.add_parser(
        "mining", parents=[common], help="switch the running node's mining on or off"
    )
    p.add_argument("switch", choices=("on", "off"), help="on or off")
    p.set_defaults(func=handles_user_errors(_cmd_mining))


class RunningNode:
    """The node running on a data directory: its PID, API URL and admin token."""

    def __init__(self, args: argparse.Namespace) -> None:
        from p2p.config import default_datadir, read_table
        from p2p.lifecycle import COOKIE_FILE, lock_holder, read_runtime

        datadir, network = getattr(args, "datadir", None), getattr(args, "network", None)
        if getattr(args, "config", None):
            table = read_table(Path(args.config).expanduser())
            datadir = datadir or table.get("datadir")
            network = network or table.get("network")
        self.datadir = (
            Path(datadir).expanduser() if datadir else default_datadir(network or "devnet")
        )
        self.pid = lock_holder(self.datadir)
        if self.pid is None:
            raise NodeUnreachable(
                f"no node is running on {self.datadir} (pick the data directory with --datadir)"
            )
        runtime = read_runtime(self.datadir)
        if runtime is None or runtime.get("pid") != self.pid:
            raise NodeUnreachable(
                f"the node on {self.datadir} (PID {self.pid}) is starting: its API is not bound yet"
            )
        host, _, port = str(runtime["api"]).rpartition(":")
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        self.url = f"http://{host}:{port}"
        self.cookie = self.datadir / COOKIE_FILE

    def request(
        self, method: str, path: str, body: Any = None, admin: bool = False, timeout: float = 15.0
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if admin:
            try:
                token = self.cookie.read_text().strip()
            except OSError as exc:
                raise NodeError(
                    f"cannot read the admin token {self.cookie} ({exc.strerror}): run as the "
                    "node's user"
                ) from None
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", "")
            except (ValueError, AttributeError):
                message = ""
            if exc.code == 503 and message.startswith("starting"):
                raise NodeUnreachable(
                    f"the node on {self.datadir} (PID {self.pid}) is {message}; try again when it "
                    "is up"
                ) from None
            raise NodeError(
                f"the node at {self.url} answered HTTP {exc.code} for {path}: "
                f"{message or exc.reason}",
                exc.code,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachable(
                f"the node on {self.datadir} (PID {self.pid}) does not answer at {self.url} "
                f"({reason})"
            ) from None


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _cmd_status(args: argparse.Namespace) -> int:
    node = RunningNode(args)
    st = node.request("GET", "/api/status")
    sync = st["sync"]
    if sync["state"] == "syncing":
        eta = f", about {format_duration(sync['eta_s'])} left" if sync.get("eta_s") else ""
        sync_text = (
            f"syncing {sync['height']} of {sync['target_height']} "
            f"({100 * sync['progress']:.1f}%{eta})"
        )
    else:
        sync_text = sync["state"]
    mining = st.get("mining_state", "on" if st["mining"] else "off")
    if st.get("mining_error"):
        mining += f" ({st['mining_error']})"
    task = st.get("active_task") or {}
    lines = [
        f"node on {node.datadir} (PID {node.pid}), network {st['network']}, API {node.url}, up "
        f"{format_duration(st['uptime_s'])}",
        f"  height {st['height']}  best {st['best_hash'][:16]}  {sync_text}  peers {st['peers']}",
        f"  miner {mining}, rewards to {st['miner_address']}: {st['units_mined']} units, "
        f"{st['blocks_mined']} blocks found",
        f"  task {task.get('task_id', '?')[:16]} {task.get('kind', '?')}, "
        f"{task.get('units_done', 0)} units done;  mempool {st['mempool']['transactions']} "
        "transactions",
    ]
    _emit(
        args,
        {"datadir": str(node.datadir), "pid": node.pid, "api": node.url, **st},
        "\n".join(lines),
    )
    return 0


def _cmd_peers(args: argparse.Namespace) -> int:
    node = RunningNode(args)
    data = node.request("GET", "/api/peers")
    peers = data["peers"]
    lines = [f"{len(peers)} peer{'s' if len(peers) != 1 else ''} of the node on {node.datadir}"]
    for p in peers:
        ping = f"{p['ping_ms']:.1f} ms" if p.get("ping_ms") is not None else "-"
        lines.append(
            f"  {p['id']:>4}  {'in ' if p['inbound'] else 'out'}  {p['address']:<22} listen "
            f"{p['listen'] or '-':<22} height {p['best_height']:>7}  ping {ping:>9}  {p['agent']}"
        )
    for b in data.get("banned", []):
        lines.append(f"  banned {b}")
    _emit(args, data, "\n".join(lines))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from p2p.lifecycle import lock_holder

    node = RunningNode(args)
    node.request("POST", "/api/admin/stop", {}, admin=True)
    deadline = time.monotonic() + args.timeout
    while lock_holder(node.datadir) == node.pid:
        if time.monotonic() > deadline:
            raise NodeError(
                f"the node on {node.datadir} (PID {node.pid}) did not exit within "
                f"{args.timeout:.0f} s of the stop call"
            )
        time.sleep(0.1)
    _emit(
        args,
        {"stopped": True, "pid": node.pid, "datadir": str(node.datadir)},
        f"node stopped (PID {node.pid}, {node.datadir})",
    )
    return 0


def _cmd_mining(args: argparse.Namespace) -> int:
    node = RunningNode(args)
    answer = node.request("POST", "/api/admin/mining", {"enabled": args.switch == "on"}, admin=True)
    _emit(args, answer, f"mining {'on' if answer['mining'] else 'off'} (node on {node.datadir})")
    return 0
