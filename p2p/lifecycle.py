"""A node's life around the chain: startup errors with exit codes, the data directory's PID lock,
the sockets bound before anything slow, the runtime file that `pouw node status` reads, and the
watchdog pipe that stops a node when the process that launched it is gone.

Every startup failure a user can cause is a StartupError: one line, and an exit code of its own
(documented in docs/operators.md). The codes start at 20 so they never clash with the wallet's
(p2p/wallet/errors.py, 2 .. 12).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from p2p.protocol import parse_hostport

PID_FILE = (
    "node.pid"  # holds the PID; locked (flock) while the node runs, so a dead node never holds it
)
RUNTIME_FILE = "node.json"  # the running node's API and peer addresses; removed on a clean stop
COOKIE_FILE = "api.cookie"  # the admin token, written anew at each start (p2p.node)

EXIT_USAGE = 2
EXIT_CONFIG = 20  # a config file (--config, <datadir>/pouw.toml) is unreadable or has a bad key
EXIT_NETWORK = 21  # the network file is refused (the message names the key)
EXIT_LOCKED = 22  # the data directory is in use by another node (PID named)
EXIT_PORT = 23  # a port to listen on is in use or cannot be bound
EXIT_KEY = 24  # the node key in the data directory cannot be read
EXIT_WRONG_CHAIN = 25  # the data directory holds another network's chain
EXIT_DATADIR = 26  # the data directory or its store cannot be created, written or opened
EXIT_PARENT_GONE = 27  # the launcher died and a clean stop did not finish in time

EXIT_CODES: dict[int, str] = {
    EXIT_USAGE: "bad command-line option",
    EXIT_CONFIG: "bad config file",
    EXIT_NETWORK: "bad network file",
    EXIT_LOCKED: "data directory in use",
    EXIT_PORT: "cannot listen on a port",
    EXIT_KEY: "node key unreadable",
    EXIT_WRONG_CHAIN: "data directory holds another network",
    EXIT_DATADIR: "data directory or store unusable",
    EXIT_PARENT_GONE: "launcher gone, forced stop",
}


class StartupError(Exception):
    """A failure the user can fix: one line and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


# --- the PID lock ------------------------------------------------------------------------------


def lock_holder(datadir: Path) -> int | None:
    """The PID of the node running on `datadir`, or None when none holds its lock."""
    path = datadir / PID_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class DataDirLock:
    """An exclusive flock on `<datadir>/node.pid`, held for the life of the process.

    The kernel drops the lock when the process ends however it ends (even SIGKILL), so a stale
    PID file never blocks a restart; the file's content (the PID) only names the holder.
    """

    def __init__(self, datadir: Path) -> None:
        self.path = datadir / PID_FILE
        self.fd: int | None = None

    def acquire(self) -> DataDirLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(
                EXIT_DATADIR,
                f"data directory {self.path.parent}: cannot create {PID_FILE} ({_reason(exc)})",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            who = f"PID {text}" if text.isdigit() else "another process"
            raise StartupError(
                EXIT_LOCKED,
                f"data directory {self.path.parent} is in use by pouw node {who} "
                f"(stop it with `pouw node stop --datadir {self.path.parent}`)",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays, unlocked
            self.fd = None


# --- sockets -----------------------------------------------------------------------------------


def bind_socket(hostport: str, option: str) -> socket.socket:
    """A listening TCP socket on HOST:PORT, bound now, so a busy port fails before anything slow."""
    parsed = parse_hostport(hostport)
    if parsed is None:
        raise StartupError(EXIT_USAGE, f"{option} {hostport!r}: expected HOST:PORT")
    host, port = parsed
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            EXIT_PORT, f"{option} {hostport}: cannot resolve {host!r} ({exc.strerror})"
        ) from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # TIME_WAIT only: a listening port stays taken
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                EXIT_PORT,
                f"{option} {hostport}: port {port} is already in use "
                f"(another node running? pick another with {option})",
            ) from None
        raise StartupError(
            EXIT_PORT, f"{option} {hostport}: cannot listen ({_reason(exc)})"
        ) from None
    sock.setblocking(False)
    return sock


def port_free(host: str, port: int) -> bool:
    try:
        bind_socket(f"{host}:{port}", "port").close()
        return True
    except StartupError:
        return False


@dataclass
class Prepared:
    """What a node takes before it loads anything: the data directory's lock and its listening
    sockets."""

    lock: DataDirLock
    api_socket: socket.socket
    p2p_socket: socket.socket | None = None
    closed: bool = field(default=False)

    def close(self) -> None:
        for s in (self.api_socket, self.p2p_socket):
            if s is not None:
                s.close()
        self.lock.release()
        self.closed = True


def prepare(datadir: Path, api: str, listen: str) -> Prepared:
    """Lock the data directory, then bind the API and peer ports (in that order: a second node on
    the same directory is told about the directory, not about the ports)."""
    lock = DataDirLock(datadir).acquire()
    try:
        api_socket = bind_socket(api, "--api")
        try:
            p2p_socket = bind_socket(listen, "--listen") if listen else None
        except StartupError:
            api_socket.close()
            raise
    except StartupError:
        lock.release()
        raise
    return Prepared(lock, api_socket, p2p_socket)


def bound_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- the runtime file --------------------------------------------------------------------------


def write_runtime(datadir: Path, info: dict) -> None:
    path = datadir / RUNTIME_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(path)


def read_runtime(datadir: Path) -> dict | None:
    try:
        data = json.loads((datadir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_runtime(datadir: Path) -> None:
    try:
        (datadir / RUNTIME_FILE).unlink()
    except FileNotFoundError:
        pass


# --- the watchdog pipe -------------------------------------------------------------------------


def watch_parent(fd: int, on_gone: Callable[[], None]) -> threading.Thread:
    """Call `on_gone` (from a daemon thread) when the pipe `fd` reaches end of file: its writer,
    the launching process, has exited, however it died (its end closes with it)."""

    def wait() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        on_gone()

    thread = threading.Thread(target=wait, name="parent-watch", daemon=True)
    thread.start()
    return thread
