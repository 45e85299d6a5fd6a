"""`pouw node` (a full node), its control commands (`pouw node status|peers|stop|mining`) and
`pouw devnet` (N local nodes peered on loopback, with a live view: p2p/cli/devnet.py).

Every flag of `pouw node` can also be set in `--config FILE` or `<datadir>/pouw.toml`
(p2p/config.py); what a user can get wrong at startup is one line and an exit code of its own
(p2p/lifecycle.py, listed in docs/operators.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

from p2p.cli import devnet, node_commands

log = logging.getLogger("pouw.node")

# Built-in values of the flags whose parser default is None (None: set by no flag and no file).
DEFAULTS = {
    "network": "devnet",
    "listen": "127.0.0.1:8333",
    "api": "127.0.0.1:8080",
    "peer": [],
    "mine": False,
    "device": "auto",
    "reindex": False,
    "threads": 0,
    "verify_budget": 20.0,
    "body_timeout": 60.0,
    "max_headers_ahead": 4096,
    # p2p.node.DEFAULT_MIN_RELAY_FEE_RATE (kept here so startup need not import the node)
    "min_relay_fee_rate": 5,
    "audit": False,
    "audit_share": 0.5,
    "log_level": "INFO",
    "log_max_mb": 10.0,
    "log_backups": 5,
}
PARENT_GRACE_S = (
    4.0  # after the launcher is gone, a clean stop gets this long before the process exits
)


def _assume_valid(text: str | None) -> bytes | None:
    """--assume-valid: a block hash, 'none' (off, whatever the network file says), or unset
    (None)."""
    from p2p.lifecycle import EXIT_USAGE, StartupError

    if text is None:
        return None
    if text == "none":
        return b""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise StartupError(
            EXIT_USAGE, f"--assume-valid {text!r}: not a block hash (64 hex digits) or 'none'"
        )
    return value


def _db_cache(mib: int) -> int:
    """--db-cache: 1 MiB at least (LevelDB needs a cache), in bytes."""
    from p2p.lifecycle import EXIT_USAGE, StartupError

    if not 1 <= mib <= 1 << 20:
        raise StartupError(EXIT_USAGE, f"--db-cache {mib}: give MiB from 1 to 1048576")
    return mib << 20


def _prune(blocks: int | None, network: str) -> int | None:
    """--prune: at least reward_maturity + 1 blocks, so fraud proofs and audits find their
    bodies."""
    from consensus.params import load_params
    from p2p.lifecycle import EXIT_USAGE, StartupError

    if blocks is None:
        return None
    least = load_params(network).reward_maturity + 1
    if blocks < least:
        raise StartupError(
            EXIT_USAGE,
            f"--prune {blocks}: keep at least {least} blocks (reward_maturity + 1), "
            "so that fraud proofs and audits within the window find their blocks",
        )
    return blocks


def register(sub: argparse._SubParsersAction) -> None:
    node = sub.add_parser(
        "node",
        help="run a full node (peers, sync, mining, HTTP API); `pouw node "
        "status|peers|stop|mining` control one",
        description="Run a full node. Every flag can also be set in --config FILE or "
        "DATADIR/pouw.toml (flags win). See docs/operators.md.",
    )
    node.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="read settings from this TOML file (flags win over it)",
    )
    node.add_argument(
        "--datadir",
        default=None,
        help="data directory: store, node key, API cookie, pouw.toml (default ~/.pouw/NETWORK)",
    )
    node.add_argument(
        "--network", default=None, help="devnet, testnet or a network TOML file (default devnet)"
    )
    node.add_argument(
        "--listen",
        default=None,
        help="HOST:PORT for peer connections ('' for none; default 127.0.0.1:8333)",
    )
    node.add_argument(
        "--api", default=None, help="HOST:PORT of the HTTP API (default 127.0.0.1:8080)"
    )
    node.add_argument(
        "--peer",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="a peer to keep connected (repeatable; replaces the config file's list)",
    )
    node.add_argument(
        "--mine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mine blocks (default off)",
    )
    node.add_argument(
        "--miner-address", default=None, help="reward address (default: the node key's address)"
    )
    node.add_argument(
        "--device",
        default=None,
        help="auto, cpu or cuda: where mining and re-execution run (default auto)",
    )
    node.add_argument(
        "--reindex",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rebuild the block index and state from the stored blocks, with a progress bar",
    )
    node.add_argument(
        "--assume-valid",
        default=None,
        metavar="HASH",
        help="while syncing, connect this block and its ancestors without re-executing their units "
        "(headers, tickets, transactions and state roots are still checked); 'none' turns off "
        "the network file's assume_valid (default: the network's, off on devnet)",
    )
    node.add_argument(
        "--prune",
        type=int,
        default=None,
        metavar="BLOCKS",
        help="keep the openings and undo records of only the last BLOCKS blocks (at least "
        "reward_maturity + 1); headers, transactions, leaves, indexes and task states stay",
    )
    node.add_argument(
        "--db-cache",
        type=int,
        default=256,
        metavar="MIB",
        help="LevelDB's block cache in MiB (default 256): the state tree's reads are random, so "
        "a large ledger needs it to keep a block's connect cost flat",
    )
    node.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for mining and verification (0: torch's default)",
    )
    node.add_argument(
        "--verify-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds of block validation one peer may cost on blocks that do not become the best "
        "chain; refills in 100 s (default 20)",
    )
    node.add_argument(
        "--body-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up on a header branch with more work than the validated tip when none of its "
        "bodies arrives for this long, and disconnect the peers that announced it (default 60)",
    )
    node.add_argument(
        "--max-headers-ahead",
        type=int,
        default=None,
        metavar="N",
        help="hold headers without bodies at most N blocks above the validated tip (default 4096)",
    )
    node.add_argument(
        "--min-relay-fee-rate",
        type=int,
        default=None,
        metavar="UNITS",
        help="relay policy: the least fee per transaction byte, in base units (1 POUW = 10^8), "
        "that the mempool accepts (default 5)",
    )
    node.add_argument(
        "--audit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replay every unit of recent best-chain blocks in the background and publish fraud "
        "proofs",
    )
    node.add_argument(
        "--audit-share",
        type=float,
        default=None,
        metavar="S",
        help="the share of one CPU the auditor may use, 0 < S <= 1 (default 0.5)",
    )
    node.add_argument(
        "--poison-at", type=int, default=None, metavar="U", help=argparse.SUPPRESS
    )  # attack for tests only
    node.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    node.add_argument(
        "--log-file",
        default=None,
        metavar="FILE",
        help="write the log to FILE, rotated by size, instead of stderr",
    )
    node.add_argument(
        "--log-max-mb",
        type=float,
        default=None,
        metavar="MB",
        help="rotate the log file at this size (default 10)",
    )
    node.add_argument(
        "--log-backups",
        type=int,
        default=None,
        metavar="N",
        help="rotated log files to keep (default 5)",
    )
    node.add_argument(
        "--parent-fd", type=int, default=None, help=argparse.SUPPRESS
    )  # the launcher's watchdog pipe
    node.set_defaults(func=_cmd_node, node_parser=node)
    node_sub = node.add_subparsers(dest="node_command", metavar="[COMMAND]")
    node_commands.register(node_sub)

    devnet.register(sub)


def _fail(message: str, code: int, logged: bool) -> int:
    if logged:
        log.error("%s", message)  # the log file says why the node is not running
    print(f"pouw: error: {message}", file=sys.stderr)
    return code


def _watch_launcher(fd: int, holder: dict) -> None:
    """Stop when the launcher's pipe closes: cleanly if the node is up, within PARENT_GRACE_S
    anyway."""
    from p2p.lifecycle import EXIT_PARENT_GONE, watch_parent

    def gone() -> None:
        node = holder.get("node")
        loop = getattr(node, "loop", None)
        if node is None or loop is None:
            os._exit(EXIT_PARENT_GONE)
        timer = threading.Timer(PARENT_GRACE_S, os._exit, (EXIT_PARENT_GONE,))
        timer.daemon = True
        timer.start()
        loop.call_soon_threadsafe(node.request_stop, "the launching process is gone")

    watch_parent(fd, gone)


def _cmd_node(args: argparse.Namespace) -> int:
    from p2p import config as node_config
    from p2p.lifecycle import EXIT_CONFIG, EXIT_USAGE, EXIT_WRONG_CHAIN, StartupError, prepare
    from p2p.logs import setup_logging

    holder: dict = {}
    if args.parent_fd is not None:
        _watch_launcher(args.parent_fd, holder)
    logged = False
    try:
        node_config.resolve(args.node_parser, args, DEFAULTS)
        try:
            setup_logging(args.log_level, args.log_file, args.log_max_mb, args.log_backups)
        except ValueError as exc:
            raise StartupError(EXIT_USAGE, str(exc)) from None
        except OSError as exc:
            raise StartupError(
                EXIT_CONFIG, f"--log-file {args.log_file}: cannot open ({exc.strerror or exc})"
            ) from None
        logged = bool(args.log_file)
        miner_address = _check_args(args)
        # Lock and bind before anything slow (the network's check builds its task, torch), so these
        # come at once.
        prepared = prepare(Path(args.datadir), args.api, args.listen)
        _check_network(args)

        import asyncio

        from consensus.chainstate import Limits, WrongNetwork
        from p2p.node import Node, NodeConfig
        from p2p.peer import PeerLimits

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
            min_relay_fee_rate=args.min_relay_fee_rate,
            limits=PeerLimits(
                verify_budget_s=args.verify_budget, verify_refill_per_s=args.verify_budget / 100
            ),
            body_timeout_s=args.body_timeout,
            chain_limits=Limits(max_headers_ahead=args.max_headers_ahead),
            audit=args.audit,
            audit_share=args.audit_share,
            poison_at=args.poison_at,
            assume_valid=_assume_valid(args.assume_valid),
            prune=_prune(args.prune, args.network),
            db_cache_bytes=_db_cache(args.db_cache),
        )
        node = holder["node"] = Node(config, prepared)
        try:
            asyncio.run(node.run_until_stopped())
        except WrongNetwork as exc:
            raise StartupError(
                EXIT_WRONG_CHAIN, f"{exc}; use another --datadir for this network"
            ) from None
    except StartupError as exc:
        return _fail(exc.message, exc.code, logged)
    return 0


def _check_args(args: argparse.Namespace) -> bytes | None:
    """Check the flags' and files' values (a bad one is a StartupError naming its option); return
    the miner address, if one was given."""
    from chain.address import AddressError, parse_address
    from p2p.lifecycle import EXIT_USAGE, StartupError
    from p2p.protocol import parse_hostport

    def usage(message: str) -> StartupError:
        return StartupError(EXIT_USAGE, message)

    checks = [("--api", args.api), *(("--peer", p) for p in args.peer)] + (
        [("--listen", args.listen)] if args.listen else []
    )
    for name, value in checks:
        if parse_hostport(value) is None:
            raise usage(f"{name} {value!r}: expected HOST:PORT")
    miner_address = None
    if args.miner_address:
        try:
            miner_address = parse_address(args.miner_address)
        except AddressError as exc:
            raise usage(f"--miner-address: {exc}") from None
    if not 0 < args.verify_budget <= 86_400:
        raise usage("--verify-budget: must be more than 0 and at most 86400 seconds")
    if not 1 <= args.body_timeout <= 86_400:
        raise usage("--body-timeout: must be 1 .. 86400 seconds")
    if not 1 <= args.max_headers_ahead <= 1_000_000:
        raise usage("--max-headers-ahead: must be 1 .. 1000000")
    if not 0 <= args.min_relay_fee_rate <= 10**8:
        raise usage("--min-relay-fee-rate: must be 0 .. 100000000 base units per byte")
    if not 0 < args.audit_share <= 1:
        raise usage("--audit-share: must be greater than 0 and at most 1")
    if args.threads < 0:
        raise usage("--threads: must be 0 (torch's default) or more")
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise usage(f"--device {args.device!r}: expected auto, cpu or cuda")
    return miner_address


def _check_network(args: argparse.Namespace) -> None:
    from consensus.params import ParamsError, load_params
    from p2p.lifecycle import EXIT_NETWORK, EXIT_USAGE, StartupError

    try:
        load_params(args.network)
    except ParamsError as exc:
        raise StartupError(EXIT_NETWORK, f"--network {args.network}: {exc}") from None
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise StartupError(EXIT_USAGE, "--device cuda: torch sees no CUDA device here")
