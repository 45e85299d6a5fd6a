"""A small functional-test framework in the spirit of Bitcoin Core's test_framework.

- NodeProcess: a real `pouw node` process (python -m p2p.cli node) with its own data directory,
  on 127.0.0.1 with free ports, driven through its HTTP API; stopped (SIGTERM, then SIGKILL)
  at test end.
- TestPeer: a WebSocket client speaking the wire protocol, so a test sends exactly the frames it
  wants (raw bytes included) and reads what the node answers.
- ChainFollower: a ChainState in the test process on the node's network, fed with the node's own
  blocks fetched over the wire, so a test can build blocks (honest or forged) on the node's chain.
- send_and_expect_close / send_block_and_expect / reconnect_and_expect: one step of an attack
  from a fresh peer, asserting on the spot how the node ends the connection.
- HeightWatch: polls a node's height in a background thread during an attack (a height that
  ever drops shows a tip that was disconnected).
- wait_until: a bounded poll.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from chain.block import Block
from chain.mempool import Mempool
from chain.storage import ChainStore
from consensus.chainstate import ChainState, Outcome
from consensus.params import load_params
from p2p.protocol import (
    AGENT,
    PROTOCOL_VERSION,
    BlockMsg,
    GetData,
    Hello,
    Message,
    decode,
    encode,
    int_to_wire,
)

REPO = Path(__file__).resolve().parents[2]
FAST_NETWORK = Path(__file__).with_name("fast.toml")


def write_network(path: Path, allocations: list[tuple[str, int]] = (), **overrides: int) -> Path:
    """A copy of fast.toml with top-level integer parameters changed, and genesis allocations
    (checksummed address, amount) added.

    The genesis time defaults to just now: the first retarget measures block 1 against the
    genesis time, so a genesis far in the past makes block 2 onwards as easy as allowed.
    """
    overrides.setdefault("genesis_time_ms", int(time.time() * 1000) - 2000)
    lines = FAST_NETWORK.read_text().splitlines()
    out = []
    for line in lines:
        key = line.split("=")[0].strip()
        if key in overrides:
            line = f"{key} = {overrides.pop(key)}"
        out.append(line)
    head = [f"{k} = {v}" for k, v in overrides.items()]
    tail = [
        line
        for address, amount in allocations
        for line in ("", "[[allocations]]", f'address = "{address}"', f"amount = {amount}")
    ]
    path.write_text("\n".join(head + out + tail) + "\n")
    return path


def _port_block() -> range:
    """The ports this test process hands out: below the kernel's ephemeral range (where the
    source ports of every outgoing connection come from, so a port picked there can be taken by
    a client socket before the node binds it), a separate block per xdist worker."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    low = max(low, 12000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    size = 1000
    start = 10000 + (index % ((low - 10000) // size)) * size
    return range(start, start + size)


_PORTS = _port_block()
_next_port = [secrets.randbelow(len(_PORTS))]


def free_port() -> int:
    """A loopback port nothing listens on now, outside the ephemeral range (see _port_block)."""
    for _ in range(len(_PORTS)):
        port = _PORTS[_next_port[0] % len(_PORTS)]
        _next_port[0] += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS.start}..{_PORTS.stop - 1}")


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class NodeProcess:
    def __init__(
        self, datadir: Path, network: Path | str = FAST_NETWORK, name: str = "node"
    ) -> None:
        self.name = name
        self.datadir = datadir
        self.network = str(network)
        self.p2p_port = free_port()
        self.api_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = datadir.parent / f"{name}.log"

    @property
    def p2p_addr(self) -> str:
        return f"127.0.0.1:{self.p2p_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(
        self,
        peers: list[str] = (),
        mine: bool = False,
        extra: list[str] = (),
        prefix: list[str] = (),
    ) -> NodeProcess:
        """`prefix`: a command the node runs under (prlimit ...)."""
        cmd = [
            *prefix,
            sys.executable,
            "-m",
            "p2p.cli",
            "node",
            "--datadir",
            str(self.datadir),
            "--listen",
            self.p2p_addr,
            "--api",
            f"127.0.0.1:{self.api_port}",
            "--network",
            self.network,
            "--device",
            "cpu",
            "--threads",
            "1",
        ]
        for p in peers:
            cmd += ["--peer", p]
        if mine:
            cmd.append("--mine")
        cmd += list(extra)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> NodeProcess:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                self.status()
                return True
            except (OSError, ApiError):
                return False

        wait_until(ready, timeout, f"{self.name}'s API")
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- the API -----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return (
                    json.loads(raw)
                    if resp.headers.get_content_type() == "application/json"
                    else raw
                )
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                payload = json.loads(payload)
            except ValueError:
                pass
            raise ApiError(exc.code, payload) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def status(self) -> dict:
        return self.get("/api/status")

    @property
    def token(self) -> str:
        return (self.datadir / "api.cookie").read_text().strip()

    def admin(self, path: str, body: Any = None) -> Any:
        return self.request(
            "POST", f"/api/admin/{path}", body if body is not None else {}, token=self.token
        )

    def height(self) -> int:
        return self.status()["height"]

    def pause_mining(self, settle_s: float = 0.5, timeout: float = 20.0) -> int:
        """Switch mining off and wait until the height stays put for `settle_s` (a block found
        just then still lands); return that height."""
        self.admin("mining", {"enabled": False})
        last = {"h": -1}

        def settled() -> bool:
            h = self.height()
            done = h == last["h"]
            last["h"] = h
            return done

        wait_until(
            settled,
            timeout,
            f"{self.name}'s height to settle after mining was switched off",
            interval=settle_s,
        )
        return last["h"]

    def block_hashes(self, upto: int, start: int = 0) -> list[str]:
        """Best-chain block hashes at heights start .. upto."""
        out = []
        while start <= upto:
            page = self.get(f"/api/blocks?start={start}&limit=100")["blocks"]
            out += [b["hash"] for b in page if b["height"] <= upto]
            start += 100
        return out

    # --- stopping ----------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"{self.name} did not stop within {timeout} s of SIGTERM:\n{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def shut_down(self, timeout: float = 20.0) -> None:
        """Stop cleanly if it will, else kill: for teardown, where a failed stop must not hide
        the test's own failure."""
        try:
            self.stop(timeout=timeout)
        except AssertionError:
            pass
        self.kill()


def hello_for(
    status: dict, *, listen: str, nonce: bytes, agent: str, height: int = 0, chain_work: int = 1
) -> Hello:
    """A hello for the node whose /api/status is `status`, claiming `height` and `chain_work`."""
    return Hello(
        version=PROTOCOL_VERSION,
        network=status["network"],
        chain_id=bytes.fromhex(status["chain_id"]),
        genesis=bytes.fromhex(status["genesis"]),
        height=height,
        chain_work=int_to_wire(chain_work),
        listen=listen,
        nonce=nonce,
        agent=agent,
    )


class TestPeer:
    """A hand-driven peer: connect, handshake, send frames, read messages, see how it ends."""

    __test__ = False  # not a pytest class

    def __init__(self, max_message_bytes: int = 2 << 20) -> None:
        self.max_message_bytes = max_message_bytes
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.nonce = secrets.token_bytes(8)
        self.listen = f"127.0.0.1:{free_port()}"

    async def connect(self, addr: str) -> TestPeer:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(f"http://{addr}/p2p", max_msg_size=64 << 20)
        return self

    async def handshake(self, status: dict, height: int = 0, chain_work: int = 1) -> Hello:
        """Send our hello (built from the node's /api/status, claiming `height` and `chain_work`)
        and return the node's."""
        hello = hello_for(
            status,
            listen=self.listen,
            nonce=self.nonce,
            agent=AGENT + "-testpeer",
            height=height,
            chain_work=chain_work,
        )
        await self.send(hello)
        reply = await self.recv_type(Hello)
        return reply

    async def send(self, msg: Message) -> None:
        await self.send_raw(encode(msg))

    async def send_raw(self, frame: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(frame)

    async def recv(self, timeout: float = 10.0) -> Message | None:
        """The next message, or None when the connection closed."""
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return decode(msg.data, self.max_message_bytes)
        self.close_message = msg
        return None

    async def recv_type(self, cls: type, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await self.recv(max(0.1, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(
                    f"connection closed while waiting for {cls.__name__}: {self.close_reason()}"
                )
            if isinstance(msg, cls):
                return msg
        raise AssertionError(f"no {cls.__name__} within {timeout} s")

    def close_reason(self) -> str:
        m = getattr(self, "close_message", None)
        if m is None:
            return ""
        return (
            str(m.extra or "")
            if m.type == aiohttp.WSMsgType.CLOSE
            else f"{m.type.name} {m.extra or ''}"
        )

    async def wait_closed(self, timeout: float = 10.0) -> str:
        """Read until the node closes the connection; return its close reason."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await self.recv(max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if msg is None:
                return self.close_reason() or "closed"
        raise AssertionError(f"the node did not close the connection within {timeout} s")

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


async def send_and_expect_close(
    node: NodeProcess,
    status: dict,
    frames: list[Message | bytes],
    *expected: str,
    handshake: bool = True,
    peer: TestPeer | None = None,
) -> str:
    """From a fresh peer (or `peer`, not yet connected; handshaken unless told not to), send
    `frames` (messages, or raw bytes as they are) and assert the node closes the connection with
    a reason containing each of `expected`; returns the reason, so a failing step names itself."""
    peer = await (peer or TestPeer()).connect(node.p2p_addr)
    try:
        if handshake:
            await peer.handshake(status)
        try:
            for frame in frames:
                await (peer.send_raw(frame) if isinstance(frame, bytes) else peer.send(frame))
        except ConnectionError:
            pass  # closed by the node mid-send (a frame over its limit): the reason is read below
        reason = await peer.wait_closed()
    finally:
        await peer.close()
    missing = [text for text in expected if text not in reason]
    assert not missing, f"close reason {reason!r} lacks {missing}"
    return reason


async def send_block_and_expect(
    node: NodeProcess, status: dict, block: Block, *expected: str, peer: TestPeer | None = None
) -> str:
    """Send `block` from a fresh peer; assert how the node ends the connection (see above)."""
    return await send_and_expect_close(
        node, status, [BlockMsg(block.to_bytes())], *expected, peer=peer
    )


async def reconnect_and_expect(
    node: NodeProcess, status: dict, old: TestPeer, *expected: str
) -> str:
    """Connect again as `old` did (same listen address and nonce) and assert how the node ends it
    (a ban holds: the reason says "banned")."""
    again = TestPeer()
    again.nonce, again.listen = old.nonce, old.listen
    await again.connect(node.p2p_addr)
    try:
        await again.handshake(status)
        reason = await again.wait_closed(timeout=3)
    except AssertionError as exc:  # refused before or during the handshake
        reason = str(exc)
    finally:
        await again.close()
    missing = [text for text in expected if text not in reason]
    assert not missing, f"reconnection ended with {reason!r}, which lacks {missing}"
    return reason


async def fetch_blocks(
    node: NodeProcess, hashes: list[bytes], status: dict | None = None
) -> list[Block]:
    """The blocks with these hashes, fetched from the node over the wire (getdata), in order."""
    peer = await TestPeer().connect(node.p2p_addr)
    try:
        await peer.handshake(status or node.status())
        out: list[Block] = []
        for i in range(0, len(hashes), 64):  # a getdata asks for at most 64 blocks
            chunk = hashes[i : i + 64]
            await peer.send(GetData(blocks=tuple(chunk)))
            got: dict[bytes, Block] = {}
            while len(got) < len(chunk):
                block = Block.from_bytes((await peer.recv_type(BlockMsg)).block)
                got[block.hash] = block
            out += [got[h] for h in chunk]
        return out
    finally:
        await peer.close()


class ChainFollower:
    """A ChainState with its own store in the test process, on the node's network.

    `sync(node)` fetches the node's best-chain blocks it lacks (hashes from the API, bodies over the
    wire) and connects them with full validation; then a test can mine or forge blocks on the
    same chain with consensus.miner (make_template, Miner) and send them to the node.
    """

    def __init__(self, path: Path, network: Path | str, mempool: Mempool | None = None) -> None:
        self.params = load_params(str(network))
        self.store = ChainStore(str(path))
        self.mempool = mempool
        self.chain = ChainState(self.store, self.params, mempool=mempool)

    async def sync(self, node: NodeProcess, upto: int | None = None) -> list[Block]:
        status = node.status()
        upto = status["height"] if upto is None else upto
        have = self.chain.tip.height
        hashes = [bytes.fromhex(h) for h in node.block_hashes(upto, start=have + 1)]
        blocks = await fetch_blocks(node, hashes, status)
        for block in blocks:
            result = self.chain.process_block(block)
            assert result.outcome == Outcome.NEW_TIP, (block.header.height, result)
        return blocks

    def close(self) -> None:
        self.store.close()


class HeightWatch:
    """Poll a node's height every `interval` seconds in a thread, between `with` and its end.

    `samples` holds (monotonic time, height); `drops()` lists the samples where the height went
    down (a disconnected tip). Failed polls (a node restarting) are counted, not recorded."""

    def __init__(self, node: NodeProcess, interval: float = 0.05) -> None:
        self.node = node
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.failed_polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{node.name}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(
                    (
                        time.monotonic(),
                        self.node.request("GET", "/api/status", timeout=2.0)["height"],
                    )
                )
            except (OSError, ApiError, ValueError):
                self.failed_polls += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> HeightWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def drops(self) -> list[tuple[int, int]]:
        """(height before, height after) wherever a sample was lower than the one before it."""
        return [(a[1], b[1]) for a, b in zip(self.samples, self.samples[1:]) if b[1] < a[1]]


def agree_on_one_tip(nodes: list, breaker, tries: int = 5, wait_s: float = 10.0) -> list[dict]:
    """The nodes' statuses once they share one tip, their miners being switched off. Blocks found
    at one height just before the switch are a tie that no node leaves (the first seen stays): then
    `breaker` mines one more block, which all of them follow."""

    def same() -> list[dict] | None:
        statuses = [n.status() for n in nodes]
        return statuses if len({s["best_hash"] for s in statuses}) == 1 else None

    for _ in range(tries):
        try:
            return wait_until(same, wait_s, "one tip on every node")
        except AssertionError:
            height = breaker.height()
            breaker.admin("mining", {"enabled": True})
            wait_until(
                lambda height=height: breaker.height() > height,
                30,
                f"{breaker.name} to break the tie",
            )
            breaker.pause_mining()
    raise AssertionError("the nodes never agreed on one tip")
