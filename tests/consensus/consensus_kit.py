"""Consensus test kit: small real tasks, a controllable clock, fresh stores."""

from __future__ import annotations

import itertools
from dataclasses import replace

from chain.address import address_of, format_address
from chain.keys import PrivateKey
from chain.mempool import Mempool
from chain.storage import ChainStore
from consensus.chainstate import ChainState
from consensus.miner import Miner
from consensus.params import Allocation, ConsensusParams
from useful_work.specs import RenderSpec

FUNDED_KEY = PrivateKey.from_bytes(bytes(range(32)))
FUNDED = address_of(FUNDED_KEY.public_key())
GENESIS_MS = 1_800_000_000_000


def small_params(**changes) -> ConsensusParams:
    """A render default task with tiny units (about a millisecond each) and easy targets."""
    base = ConsensusParams(
        network="unittest",
        block_interval_ms=1_000,
        retarget_half_life_ms=30_000,
        initial_units_per_block=12,
        spot_checks=3,
        reward_maturity=3,
        genesis_time_ms=GENESIS_MS,
        allocations=(Allocation(format_address(FUNDED), 1_000_000_000),),
        default_task=RenderSpec(units=0, images_per_unit=1, image_size=16, max_objects=2),
    )
    return replace(base, **changes)


class StepClock:
    """Time advances by one block interval each time a block is mined (so targets stay put)."""

    def __init__(self, start: int, step: int) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        return self.now

    def tick(self) -> None:
        self.now += self.step


class Node:
    """A ChainState with its own store, mempool, miner key and clock: one in-process node."""

    _ids = itertools.count()

    def __init__(
        self,
        path,
        params: ConsensusParams,
        clock: StepClock | None = None,
        fabricate: float = 0.0,
        key: PrivateKey | None = None,
    ) -> None:
        self.params = params
        self.clock = clock or StepClock(
            params.genesis_time_ms + params.block_interval_ms, params.block_interval_ms
        )
        self.store = ChainStore(str(path))
        self.mempool = Mempool(1 << 20)
        self.chain = ChainState(self.store, params, mempool=self.mempool, clock=self.clock)
        self.key = key or PrivateKey.from_bytes(bytes([next(self._ids) + 1]) * 32)
        self.address = address_of(self.key.public_key())
        self.miner = Miner(
            self.chain, self.key, mempool=self.mempool, clock=self.clock, fabricate=fabricate
        )

    def mine(self, n: int = 1):
        blocks = []
        for _ in range(n):
            self.clock.tick()
            block = self.miner.mine_block()
            assert block is not None
            result = self.chain.process_block(block)
            assert result.outcome.value == "new-tip", result
            blocks.append(block)
        return blocks

    def close(self) -> None:
        self.store.close()
