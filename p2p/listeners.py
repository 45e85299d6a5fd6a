"""The node's listeners (peer port and API) on sockets bound early (p2p/lifecycle.py), with a cap
on open connections, and the open-file headroom they need."""

from __future__ import annotations

import asyncio
import resource

from aiohttp import web

from p2p.peer import HANDSHAKE_TIMEOUT_S

# Connections at once on each listener (handshakes, peers, API clients); past it new ones are closed
# at accept. An HTTP connection that sends no complete request within HTTP_IDLE_S is closed.
MAX_CONNECTIONS_PER_LISTENER = 256
HTTP_IDLE_S = HANDSHAKE_TIMEOUT_S
FD_SPARE = 128  # descriptors beyond the listeners' connections: LevelDB files, outbound peers, logs


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class CappedSite(web.BaseSite):
    """A listener on an already bound socket that closes new connections at accept while `cap`
    are open."""

    def __init__(self, runner: web.AppRunner, sock, cap: int, on_refused=None) -> None:
        super().__init__(runner, shutdown_timeout=1.0)
        self.runner, self.sock, self.cap = runner, sock, cap
        self.on_refused = on_refused

    @property
    def name(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self.runner.server
        assert server is not None

        def factory() -> asyncio.BaseProtocol:
            if len(server.connections) >= self.cap:
                if self.on_refused is not None:
                    self.on_refused()
                return _Refuse()
            return server()

        self._server = await asyncio.get_running_loop().create_server(factory, sock=self.sock)


def ensure_fd_headroom(needed: int) -> tuple[int, int]:
    """Raise the soft open-file limit towards the hard one when it is below `needed`; (soft,
    hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard
