"""Adversarial miners: attacks on the lottery mounted with the real kernels and consensus code.

They exist so that tests and the simulator can show each attack fails (or what it still costs),
not as a feature: an honest node never runs them.

`forge_header` and `forge_unrun_block` make what a peer can make with hashes only: headers
that pass the header rules, and blocks that pass the body rules but whose units were never run.

`PoisonMiner` is the poisoner: one fabricated "jump" leaf that the spot checks miss; audits and
fraud proofs (consensus.fraud) are what catch it.

`RerollMiner` is the free-ticket attack. A lottery whose ticket covers leaves that nobody
re-executes lets a miner fabricate one leaf (a made-up digest: hashes only) and re-roll it until
the ticket wins. Under chained seeds (useful_work.trace) every later unit's seed depends on that
leaf, so each re-roll needs the units after it run again:

- strategy "last": the fabricated leaf is the winner itself. No unit per ticket, but verifiers
  always re-execute the winner, so no such block is ever accepted.
- strategy "chained": the fabricated leaf is followed by one honest unit, the cheapest a ticket
  can be. Each ticket costs one unit, as an honest miner's does, and the block is refused when
  the spot checks challenge the fabricated leaf (probability k / (n - 1) for n units).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from chain.address import address_of
from chain.block import (
    NO_SIGNATURE,
    Block,
    BlockHeader,
    Opening,
    WorkClaim,
    WorkProof,
    header_commitment,
    sign_header,
    tx_root,
)
from chain.keys import PrivateKey
from chain.types import Address, RawPublicKey, TaskId
from consensus.chainstate import ChainState
from consensus.market import task_for_spec
from consensus.miner import HeaderDraft, Miner, Template
from consensus.params import ConsensusParams
from consensus.tickets import ticket, ticket_wins
from consensus.validation import ParentInfo, required_openings
from useful_work.hashing import ZERO_HASH, int_bytes, tagged_hash
from useful_work.trace import TRACE_START, Leaf, next_prefix, state_hash, trace_root, unit_seed

REROLL_STRATEGIES = ("last", "chained")


@dataclass
class RerollStats:
    tickets: int = 0  # tickets tried after the honest prefix
    hashes: int = 0  # fabricated leaves made (hashes only)
    ground_blocks: int = (
        0  # blocks found by grinding (the others were won inside the honest prefix)
    )


class RerollMiner(Miner):
    """Runs `honest_prefix` honest units, then grinds one fabricated leaf per ticket (see the
    module)."""

    def __init__(
        self,
        chain: ChainState,
        key: PrivateKey,
        *,
        strategy: str = "chained",
        honest_prefix: int = 8,
        max_tries: int = 1 << 20,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if strategy not in REROLL_STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(REROLL_STRATEGIES)}, got {strategy!r}"
            )
        super().__init__(chain, key, clock=clock)
        self.strategy = strategy
        self.honest_prefix = honest_prefix
        self.max_tries = max_tries
        self.reroll = RerollStats()

    def _attempt(
        self, template: Template, attempt: int, limit: int, should_stop: Callable[[], bool]
    ) -> Block | None:
        task = task_for_spec(template.task_spec)
        parent, miner = template.parent_hash, self.address
        draft = self.draft(template)
        c = draft.commitment
        leaves: list[Leaf] = []
        inputs: list[bytes] = []
        state, prefix = template.start_state, TRACE_START

        def run(u: int, prefix_u: bytes, state_u: bytes) -> tuple[Leaf, bytes]:
            started = time.perf_counter()
            out, digest = task.run_unit(
                state_u, unit_seed(parent, miner, attempt, u, prefix_u, c), self.device
            )
            self.stats.units += 1
            self.stats.unit_seconds += time.perf_counter() - started
            return Leaf(state_hash(state_u), state_hash(out), digest, c), out

        for u in range(min(self.honest_prefix, limit - 2)):
            leaf, out = run(u, prefix, state)
            leaves.append(leaf)
            inputs.append(state)
            if ticket_wins(ticket(parent, miner, trace_root(leaves)), template.target):
                return self.assemble(template, leaves, inputs, attempt, draft)
            state, prefix = out, next_prefix(prefix, leaf)
        u = len(leaves)
        for roll in range(self.max_tries):
            if should_stop() or self.chain.tip_version != template.tip_version:
                return None
            # A "jump" that goes nowhere: the state is kept, the digest is made up.
            fake = Leaf(
                state_hash(state),
                state_hash(state),
                tagged_hash("reroll", parent, int_bytes(roll)),
                c,
            )
            self.reroll.hashes += 1
            self.reroll.tickets += 1
            if self.strategy == "last":
                trace, opened = [*leaves, fake], [*inputs, state]
            else:
                last, _ = run(u + 1, next_prefix(prefix, fake), state)
                trace, opened = [*leaves, fake, last], [*inputs, state, state]
            if ticket_wins(ticket(parent, miner, trace_root(trace)), template.target):
                self.reroll.ground_blocks += 1
                return self.assemble(template, trace, opened, attempt, draft)
        return None


@dataclass
class PoisonStats:
    attempts: int = 0  # traces started
    challenged: int = 0  # winning traces thrown away because a spot check would hit the jump
    blocks: int = 0  # poisoned blocks returned


class PoisonMiner(Miner):
    """The poisoner: unit `jump_at` of each trace is a fabricated "jump" leaf (the task's state
    replaced by `poison(state)`, a state of the miner's choosing; the default runs the unit with
    another seed, a valid-looking but wrong state), then honest units from the poisoned state.
    A winning trace whose spot checks would challenge the jump is thrown away and a new attempt
    started, so every block it returns passes validation; only a fraud proof catches it
    (consensus.fraud). `last_jump` is (block hash, unit index) of the last block returned."""

    def __init__(
        self,
        chain: ChainState,
        key: PrivateKey,
        *,
        jump_at: int = 1,
        poison: Callable[[bytes, bytes], bytes] | None = None,
        **kw,
    ) -> None:
        super().__init__(chain, key, **kw)
        self.jump_at = jump_at
        self.poison_state = poison
        self.poison = PoisonStats()
        self.last_jump: tuple[bytes, int] | None = None

    def _poisoned(self, task, state: bytes, seed: bytes) -> bytes:
        if self.poison_state is not None:
            return self.poison_state(state, seed)
        out, _ = task.run_unit(state, tagged_hash("poison", seed), self.device)
        return out

    def _attempt(
        self, template: Template, attempt: int, limit: int, should_stop: Callable[[], bool]
    ) -> Block | None:
        task = task_for_spec(template.task_spec)
        parent, miner = template.parent_hash, self.address
        self.poison.attempts += 1
        leaves: list[Leaf] = []
        inputs: list[bytes] = []
        state, prefix = template.start_state, TRACE_START
        draft = self.draft(template)
        while len(leaves) < limit:
            if should_stop() or self.chain.tip_version != template.tip_version:
                return None
            u = len(leaves)
            draft = HeaderDraft(draft.txs, self._time(template), self.payout)
            seed = unit_seed(parent, miner, attempt, u, prefix, draft.commitment)
            if u == self.jump_at:
                out = self._poisoned(task, state, seed)
                digest = tagged_hash("jump", seed)
            else:
                out, digest = task.run_unit(state, seed, self.device)
                self.stats.units += 1
            leaf = Leaf(state_hash(state), state_hash(out), digest, draft.commitment)
            leaves.append(leaf)
            inputs.append(state)
            if ticket_wins(ticket(parent, miner, trace_root(leaves)), template.target):
                if u <= self.jump_at:
                    return (
                        None  # won before (or at) the jump: not a poisoned block worth publishing
                    )
                block = self.assemble(template, leaves, inputs, attempt, draft)
                if self.jump_at in required_openings(self.params, block.header):
                    self.poison.challenged += 1
                    return None  # the spot checks would catch it: try another trace
                self.poison.blocks += 1
                self.last_jump = (block.hash, self.jump_at)
                return block
            state, prefix = out, next_prefix(prefix, leaf)
        return None


def _empty_header(
    params: ConsensusParams,
    parent: BlockHeader,
    target: int,
    miner: Address,
    time_ms: int,
    claim: WorkClaim,
) -> BlockHeader:
    """An unsigned header on `parent` with no transactions, paying `miner`, for one claim."""
    return BlockHeader(
        version=params.version,
        height=parent.height + 1,
        prev_hash=parent.hash,
        time_ms=time_ms,
        target=target,
        miner=miner,
        miner_key=RawPublicKey(bytes(32)),
        payout=miner,
        tx_root=tx_root(()),
        state_root=ZERO_HASH,
        work=(claim,),
        signature=NO_SIGNATURE,
    )


def forge_header(
    params: ConsensusParams,
    parent: BlockHeader,
    info: ParentInfo,
    key: PrivateKey,
    task_id: TaskId,
    time_ms: int,
) -> BlockHeader:
    """A header that passes every header rule on `parent` for a trace nobody ran: the ticket is
    put under the target by hashing made-up trace roots (the attack on headers-first sync)."""
    miner = address_of(key.public_key())
    target = info.next_target(params)
    for i in range(1 << 32):
        root = tagged_hash("fake trace", parent.hash, int_bytes(i))
        if ticket_wins(ticket(parent.hash, miner, root), target):
            break
    return sign_header(
        _empty_header(params, parent, target, miner, time_ms, WorkClaim(task_id, 1, root, 0)), key
    )


def forge_unrun_block(
    params: ConsensusParams,
    parent: BlockHeader,
    info: ParentInfo,
    key: PrivateKey,
    start: bytes,
    winner_input: bytes,
    task_id: TaskId,
    time_ms: int,
) -> Block:
    """A block that passes the header and body rules on `parent` but whose two-unit trace was never
    run: leaf 0 is fabricated to output `winner_input`, the winner's opened state (garbage, or a
    state of the attacker's choosing). Its ticket is ground with hashes only."""
    miner = address_of(key.public_key())
    c = header_commitment(tx_root(()), time_ms, miner)
    target = info.next_target(params)
    winner = Leaf(state_hash(winner_input), state_hash(winner_input), tagged_hash("made up"), c)
    for i in range(1 << 32):
        fake = Leaf(
            state_hash(start), state_hash(winner_input), tagged_hash("fake", int_bytes(i)), c
        )
        root = trace_root([fake, winner])
        if ticket_wins(ticket(parent.hash, miner, root), target):
            break
    header = _empty_header(params, parent, target, miner, time_ms, WorkClaim(task_id, 2, root, 0))
    header = replace(header, task_state=winner.output_hash)
    inputs = [start, winner_input]
    openings = tuple(Opening(u, inputs[u]) for u in required_openings(params, header))
    return Block(sign_header(header, key), (), (WorkProof((fake, winner), openings),))
