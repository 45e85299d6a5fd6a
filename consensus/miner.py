"""The miner: a block template, units run one after another, a ticket after every unit.

Every unit commits to the header the miner would publish if it won (its transactions and time,
`HeaderDraft`), and to every earlier leaf, through its seed (useful_work.trace). The draft follows
the mempool between units; when a ticket falls under the target the block is assembled with the
winning unit's draft (transactions, time, the openings a verifier needs, the new state root) and
signed. It runs on the caller's worker thread and gives up as soon as the tip changes (the work
depends on the parent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from chain.address import address_of
from chain.block import (
    EMPTY_SHARES_ROOT,
    NO_SIGNATURE,
    Block,
    BlockHeader,
    Opening,
    ShareClaim,
    WorkClaim,
    WorkProof,
    header_commitment,
    shares_root,
    sign_header,
    sign_share_claim,
    tx_root,
)
from chain.keys import PrivateKey
from chain.mempool import Mempool
from chain.state import LedgerState, StateError, apply_block
from chain.tx import FraudProof, Transaction
from chain.types import Address, BlockHash, TaskId
from consensus.chainstate import ChainState
from consensus.market import check_market_rules, task_for_spec
from consensus.params import ConsensusParams
from consensus.share_pool import PooledClaim, SharePool
from consensus.shares import merged_state, required_share_openings
from consensus.tickets import ticket, ticket_wins
from consensus.validation import required_openings
from useful_work.hashing import ZERO_HASH, tagged_hash
from useful_work.prng import Prng
from useful_work.trace import TRACE_START, Leaf, next_prefix, state_hash, trace_root, unit_seed

log = logging.getLogger("pouw.miner")

TX_REFRESH_S = 1.0  # how often the draft's transaction set follows the mempool


@dataclass(frozen=True)
class Template:
    """Everything a block on this parent needs, captured at one moment of the chain."""

    parent_hash: BlockHash
    height: int
    target: int
    min_time_ms: int
    task_id: TaskId
    task_spec: bytes
    start_state: bytes
    state: LedgerState
    tip_version: int


@dataclass(frozen=True)
class HeaderDraft:
    """The transactions and time a unit is run for; `commitment` goes into its seed and leaf."""

    txs: tuple[Transaction, ...]
    time_ms: int
    payout: bytes
    claims: tuple[PooledClaim, ...] = ()  # verified share claims the block would carry
    pool_version: int = 0  # the share pool's version the claims were taken at
    tx_root: bytes = field(init=False)
    shares_root: bytes = field(init=False)
    commitment: bytes = field(init=False)

    def __post_init__(self) -> None:
        root = tx_root(self.txs)
        shares = shares_root([p.claim for p in self.claims])
        object.__setattr__(self, "tx_root", root)
        object.__setattr__(self, "shares_root", shares)
        commitment = header_commitment(root, self.time_ms, self.payout, shares)
        object.__setattr__(self, "commitment", commitment)


@dataclass
class MiningStats:
    units: int = 0
    blocks: int = 0
    unit_seconds: float = 0.0
    unit_cpu_seconds: float = 0.0  # the mining thread's CPU time in units (time.thread_time)


def make_template(chain: ChainState) -> Template:
    with chain.lock:
        parent = chain.tip
        info = chain.parent_info(parent.hash)
        task_id, start = chain.task_state()
        record = chain.state.tasks[task_id]
        return Template(
            parent_hash=parent.hash,
            height=parent.height + 1,
            target=info.next_target(chain.params),
            min_time_ms=info.median_time_past + 1,
            task_id=task_id,
            task_spec=record.spec,
            start_state=start,
            state=chain.state,
            tip_version=chain.tip_version,
        )


class Miner:
    """Mines on a ChainState with a signing key (whose address is the miner M of its units),
    paying rewards to `payout` (default: that address).

    `fabricate` is the fraction of non-winning units this miner fakes instead of running (an
    adversary for tests and the simulator: it copies the input state and invents a digest).
    """

    def __init__(
        self,
        chain: ChainState,
        key: PrivateKey,
        *,
        payout: bytes | None = None,
        mempool: Mempool | None = None,
        device: str = "cpu",
        clock: Callable[[], int] | None = None,
        fabricate: float = 0.0,
        share_pool: SharePool | None = None,
        on_share: Callable[[ShareClaim], None] | None = None,
    ) -> None:
        self.chain = chain
        self.params: ConsensusParams = chain.params
        self.key = key
        self.address = address_of(key.public_key())
        self.payout: Address = Address(payout) if payout is not None else self.address
        self.mempool = mempool
        self.device = device
        self.clock = clock or chain.clock
        self.fabricate = fabricate
        self.stats = MiningStats()
        self.share_pool = share_pool  # claims on the parent to include (shares_per_block > 0)
        self.on_share = on_share  # called with each share claim this miner finds (to gossip it)

    def mine_block(
        self, should_stop: Callable[[], bool] = lambda: False, max_units: int | None = None
    ) -> Block | None:
        """Mine one block on the current tip; None if stopped or the tip moved.

        A trace that reaches `max_units_per_block` units without a winning ticket ends that
        attempt; the next attempt on the same parent is new work (its units have other seeds).
        With `max_units` given, only one attempt of at most that many units is made.
        """
        template = make_template(self.chain)
        limit = min(max_units or self.params.max_units_per_block, self.params.max_units_per_block)
        attempt = 0
        while True:
            block = self._attempt(template, attempt, limit, should_stop)
            if block is not None or max_units is not None:
                return block
            if should_stop() or self.chain.tip_version != template.tip_version:
                return None
            attempt += 1
            log.info(
                "no ticket under the target in %d units on %s; starting attempt %d",
                limit,
                template.parent_hash.hex()[:16],
                attempt,
            )

    def _attempt(
        self, template: Template, attempt: int, limit: int, should_stop: Callable[[], bool]
    ) -> Block | None:
        """One trace on the template's parent: a block as soon as a ticket wins, else None."""
        task = task_for_spec(template.task_spec)
        parent, miner = template.parent_hash, self.address
        fakes = self.fake_decider(template)
        leaves: list[Leaf] = []
        inputs: list[bytes] = []
        state, prefix = template.start_state, TRACE_START
        draft, refreshed = self.draft(template, attempt), time.monotonic()
        shares_on = self.params.shares_per_block > 0
        share_target = self.params.share_target(template.target) if shares_on else 0
        shares: list[int] = []
        while len(leaves) < limit:
            if should_stop() or self.chain.tip_version != template.tip_version:
                return None
            u = len(leaves)
            draft, refreshed = self._follow(template, draft, refreshed, attempt)
            seed = unit_seed(parent, miner, attempt, u, prefix, draft.commitment)
            started, cpu = time.perf_counter(), time.thread_time()
            faked = fakes(u)
            out, digest = (
                (state, tagged_hash("fabricated", seed))
                if faked
                else task.run_unit(state, seed, self.device)
            )
            leaf = Leaf(state_hash(state), state_hash(out), digest, draft.commitment)
            t = ticket(parent, miner, trace_root([*leaves, leaf]))
            if faked and ticket_wins(t, template.target):
                # Verifiers always re-run the winner, so a faked winner is worthless: run it for
                # real.
                out, digest = task.run_unit(state, seed, self.device)
                leaf = Leaf(leaf.input_hash, state_hash(out), digest, draft.commitment)
                t = ticket(parent, miner, trace_root([*leaves, leaf]))
            leaves.append(leaf)
            inputs.append(state)
            self.stats.units += 1
            self.stats.unit_seconds += time.perf_counter() - started
            self.stats.unit_cpu_seconds += time.thread_time() - cpu
            if ticket_wins(t, template.target):
                return self.assemble(template, leaves, inputs, attempt, draft, out)
            if share_target and ticket_wins(t, share_target):
                # A share: publish the claim so far and keep extending the same trace.
                shares.append(u)
                self._found_share(self.share_claim(template, leaves, inputs, attempt, shares), out)
            state, prefix = out, next_prefix(prefix, leaf)
        return None

    def share_claim(
        self,
        template: Template,
        leaves: list[Leaf],
        inputs: list[bytes],
        attempt: int,
        shares: list[int],
    ) -> ShareClaim:
        """The signed share claim of this trace so far (it ends at the share `shares[-1]`)."""
        unsigned = ShareClaim(
            template.parent_hash,
            template.task_id,
            attempt,
            self.payout,
            tuple(shares),
            tuple(leaves),
            (),
            self.key.public_key().raw,
            NO_SIGNATURE,
        )
        needed = required_share_openings(self.params, unsigned)
        openings = tuple(Opening(u, inputs[u]) for u in needed)
        return sign_share_claim(replace(unsigned, openings=openings), self.key)

    def _found_share(self, claim: ShareClaim, output: bytes) -> None:
        if self.share_pool is not None:
            self.share_pool.keep_own(claim, output)
        if self.on_share is not None:
            self.on_share(claim)

    def draft(self, template: Template, attempt: int = 0) -> HeaderDraft:
        """A header draft for the next unit: the mempool's best transactions now, the share
        claims on the parent the pool holds (not this trace's own), and the time."""
        return self._draft_with(template, attempt, tuple(self._select_txs(template)))

    def _draft_with(
        self, template: Template, attempt: int, txs: tuple[Transaction, ...]
    ) -> HeaderDraft:
        claims: tuple[PooledClaim, ...] = ()
        version = 0
        if self.share_pool is not None and self.params.shares_per_block:
            version = self.share_pool.version
            exclude = (self.address, attempt)
            claims = tuple(self.share_pool.for_block(template.parent_hash, exclude))
        return HeaderDraft(txs, self._time(template), self.payout, claims, version)

    def _follow(
        self, template: Template, draft: HeaderDraft, refreshed: float, attempt: int = 0
    ) -> tuple[HeaderDraft, float]:
        """The draft for the next unit: the current time, and the mempool's transactions and the
        pool's share claims once a second."""
        now = time.monotonic()
        if self.mempool is not None and now - refreshed >= TX_REFRESH_S:
            return self.draft(template, attempt), now
        if self.share_pool is not None and self.share_pool.version != draft.pool_version:
            # Claims arrived (or left): the next unit commits to the new set at once.
            return self._draft_with(template, attempt, draft.txs), refreshed
        time_ms = self._time(template)
        kept = HeaderDraft(draft.txs, time_ms, self.payout, draft.claims, draft.pool_version)
        return kept, refreshed

    def _time(self, template: Template) -> int:
        return max(self.clock(), template.min_time_ms)

    def fake_decider(self, template: Template) -> Callable[[int], bool]:
        """Which units this miner fakes: a seeded fraction `fabricate` of them (none for an
        honest miner)."""
        if not self.fabricate:
            return lambda u: False
        prng = Prng(tagged_hash("fabricate", template.parent_hash, self.address))
        threshold = int(self.fabricate * (1 << 32))
        return lambda u: int(prng.words("fabricate", 1, offset=u)[0]) < threshold

    # --- assembling ------------------------------------------------------------------------------

    def _select_txs(self, template: Template) -> list[Transaction]:
        """Transactions by fee that apply on the template's state (none when they would not)."""
        if self.mempool is None:
            return []
        budget = self.params.max_block_bytes // 2
        chosen = []
        proven: set[bytes] = set()
        held: set[bytes] = set()  # senders with a transaction left out: their later nonces wait too
        for tx in self.mempool.select(template.state, budget, self.params.max_block_txs):
            if tx.sender in held:
                continue
            try:
                check_market_rules(self.params, tx)
                if isinstance(tx.payload, FraudProof):
                    # Bounded per block, one per guilty block.
                    if (
                        len(proven) >= self.params.max_fraud_proofs_per_block
                        or tx.payload.block_hash in proven
                    ):
                        raise ValueError("fraud proof over the block's limit")
                    proven.add(tx.payload.block_hash)
            except ValueError:
                held.add(tx.sender)
                continue
            chosen.append(tx)
        if chosen:
            probe = Block(
                BlockHeader(**{**_blank_header(self.params, template), "tx_root": tx_root(chosen)}),
                tuple(chosen),
                (WorkProof((Leaf(ZERO_HASH, ZERO_HASH, ZERO_HASH, ZERO_HASH),), ()),),
            )
            try:
                apply_block(
                    template.state,
                    probe,
                    0,
                    self.params.reward_maturity,
                    check_structure=False,
                    headers=self.chain.block_headers,
                    prover_share_pct=self.params.fraud_prover_share_pct,
                )
            except StateError as exc:
                log.warning("mining without the mempool's transactions: %s", exc)
                return []
        return chosen

    def assemble(
        self,
        template: Template,
        leaves: list[Leaf],
        inputs: list[bytes],
        attempt: int,
        draft: HeaderDraft,
        output: bytes | None = None,
    ) -> Block:
        """The signed block for a winning trace: `inputs[u]` is unit u's input state (for the
        openings), `draft` the header the winning unit was run for, `output` the winner's output
        state; the block carries every verified share claim on the parent the pool holds."""
        claim = WorkClaim(template.task_id, len(leaves), trace_root(leaves), attempt)
        pooled = draft.claims
        share_claims = tuple(p.claim for p in pooled)
        task_state = leaves[-1].output_hash
        if share_claims:
            if output is None:
                raise ValueError("a block with share claims needs the winner's output to merge")
            task = task_for_spec(template.task_spec)
            shell = Block(BlockHeader(**_blank_header(self.params, template)), (), (), share_claims)
            record = template.state.tasks[template.task_id]
            outputs = [p.output for p in pooled]
            merged = merged_state(task, record, output, len(leaves), shell, outputs)
            task_state = state_hash(merged)
        header = BlockHeader(
            **{
                **_blank_header(self.params, template),
                "time_ms": draft.time_ms,
                "tx_root": draft.tx_root,
                "miner": self.address,
                "payout": draft.payout,
                "work": (claim,),
                "shares_root": draft.shares_root,
                "task_state": task_state,
            }
        )
        openings = tuple(Opening(u, inputs[u]) for u in required_openings(self.params, header))
        block = Block(header, draft.txs, (WorkProof(tuple(leaves), openings),), share_claims)
        subsidy, share_rewards = self.params.share_split(template.height)
        new_state, _ = apply_block(
            template.state,
            block,
            subsidy,
            self.params.reward_maturity,
            headers=self.chain.block_headers,
            prover_share_pct=self.params.fraud_prover_share_pct,
            share_rewards=share_rewards,
        )
        final = sign_header(
            BlockHeader(**{**_fields(header), "state_root": new_state.root}), self.key
        )
        self.stats.blocks += 1
        return Block(final, draft.txs, block.proofs, share_claims)


def _blank_header(params: ConsensusParams, template: Template) -> dict:
    """Header fields of a block on the template, before its work, transactions and signature."""
    return {
        "version": params.version,
        "height": template.height,
        "prev_hash": template.parent_hash,
        "time_ms": template.min_time_ms,
        "target": template.target,
        "miner": bytes(20),
        "miner_key": bytes(32),
        "payout": bytes(20),
        "tx_root": ZERO_HASH,
        "state_root": ZERO_HASH,
        "work": (WorkClaim(template.task_id, 1, ZERO_HASH, 0),),
        "shares_root": EMPTY_SHARES_ROOT,
        "task_state": ZERO_HASH,
        "signature": NO_SIGNATURE,
    }


def _fields(header: BlockHeader) -> dict:
    return {name: getattr(header, name) for name in BlockHeader.__dataclass_fields__}
