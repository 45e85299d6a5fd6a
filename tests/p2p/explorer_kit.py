"""A small devnet for the explorer's browser tests and screenshots: real `pouw node` processes.

One mining node and (optionally) one non-mining peer on loopback, on the fast render network
(tests/p2p/fast.toml) with a funded key, which pays for a render task and a training task so
that the explorer has images, a learning curve, transactions and a peer to show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from framework import NodeProcess, wait_until, write_network

from chain.address import address_of, format_address
from chain.keys import PrivateKey
from chain.tx import make_submit_task
from useful_work.hashing import tagged_hash
from useful_work.specs import RenderSpec, TrainSpec, encode_spec

FUNDED_KEY = PrivateKey.from_bytes(tagged_hash("explorer-devnet-key", b"funded"))
FUNDED = format_address(address_of(FUNDED_KEY.public_key()))
FEE = 10_000
BOUNTY_PER_UNIT = 1_000_000


@dataclass
class ExplorerDevnet:
    miner: NodeProcess
    peer: NodeProcess | None
    render_task: str
    train_task: str
    render_spec: RenderSpec
    train_spec: TrainSpec

    @property
    def nodes(self) -> list[NodeProcess]:
        return [n for n in (self.miner, self.peer) if n is not None]

    def wait_tasks_done(self, timeout: float = 120.0) -> None:
        def done() -> bool:
            tasks = {
                t["task_id"]: t for t in self.miner.get("/api/tasks")["tasks"]
            }  # absent until mined
            return all(
                tasks.get(t, {}).get("status") == "done"
                for t in (self.render_task, self.train_task)
            )

        wait_until(done, timeout, "the render and training tasks to complete", interval=0.5)

    def shut_down(self) -> None:
        for node in self.nodes:
            node.shut_down(timeout=20)


def start_devnet(
    tmp: Path,
    render_spec: RenderSpec,
    train_spec: TrainSpec,
    with_peer: bool = True,
    **network: int,
) -> ExplorerDevnet:
    """Start the nodes, mine a few blocks, then submit the two paid tasks (not waiting for them)."""
    tmp.mkdir(parents=True, exist_ok=True)
    net = write_network(tmp / "explorer-net.toml", allocations=[(FUNDED, 10**12)], **network)
    miner = NodeProcess(tmp / "miner", network=net, name="miner").start(mine=True)
    peer = None
    try:
        if with_peer:
            peer = NodeProcess(tmp / "peer", network=net, name="peer").start(peers=[miner.p2p_addr])
        miner.wait_ready()
        if peer is not None:
            peer.wait_ready()
        wait_until(lambda: miner.height() >= 3, 60, "the first blocks")
        chain_id = bytes.fromhex(miner.status()["chain_id"])
        ids = []
        for nonce, spec in enumerate((render_spec, train_spec)):
            tx = make_submit_task(
                FUNDED_KEY, chain_id, nonce, FEE, encode_spec(spec), BOUNTY_PER_UNIT * spec.units
            )
            ids.append(miner.request("POST", "/api/txs", {"tx": tx.encoded.hex()})["txid"])
    except BaseException:
        for node in (miner, peer):
            if node is not None:
                node.shut_down(timeout=20)
        raise
    return ExplorerDevnet(miner, peer, ids[0], ids[1], render_spec, train_spec)


def wait_synced(devnet: ExplorerDevnet, timeout: float = 60.0) -> None:
    if devnet.peer is None:
        return
    wait_until(
        lambda: (
            devnet.peer.height() >= devnet.miner.height() - 1
            and devnet.miner.status()["peers"] >= 1
        ),
        timeout,
        "the peer to follow the miner",
    )


if __name__ == "__main__":  # a devnet to look at by hand: python tests/p2p/explorer_kit.py DIR
    import sys

    d = start_devnet(
        Path(sys.argv[1]),
        RenderSpec(units=24, images_per_unit=4, image_size=32, max_objects=4),
        TrainSpec(units=120, batch_size=16, steps_per_unit=1, image_size=16, max_objects=2),
    )
    print(f"explorer: {d.miner.api_url}/  (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        d.shut_down()
