"""The node process: chain state, mempool, miner thread, peers and the HTTP API in one asyncio loop.

`Node` composes the parts and holds the peer policy (the handshake: version, network, self and
duplicate connections, bans; what each message type is handed to). The parts are their own
modules: sync.py (headers-first sync, relay), chain_worker.py, mining.py (the miner thread),
audit_loop.py (the auditor thread), addrbook.py and dialer.py (known addresses, dialling out),
datadir.py (key, cookie, store directory), listeners.py (capped listeners), api.py (the HTTP
API, reading the node through `NodeView`).

Threads: the event loop (peers, API, scheduling), the chain worker (every change of the chain
state: block and header processing, mempool additions; see chain_worker.py) and the miner.
The event loop never holds the chain lock; it reads the tip and the immutable ledger state.
Stops cleanly on SIGINT/SIGTERM/SIGHUP or the admin stop call; after a SIGKILL the store reopens
at its last completed connect (each is one atomic LevelDB batch). Startup (p2p.lifecycle) locks
the data directory and binds the ports before it loads anything, so what a user can get wrong
fails at once as one StartupError line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import secrets
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from chain.address import address_of, format_address
from chain.mempool import Mempool
from chain.storage import (
    LEVELDB_CACHE_BYTES,
    ChainStore,
    StoreCorrupt,
    StoreError,
    StoreWriteFailed,
)
from consensus.audit import Auditor
from consensus.chainstate import BlockResult, ChainState, Limits
from consensus.miner import Miner
from consensus.params import ConsensusParams, load_params
from p2p import lifecycle, log_limits
from p2p.addrbook import AddressBook
from p2p.api import build_api
from p2p.audit_loop import AuditLoop
from p2p.datadir import (
    CHAIN_DIR,
    COOKIE_FILE,
    KEY_FILE,
    disk_takes,
    load_or_create_key,
    write_cookie,
)
from p2p.dialer import Dialer
from p2p.errors import UserError
from p2p.lifecycle import EXIT_DATADIR, EXIT_KEY, Prepared, StartupError
from p2p.listeners import (
    FD_SPARE,
    HTTP_IDLE_S,
    MAX_CONNECTIONS_PER_LISTENER,
    CappedSite,
    ensure_fd_headroom,
)
from p2p.metrics import NodeMetrics
from p2p.mining import MiningLoop
from p2p.peer import BanList, Peer, PeerLimits
from p2p.protocol import (
    AGENT,
    PROTOCOL_VERSION,
    Addr,
    BlockMsg,
    GetAddr,
    GetData,
    GetHeaders,
    Headers,
    Hello,
    Inv,
    Message,
    Ping,
    Pong,
    ShareMsg,
    TxMsg,
    int_to_wire,
    parse_hostport,
)
from p2p.reindex import recover_swap, reindex
from p2p.shares import ShareRelay
from p2p.sync import BODY_TIMEOUT_S, Sync
from p2p.txindex import TxIndex

log = logging.getLogger("pouw.node")

PING_EVERY_S = 30.0
# Relay policy, not consensus: the least fee per encoded byte this node's mempool takes (a
# transfer is about 166 bytes, so 830 base units = 0.0000083 POUW at the default).
DEFAULT_MIN_RELAY_FEE_RATE = 5
# After a write error: how often the node tries whether the disk takes writes again, and how much.
STORAGE_PROBE_EVERY_S = 2.0
STORAGE_PROBE_BYTES = 4 << 20
# Messages that would change the chain or the mempool: dropped while the store cannot write.
_WRITING_MESSAGES = (BlockMsg, Headers, Inv, TxMsg)


class StoreUnusable(UserError):
    """The chain store cannot be opened as it is (damaged files, a missing CURRENT): one line
    with the remedy."""

    exit_code = 14
    kind = "storage"


@dataclass
class NodeConfig:
    datadir: Path
    listen: str = "127.0.0.1:8333"  # "" for no inbound peers
    api: str = "127.0.0.1:8080"
    peers: list[str] = field(default_factory=list)
    mine: bool = False
    miner_address: bytes | None = None  # None: the node key's address
    network: str = "devnet"
    device: str = "cpu"
    reindex: bool = False
    max_outbound: int = 8
    mempool_bytes: int = 32 << 20
    min_relay_fee_rate: int = DEFAULT_MIN_RELAY_FEE_RATE  # base units per byte
    limits: PeerLimits = field(default_factory=PeerLimits)
    # Node policy against fake header chains: how long a heavier header branch may go without a
    # body arriving before it is given up, and the chain state's bounds on unproven headers.
    body_timeout_s: float = BODY_TIMEOUT_S
    chain_limits: Limits = field(default_factory=Limits)
    # Audits: replay whole traces of recent blocks and publish fraud proofs (consensus/audit.py).
    audit: bool = False
    audit_share: float = 0.5  # of one CPU
    assume_valid: bytes | None = None  # None: the network's assume_valid (off when empty)
    prune: int | None = None  # keep the bodies of this many blocks below the tip; None: all
    db_cache_bytes: int = LEVELDB_CACHE_BYTES  # LevelDB's block cache (--db-cache)
    poison_at: int | None = None  # attack mode for tests: mine with consensus.attacks.PoisonMiner


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


class Node:
    def __init__(self, config: NodeConfig, prepared: Prepared | None = None) -> None:
        self.config = config
        self.prepared = (
            prepared  # the data directory's lock and the bound sockets (p2p.lifecycle.prepare)
        )
        self.params: ConsensusParams = load_params(config.network)
        self.device = resolve_device(config.device)
        self.datadir = config.datadir
        self.nonce = secrets.token_bytes(8)
        self.started_at = time.time()
        self.metrics = NodeMetrics()
        self.bans = BanList()
        self.peers: dict[int, Peer] = {}
        self.addresses = AddressBook(config.listen)
        self.mining: MiningLoop | None = None  # made once the chain is loaded
        self.stop_event = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._peer_tasks: set[asyncio.Task] = set()
        self._inbound: dict[
            int, str
        ] = {}  # peer id -> remote host, from the WebSocket upgrade to the close
        self._runners: list[web.AppRunner] = []
        self._audit_loop: AuditLoop | None = None
        self.auditor: Auditor | None = None
        self.shares: ShareRelay | None = None
        self._units_reported = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.api_url = ""
        self.listen_addr = config.listen
        self.ready = False  # until start() is done, the API and peer port answer 503 with `phase`
        self.phase = "starting"
        # None while the store works; else ("write-failed" | "corrupt", the one-line reason).
        self.storage_failure: tuple[str, str] | None = None
        self._next_storage_probe = 0.0

    # --- start -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        log_limits.install()
        needed = 2 * MAX_CONNECTIONS_PER_LISTENER + self.config.max_outbound + FD_SPARE
        soft, hard = ensure_fd_headroom(needed)
        if soft != resource.RLIM_INFINITY and soft < needed:
            log.warning(
                "open-file limit %d is below the %d this node may need (%d connections per "
                "listener); "
                "raise it (ulimit -n %d) or expect refused connections under load",
                soft,
                needed,
                MAX_CONNECTIONS_PER_LISTENER,
                needed,
            )
        if self.prepared is None:
            self.prepared = lifecycle.prepare(self.datadir, self.config.api, self.config.listen)
        try:
            self.key = load_or_create_key(self.datadir / KEY_FILE)
        except (OSError, ValueError) as exc:
            raise StartupError(
                EXIT_KEY,
                f"node key {self.datadir / KEY_FILE}: cannot read it "
                f"({getattr(exc, 'strerror', None) or exc}); move it away to make a new one",
            ) from None
        self.miner_address = self.config.miner_address or address_of(self.key.public_key())
        try:
            self.token = write_cookie(self.datadir / COOKIE_FILE)
        except OSError as exc:
            raise StartupError(
                EXIT_DATADIR, f"{self.datadir / COOKIE_FILE}: cannot write ({exc.strerror})"
            ) from None

        # Serve at once (answering 503 until ready), so a long start (a reindex) is seen, not a
        # hang.
        if self.prepared.p2p_socket is not None:
            p2p_app = web.Application(client_max_size=1024, middlewares=[self._while_starting])
            p2p_app.router.add_get("/p2p", self._accept)
            await self._serve(p2p_app, self.prepared.p2p_socket)
        from p2p.explorer import mount as mount_explorer
        from p2p.explorer.source import loopback_url

        api_app = build_api(self)
        api_app.middlewares.append(self._while_starting)
        api_addr = lifecycle.bound_address(self.prepared.api_socket)
        self.explorer = mount_explorer(
            api_app, loopback_url(api_addr)
        )  # the web explorer at /, a client of the API
        await self._serve(api_app, self.prepared.api_socket)
        self.api_url = f"http://{api_addr}"
        lifecycle.write_runtime(
            self.datadir,
            {
                "pid": os.getpid(),
                "api": api_addr,
                "listen": self.listen_addr,
                "network": self.params.network,
                "network_source": self.config.network,
                "started_at": int(self.started_at),
            },
        )
        chain_dir = self.datadir / CHAIN_DIR
        self.phase = "reindexing the stored blocks" if self.config.reindex else "loading the chain"
        if self.config.reindex:
            await asyncio.to_thread(
                reindex, chain_dir, self.params, self.device, self.stop_event.is_set
            )
        else:
            recover_swap(chain_dir)
        checked = time.perf_counter()
        try:
            self.store = ChainStore.open_checked(str(chain_dir), self.config.db_cache_bytes)
        except StoreCorrupt as exc:
            raise StoreUnusable(str(exc)) from None
        log.info(
            "store %s opened with paranoid checks, every record read back in %.2f s",
            chain_dir,
            time.perf_counter() - checked,
        )
        self.metrics.storage_ok.set(1)
        self.mempool = Mempool(
            self.config.mempool_bytes, min_fee_rate=self.config.min_relay_fee_rate
        )
        self.chain = ChainState(
            self.store,
            self.params,
            mempool=self.mempool,
            device=self.device,
            limits=self.config.chain_limits,
            assume_valid=self.config.assume_valid,
            prune_keep=self.config.prune,
        )
        source = (
            "" if self.config.network == self.params.network else f" (from {self.config.network})"
        )
        log.info(
            "network %s%s, genesis %s, tip height %d %s, device %s",
            self.params.network,
            source,
            self.chain.genesis.block.hash.hex()[:16],
            self.chain.tip.height,
            self.chain.tip.hash.hex()[:16],
            self.device,
        )
        self.txindex = TxIndex(self.store)  # persisted with the blocks: nothing to rebuild
        self.metrics.height.set(self.chain.tip.height)
        self.sync = Sync(
            self.chain,
            self.mempool,
            self.metrics,
            self.live_peers,
            body_timeout_s=self.config.body_timeout_s,
        )
        self.sync.on_new_tip.append(self._index_result)
        self.metrics.bind(self)
        if self.config.poison_at is not None:
            from consensus.attacks import PoisonMiner  # an attack, for tests only

            log.warning("attack mode: poisoning unit %d of every block", self.config.poison_at)
            self.miner: Miner = PoisonMiner(
                self.chain,
                self.key,
                jump_at=self.config.poison_at,
                payout=self.miner_address,
                mempool=self.mempool,
                device=self.device,
            )
        else:
            self.miner = Miner(
                self.chain,
                self.key,
                payout=self.miner_address,
                mempool=self.mempool,
                device=self.device,
            )
        self.shares = ShareRelay(self.chain, self.live_peers, self.device, self.metrics.registry)
        self.shares.attach(self.miner)
        self.sync.on_new_tip.append(self.shares.on_new_tip)
        self.auditor = (
            Auditor(self.chain, self.key, share=self.config.audit_share, device=self.device)
            if self.config.audit
            else None
        )
        for addr in self.config.peers:
            self.addresses.add_persistent(addr)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
        )
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="tick"))
        self.dialer = Dialer(
            self.addresses,
            self.session,
            self.params.max_message_bytes,
            self._run_outbound,
            peer_addrs=self._peer_addrs,
            outbound=lambda: sum(1 for p in self.peers.values() if not p.inbound),
            max_outbound=self.config.max_outbound,
            banned=self.bans.banned,
            spawn=self._spawn,
        )
        self._tasks.append(asyncio.create_task(self.dialer.run(), name="connect"))
        self.mining = MiningLoop(
            self.miner,
            self.chain,
            self.sync,
            self.metrics,
            self.config.mine,
            stopping=lambda: self._stopping,
            storage_failing=lambda: self.storage_failure is not None,
            storage_failed=self.storage_failed,
        )
        self.mining.start(self.loop)
        if self.auditor is not None:
            self._audit_loop = AuditLoop(
                self.auditor, self.metrics, self.sync.submit_tx, stopping=lambda: self._stopping
            )
            self._audit_loop.start(self.loop)
        self.ready, self.phase = True, "running"
        log.info(
            "API on %s, peers on %s, mining %s to %s",
            self.api_url,
            self.config.listen or "(no listener)",
            "on" if self.mining_enabled else "off",
            format_address(self.miner_address),
        )

    @web.middleware
    async def _while_starting(self, request: web.Request, handler) -> web.StreamResponse:
        if not self.ready:
            return web.json_response(
                {"error": f"starting: {self.phase}", "starting": True}, status=503
            )
        return await handler(request)

    async def _serve(self, app: web.Application, sock) -> None:
        # keepalive_timeout also applies from the connection's start: a socket that never sends a
        # request, or an idle keep-alive one, is closed after HTTP_IDLE_S. A WebSocket peer's
        # connection is a request in progress; the peer layer times it out (hello, then idle).
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=HTTP_IDLE_S
        )
        await runner.setup()
        await CappedSite(
            runner,
            sock,
            MAX_CONNECTIONS_PER_LISTENER,
            on_refused=lambda: self.metrics.refused.labels("connections").inc(),
        ).start()
        self._runners.append(runner)

    # --- stop ------------------------------------------------------------------------------------

    def request_stop(self, why: str = "stop requested") -> None:
        if not self.stop_event.is_set():
            log.info("stopping: %s", why)
            self.stop_event.set()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self.request_stop, f"signal {sig.name}")
        await self.start()
        await self.stop_event.wait()
        await self.stop()

    async def stop(self) -> None:
        self._stopping = True
        if self.mining is not None:
            self.mining.enabled = False
        for t in self._tasks:
            t.cancel()
        for p in list(self.peers.values()):
            p.close("node stopping")
        if self._peer_tasks:
            await asyncio.wait(list(self._peer_tasks), timeout=5)
        if self.mining is not None:
            await asyncio.to_thread(self.mining.join, 30)
        if self._audit_loop is not None:
            await asyncio.to_thread(self._audit_loop.join, 30)
        for runner in self._runners:
            await runner.cleanup()
        await self.session.close()
        await asyncio.to_thread(self.sync.close)
        self.store.close()
        lifecycle.remove_runtime(self.datadir)
        if self.prepared is not None:
            self.prepared.close()
        log.info("stopped cleanly at height %d", self.chain.tip.height)

    # --- peers -----------------------------------------------------------------------------------

    def live_peers(self) -> list[Peer]:
        return [p for p in self.peers.values() if not p.closed]

    def our_hello(self) -> Hello:
        tip = self.chain.tip
        return Hello(
            version=PROTOCOL_VERSION,
            network=self.params.network,
            chain_id=self.chain.chain_id,
            genesis=self.chain.genesis.block.hash,
            height=tip.height,
            chain_work=int_to_wire(tip.chain_work),
            listen=self.listen_addr,
            nonce=self.nonce,
            agent=AGENT,
            pruned=self.config.prune or 0,
        )

    def _new_peer(self, ws, remote: str, inbound: bool) -> Peer:
        return Peer(ws, remote, inbound, self.config.limits, self.params.max_message_bytes)

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        peername = request.transport.get_extra_info("peername") if request.transport else None
        remote = f"{peername[0]}:{peername[1]}" if peername else f"{request.remote}:0"
        host = remote.rpartition(":")[0]
        ban = self.bans.banned(host)
        if ban or self._stopping:
            return web.Response(status=403, text=f"refused: {ban or 'stopping'}")
        limits = self.config.limits
        if len(self._inbound) >= limits.max_inbound:
            self.metrics.refused.labels("inbound").inc()
            return web.Response(
                status=503, text=f"refused: {limits.max_inbound} inbound peers already"
            )
        if sum(1 for h in self._inbound.values() if h == host) >= limits.max_inbound_per_host:
            self.metrics.refused.labels("inbound-per-host").inc()
            return web.Response(
                status=503,
                text=f"refused: {limits.max_inbound_per_host} inbound peers from {host} already",
            )
        ws = web.WebSocketResponse(max_msg_size=self.params.max_message_bytes + 4096, autoping=True)
        await ws.prepare(request)
        peer = self._new_peer(ws, remote, inbound=True)
        peer.transport = request.transport
        self._inbound[peer.id] = host
        task = asyncio.current_task()
        if task is not None:
            self._peer_tasks.add(task)
        try:
            await peer.run(self, self.our_hello())
        finally:
            self._inbound.pop(peer.id, None)
            if task is not None:
                self._peer_tasks.discard(task)
        return ws

    async def _run_outbound(self, ws: aiohttp.ClientWebSocketResponse, addr: str) -> None:
        """Run a connection the dialer opened to `addr` until it ends."""
        peer = self._new_peer(ws, addr, inbound=False)
        peer.dial_addr = addr
        await peer.run(self, self.our_hello())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._peer_tasks.add(task)
        task.add_done_callback(self._peer_tasks.discard)

    def _peer_addrs(self) -> set[str]:
        out = set()
        for p in self.peers.values():
            out.add(p.listen)
            out.add(p.dial_addr)
        return out

    # --- the peer handler (p2p.peer.Handler) -----------------------------------------------------

    async def on_hello(self, peer: Peer, hello: Hello) -> str | None:
        if hello.version != PROTOCOL_VERSION:
            return f"protocol version {hello.version}, we speak {PROTOCOL_VERSION}"
        if hello.chain_id != self.chain.chain_id or hello.genesis != self.chain.genesis.block.hash:
            return f"another network ({hello.network}, genesis {hello.genesis.hex()[:16]})"
        if hello.nonce == self.nonce:
            addr = peer.dial_addr
            if addr:
                self.addresses.forget(addr)
            return "connected to ourselves"
        banned = self.bans.banned(peer.ban_key)
        if banned:
            return f"banned: {banned}"
        if self._stopping:
            return "node stopping"
        for other in self.live_peers():
            if other.hello is not None and other.hello.nonce == hello.nonce:
                # Both sides dialled each other: keep the connection dialled by the lower nonce.
                def dialer(p: Peer) -> bytes:
                    return p.hello.nonce if p.inbound else self.nonce  # type: ignore[union-attr]

                if dialer(peer) < dialer(other):
                    other.close("duplicate connection")
                    break
                return "duplicate connection"
        return None

    async def on_ready(self, peer: Peer) -> None:
        self.peers[peer.id] = peer
        self.metrics.peers.set(len(self.live_peers()))
        if peer.listen:
            self.addresses.add(peer.listen)
        peer.send(GetAddr())
        await self.sync.peer_ready(peer)

    async def on_message(self, peer: Peer, msg: Message) -> None:
        self.metrics.peer_messages.labels(msg.NAME).inc()
        if isinstance(msg, Ping):
            peer.send(Pong(msg.nonce))
        elif isinstance(msg, Pong):
            if peer.ping_sent and peer.ping_sent[0] == msg.nonce:
                peer.ping_ms = (time.monotonic() - peer.ping_sent[1]) * 1000
                peer.ping_sent = None
        elif isinstance(msg, GetAddr):
            addrs = [p.listen for p in self.live_peers() if p.listen and p is not peer]
            peer.send(Addr(tuple(addrs[:1000])))
        elif isinstance(msg, Addr):
            for a in msg.addrs:
                self.addresses.learn(a)
        elif self.storage_failure is not None and isinstance(msg, _WRITING_MESSAGES):
            return  # nothing is accepted while the store cannot write (the peer is not at fault)
        elif isinstance(msg, (GetHeaders, GetData)):
            await self._serve_request(peer, msg)
        elif isinstance(msg, ShareMsg) and self.shares is not None:
            await self.shares.on_message(peer, msg)
        else:
            try:
                await self.sync.handle(peer, msg)
            except StoreError as exc:  # our disk's fault, not the peer's: keep the connection
                self.storage_failed(exc)

    async def _serve_request(self, peer: Peer, msg: Message) -> None:
        """Answer getheaders/getdata within the peer's serving budget: Sync charges what each reply
        cost (time reading and encoding it, not waiting for the worker or the network) to the peer
        and to all peers together (p2p.sync.TOTAL_SERVE_SHARE); a peer in debt, or any peer while
        the total is, waits before its next request is read (TCP pushes back), so a flood gets a
        bounded share of the node and is never banned for it."""
        wait = self.sync.serve_wait(peer)
        if wait > 0:
            self.metrics.throttled.labels(msg.NAME).inc()
            await asyncio.sleep(min(30.0, wait))
        await self.sync.handle(peer, msg)

    async def on_close(self, peer: Peer) -> None:
        self.peers.pop(peer.id, None)
        self.sync.peer_gone(peer)
        if self.shares is not None:
            self.shares.peer_gone(peer)
        self.metrics.peers.set(len(self.live_peers()))
        if peer.ban_reason:
            self.metrics.disconnects.labels("ban").inc()
            key = peer.ban_key
            if key is not None:
                self.bans.ban(key, peer.limits.ban_seconds, peer.ban_reason)
        elif peer.score > 0:
            self.metrics.disconnects.labels("misbehaviour").inc()
        if peer.hello is not None:
            await self.sync.schedule()

    # --- periodic work ---------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.storage_failure is not None:
                    await self._probe_storage()
                    continue
                await self.sync.tick()
                units = self.miner.stats.units
                if units > self._units_reported:
                    self.metrics.units_mined.inc(units - self._units_reported)
                    self._units_reported = units
                self.metrics.mempool_txs.set(len(self.mempool))
                self.metrics.mempool_bytes.set(self.mempool.total_bytes)
                if time.monotonic() - last_ping > PING_EVERY_S:
                    last_ping = time.monotonic()
                    for p in self.live_peers():
                        nonce = secrets.randbits(63)
                        p.ping_sent = (nonce, last_ping)
                        p.send(Ping(nonce))
            except StoreError as exc:
                self.storage_failed(exc)
            except Exception:  # noqa: BLE001
                log.exception("periodic work failed")

    async def _index_result(self, result: BlockResult) -> None:
        for block in result.connected:
            if self.auditor is not None:
                mine = sum(
                    1 for tx in block.txs if tx.is_fraud_proof and tx.sender == self.auditor.address
                )
                if mine:
                    self.metrics.audit_proofs_included.inc(mine)

    # --- mining (p2p/mining.py) -----------------------------------------------------------------

    @property
    def mining_enabled(self) -> bool:
        return self.mining.enabled if self.mining is not None else self.config.mine

    @property
    def mining_error(self) -> str | None:
        return self.mining.error if self.mining is not None else None

    @property
    def mining_state(self) -> str:
        """off, mining, waiting-for-sync (heavier blocks are arriving) or failing (see
        mining_error)."""
        return self.mining.state if self.mining is not None else "off"

    # --- storage failures ------------------------------------------------------------------------

    def storage_failed(self, exc: BaseException) -> None:
        """Stop accepting blocks and mining after a write error or damaged data; said once."""
        if self.storage_failure is not None:
            return
        kind = "write-failed" if isinstance(exc, StoreWriteFailed) else "corrupt"
        self.storage_failure = (kind, str(exc))
        self.metrics.storage_ok.set(0)
        self.metrics.storage_failures.labels(kind).inc()
        if kind == "corrupt":
            log.error("STORAGE: %s; block acceptance and mining stopped", exc)
        else:
            log.error(
                "STORAGE: %s; block acceptance and mining stopped, the chain stays at "
                "height %d (what is on disk); "
                "the node stops cleanly once the disk takes writes again, then restart it",
                exc,
                self.chain.tip.height,
            )

    async def _probe_storage(self) -> None:
        """While writes fail: once a test write of STORAGE_PROBE_BYTES succeeds, stop cleanly (a
        restart reopens LevelDB, which refuses writes after its first failure)."""
        if (
            self.storage_failure is None
            or self.storage_failure[0] != "write-failed"
            or time.monotonic() < self._next_storage_probe
        ):
            return
        self._next_storage_probe = time.monotonic() + STORAGE_PROBE_EVERY_S
        if await asyncio.to_thread(disk_takes, self.datadir / ".space-probe", STORAGE_PROBE_BYTES):
            self.request_stop("storage: the disk takes writes again; restart the node to carry on")

    # --- admin -----------------------------------------------------------------------------------

    def set_mining(self, enabled: bool) -> None:
        assert self.mining is not None  # the API answers only once the node has started
        self.mining.set_enabled(enabled)

    def add_peer(self, addr: str) -> None:
        if parse_hostport(addr) is None:
            raise ValueError(f"{addr!r} is not HOST:PORT")
        self.addresses.add_persistent(addr)
