"""Account proofs against a real node: a wallet checks a balance against headers it verified
itself, a tampered proof fails, and a node (here a proxy in front of one) lying about a balance
is caught by `pouw wallet balance --verify`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from framework import REPO, NodeProcess, wait_until, write_network

from chain.address import address_of, format_address, parse_address
from chain.keys import PrivateKey
from consensus.params import load_params
from p2p.wallet.light_client import VerifyFailed, verify_account, verify_header_chain
from useful_work.hashing import tagged_hash

pytestmark = pytest.mark.integration

RICH = PrivateKey.from_bytes(tagged_hash("proof-test-key"))
RICH_ADDRESS = format_address(address_of(RICH.public_key()))


def all_headers(node: NodeProcess) -> list[bytes]:
    encoded: list[bytes] = []
    while True:
        page = node.get(f"/api/headers?start={len(encoded)}")["headers"]
        if not page:
            return encoded
        encoded += [bytes.fromhex(h) for h in page]


class LyingProxy:
    """An HTTP server that forwards to a node and rewrites account answers with `lie`."""

    def __init__(self, upstream: str, lie) -> None:
        self.upstream, self.lie = upstream, lie
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def forward(request: web.Request) -> web.Response:
            async with ClientSession() as s, s.get(self.upstream + str(request.rel_url)) as r:
                body = await r.read()
                if r.status == 200 and request.path.startswith("/api/accounts/"):
                    body = json.dumps(self.lie(json.loads(body))).encode()
                return web.Response(body=body, status=r.status, content_type="application/json")

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/{tail:.*}", forward)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def wallet_balance(node_url: str, network: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "p2p.cli",
        "wallet",
        "balance",
        RICH_ADDRESS,
        "--verify",
        "--network",
        str(network),
        "--node",
        node_url,
        "--json",
        "--wallet-dir",
        str(tmp_path / "wallets"),
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_balances_verify_against_self_checked_headers_and_lies_are_caught(tmp_path):
    network = write_network(tmp_path / "net.toml", [(RICH_ADDRESS, 123_456_789)])
    params = load_params(network)
    node = NodeProcess(tmp_path / "a", network, "a").start(mine=True).wait_ready()
    try:
        wait_until(lambda: node.height() >= 4, 120, "4 blocks")
        node.pause_mining()
        answer = node.get(f"/api/accounts/{RICH_ADDRESS}?proof=1")
        headers = verify_header_chain(params, all_headers(node), int(time.time() * 1000) + 10_000)
        checked = verify_account(headers, parse_address(RICH_ADDRESS), answer)
        assert (checked.balance, checked.nonce) == (123_456_789, 0) and checked.height == answer[
            "proof"
        ]["height"]

        # an address the ledger has never seen: its absence is proven, and a balance for it is a lie
        nobody = format_address(tagged_hash("nobody")[:20])
        empty = node.get(f"/api/accounts/{nobody}?proof=1")
        assert empty["proof"]["account"] is None
        assert verify_account(headers, parse_address(nobody), empty).balance == 0
        with pytest.raises(VerifyFailed, match="reported balance 5"):
            verify_account(headers, parse_address(nobody), {**empty, "balance": 5})

        # tampered proofs fail
        proof = answer["proof"]
        flipped = [("0" if s[0] != "0" else "1") + s[1:] for s in proof["siblings"][:1]] + proof[
            "siblings"
        ][1:]
        for bad in (
            {**proof, "siblings": flipped},
            {**proof, "siblings": proof["siblings"][1:]},
            {**proof, "account": empty["proof"]["account"]},
        ):
            with pytest.raises(VerifyFailed, match="does not match the state root"):
                verify_account(headers, parse_address(RICH_ADDRESS), {**answer, "proof": bad})
        with pytest.raises(VerifyFailed, match="not on the header chain"):
            verify_account(
                headers, parse_address(RICH_ADDRESS), {**answer, "proof": {**proof, "height": 1}}
            )
        forged = bytearray(all_headers(node)[2])
        forged[-5] ^= 1  # a byte of the signature
        with pytest.raises(VerifyFailed, match="header 2"):
            verify_header_chain(
                params, all_headers(node)[:2] + [bytes(forged)], int(time.time() * 1000)
            )

        # the wallet CLI: honest node verified; a node inflating the balance is caught
        honest = wallet_balance(node.api_url, network, tmp_path)
        assert honest.returncode == 0, honest.stdout + honest.stderr
        data = json.loads(honest.stdout)
        assert (
            data["balance"]["units"] == 123_456_789 and data["verified"]["height"] == checked.height
        )

        def inflate(body: dict) -> dict:
            return {**body, "balance": body["balance"] * 10, "spendable": body["spendable"] * 10}

        proxy = LyingProxy(node.api_url, inflate)
        try:
            lied = wallet_balance(proxy.url, network, tmp_path)
        finally:
            proxy.close()
        assert lied.returncode != 0
        assert (
            "verification failed" in lied.stdout + lied.stderr
            and "1234567890" in lied.stdout + lied.stderr
        )
    finally:
        node.stop()
