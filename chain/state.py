"""The ledger state (accounts, tasks, immature rewards), its root, and the pure state transition
with undo data.

The state root is the root of a sparse Merkle tree over every entry (chain.smt, keys in
chain.state_view); a new state lays the block's changes over its parent's state, so applying a
block costs what the block touches, not what the state holds.

`apply_block(state, block, subsidy, maturity)` first pays out the reward of the block `maturity`
blocks back, then applies the transactions in order, then advances each claimed task, and last
records this block's reward (subsidy, fees, bounty shares) as immature; it returns the new state
and an undo record holding the previous value of every key it touched, so
`undo_block(new_state, undo) == state` exactly. A reward is spendable from block
`height + maturity` on, so a fraud proof within that window can still take it back.
Which task a block must work on, its ticket and the re-execution of its units are consensus
rules, checked before this function; the header's state_root is compared by the caller.

Fraud proofs (docs/protocol.md, "Audits and fraud proofs"). Each immature reward records the
block's work (`work_id`), the task it worked on, the bounty share inside the amount, whether its
units are still credited, and the task's progress before the block. A fraud proof's effects are
applied last in its block, after the claims and this block's own reward record: the guilty
block's record is removed (forfeited: its bounty share returns to the task's escrow, a share of
the rest pays the prover, the remainder is burned); if its units were still credited, the task
goes back to its progress before the guilty block, and every later credited record on that task
(this block's own included) is uncredited: its bounty share returns to escrow, it keeps the rest.
That re-execution shows the unit does not reproduce is a consensus check, made before this function.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Annotated

from chain.address import ADDRESS_SIZE, ZERO_ADDRESS
from chain.block import (
    MAX_CLAIMS,
    MAX_SHARE_CLAIMS,
    MAX_TXS,
    Block,
    BlockHeader,
    BlockStructureError,
    check_block_structure,
)
from chain.encoding import U32, U64, U64_MAX, Bytes, ListOf, Maybe, Nested, Record, UInt, VarBytes
from chain.smt import Node, Position, Proof, TreeView, build_nodes, root_of
from chain.state_view import Overlay, account_key, reward_key, task_key, value_hash
from chain.tx import FraudProof, SubmitTask, Transaction, Transfer, TxError, check_tx, task_units
from chain.types import Address, TaskId
from useful_work.hashing import HASH_SIZE, ZERO_HASH, tagged_hash
from useful_work.specs import MAX_SPEC_BYTES, parse_spec

TASK_OPEN = 0
TASK_DONE = 1


class StateError(ValueError):
    """A block that breaks a ledger rule; `reason` names the transaction or claim and the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Account(Record):
    balance: Annotated[int, U64]
    nonce: Annotated[int, U64]


EMPTY_ACCOUNT = Account(balance=0, nonce=0)


@dataclass(frozen=True)
class TaskRecord(Record):
    """A task on the ledger. `state_hash` is ZERO_HASH until the first unit: the spec's initial
    state."""

    task_id: Annotated[TaskId, Bytes(HASH_SIZE)]
    spec: Annotated[bytes, VarBytes(MAX_SPEC_BYTES)]
    owner: Annotated[Address, Bytes(ADDRESS_SIZE)]
    bounty: Annotated[int, U64]
    paid: Annotated[int, U64]
    units_total: Annotated[int, U32]  # 0: open-ended (the chain's default task)
    units_done: Annotated[int, U64]
    state_hash: Annotated[bytes, Bytes(HASH_SIZE)]
    created_height: Annotated[int, U64]
    completed_height: Annotated[int, U64]  # 0 while open
    status: Annotated[int, UInt(8, choices=(TASK_OPEN, TASK_DONE))]

    @property
    def is_open(self) -> bool:
        return self.status == TASK_OPEN

    @property
    def escrow(self) -> int:
        return self.bounty - self.paid


@dataclass(frozen=True)
class TaskProgress(Record):
    """The fields of a task record that work changes: what a fraud proof rewinds."""

    units_done: Annotated[int, U64]
    paid: Annotated[int, U64]
    state_hash: Annotated[bytes, Bytes(HASH_SIZE)]
    completed_height: Annotated[int, U64]
    status: Annotated[int, UInt(8, choices=(TASK_OPEN, TASK_DONE))]


def progress_of(task: TaskRecord) -> TaskProgress:
    return TaskProgress(
        task.units_done, task.paid, task.state_hash, task.completed_height, task.status
    )


def with_progress(task: TaskRecord, p: TaskProgress) -> TaskRecord:
    return TaskRecord(
        task_id=task.task_id,
        spec=task.spec,
        owner=task.owner,
        bounty=task.bounty,
        paid=p.paid,
        units_total=task.units_total,
        units_done=p.units_done,
        state_hash=p.state_hash,
        created_height=task.created_height,
        completed_height=p.completed_height,
        status=p.status,
    )


@dataclass(frozen=True)
class ClaimReward(Record):
    """What one share claim of a block earns (its shares' reward less the includer's fee, plus
    the bounty `share` of its credited units), paid to its payout address at maturity."""

    payout: Annotated[bytes, Bytes(ADDRESS_SIZE)]
    amount: Annotated[int, U64]
    share: Annotated[int, U64] = 0
    forfeited: Annotated[int, UInt(8, choices=(0, 1))] = 0


@dataclass(frozen=True)
class ShareRewards:
    """How a block's share claims are paid (consensus.params computes it per height): the fixed
    amount per share, and the includer's fee out of it (the winner's subsidy is `subsidy`)."""

    per_share: int = 0
    fee: int = 0


NO_SHARE_REWARDS = ShareRewards()


@dataclass(frozen=True)
class PendingReward(Record):
    """A block's reward, credited to its payout address once it matures, and what a fraud proof
    against the block needs: which work it was (`work_id`), its task, the bounty share inside
    `amount`, whether its units still count (`credited`), and the task's progress before it."""

    height: Annotated[int, U64]
    payout: Annotated[bytes, Bytes(ADDRESS_SIZE)]
    amount: Annotated[int, U64]
    work_id: Annotated[bytes, Bytes(HASH_SIZE)] = ZERO_HASH
    task_id: Annotated[bytes, Bytes(HASH_SIZE)] = ZERO_HASH
    share: Annotated[int, U64] = 0
    credited: Annotated[int, UInt(8, choices=(0, 1))] = 1
    task_before: Annotated[TaskProgress | None, Maybe(Nested(TaskProgress))] = None
    claims: Annotated[tuple[ClaimReward, ...], ListOf(Nested(ClaimReward), MAX_SHARE_CLAIMS)] = ()
    forfeited: Annotated[int, UInt(8, choices=(0, 1))] = 0  # the block miner's part (claims stay)

    @property
    def bounty(self) -> int:
        """The bounty paid for the block's units: its miner's share and every claim's."""
        return self.share + sum(c.share for c in self.claims)


def work_id(header: BlockHeader) -> bytes:
    """What identifies a block's work without its state root (which depends on the state that
    holds this id): parent, miner and claims. Blocks with one work id have the same leaves and
    seeds."""
    return tagged_hash(
        "work-id",
        header.prev_hash,
        header.miner,
        header.height.to_bytes(8, "big"),
        b"".join(c.to_bytes() for c in header.work),
        header.shares_root,
    )


class LedgerState:
    """Accounts by 20-byte address, tasks by 32-byte id and immature rewards by block height,
    read-only; absent accounts are empty. `root` is the state tree's root (chain.smt).

    A state made from plain maps (genesis, tests) builds its tree from scratch when its root is
    first asked for; a state made by `apply_block` or `undo_blocks` is its parent with the
    block's changes laid over it, and updates only the touched leaves of its parent's tree.
    The store's state at its tip (ChainStore.state) reads accounts and tree nodes from disk.
    Two states are equal when their chain ids and roots are.
    """

    def __init__(
        self,
        chain_id: bytes,
        accounts: Mapping[bytes, Account],
        tasks: Mapping[bytes, TaskRecord],
        rewards: Mapping[int, PendingReward] | None = None,
        *,
        tree: TreeView | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.accounts = _read_only(accounts)
        self.tasks = _read_only(tasks)
        self.rewards = _read_only(rewards if rewards is not None else {})
        self._tree = tree
        self._parent: LedgerState | None = None
        self._leaf_changes: dict[bytes, bytes | None] = {}

    def account(self, address: bytes) -> Account:
        return self.accounts.get(address, EMPTY_ACCOUNT)

    def immature(self, address: bytes) -> list[PendingReward]:
        """This address's rewards that are not spendable yet, oldest first."""
        return [r for _, r in sorted(self.rewards.items()) if r.payout == address]

    def child(
        self,
        accounts: Mapping[bytes, Account | None],
        tasks: Mapping[bytes, TaskRecord | None],
        rewards: Mapping[int, PendingReward | None],
    ) -> "LedgerState":
        """This state with the given entries set (None: removed); nothing of this one is copied
        but the changes since its base."""
        new = LedgerState(
            self.chain_id,
            Overlay.over(self.accounts, accounts),
            Overlay.over(self.tasks, tasks),
            Overlay.over(self.rewards, rewards),
        )
        new._parent = self
        new._leaf_changes = leaf_changes(accounts, tasks, rewards)
        return new

    @property
    def tree(self) -> TreeView:
        if self._tree is None:
            pending: list[LedgerState] = []
            s: LedgerState | None = self
            while s is not None and s._tree is None:
                pending.append(s)
                s = s._parent
            for state in reversed(pending):
                parent = state._parent
                if parent is None:
                    state._tree = TreeView(EMPTY_TREE, build_nodes(state_leaves(state)))
                else:
                    state._tree = parent.tree.updated(state._leaf_changes)
                state._parent, state._leaf_changes = None, {}  # the parent may be freed now
        assert self._tree is not None
        return self._tree

    @property
    def root(self) -> bytes:
        return self.tree.root

    def prove_account(self, address: bytes) -> Proof:
        """The tree proof of this address's account (or of its absence)."""
        return self.tree.prove(account_key(address))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LedgerState):
            return NotImplemented
        return self.chain_id == other.chain_id and self.root == other.root

    def __hash__(self) -> int:
        return hash((self.chain_id, self.root))


class _EmptyTree:
    def node(self, position: Position) -> Node | None:
        return None


EMPTY_TREE = _EmptyTree()


def _read_only(mapping: Mapping) -> Mapping:
    if isinstance(mapping, (MappingProxyType, Overlay)) or not isinstance(mapping, dict):
        return mapping
    return MappingProxyType(dict(mapping))


def leaf_changes(
    accounts: Mapping[bytes, Account | None],
    tasks: Mapping[bytes, TaskRecord | None],
    rewards: Mapping[int, PendingReward | None],
) -> dict[bytes, bytes | None]:
    """The state tree's (key, value hash) changes for these entries (None: removed)."""
    out: dict[bytes, bytes | None] = {}
    for address, account in accounts.items():
        out[account_key(address)] = None if account is None else value_hash(account.to_bytes())
    for task_id, task in tasks.items():
        out[task_key(task_id)] = None if task is None else value_hash(task.to_bytes())
    for height, reward in rewards.items():
        out[reward_key(height)] = None if reward is None else value_hash(reward.to_bytes())
    return out


def state_leaves(state: LedgerState) -> dict[bytes, bytes]:
    leaves = leaf_changes(state.accounts, state.tasks, state.rewards)
    return {k: v for k, v in leaves.items() if v is not None}


def state_root(state: LedgerState) -> bytes:
    """The state tree's root recomputed from scratch over every entry (a check of `state.root`)."""
    return root_of(state_leaves(state))


def open_tasks(state: LedgerState) -> list[TaskRecord]:
    """Open tasks, oldest first: ordered by (created_height, task_id)."""
    return sorted(
        (t for t in state.tasks.values() if t.is_open), key=lambda t: (t.created_height, t.task_id)
    )


# --- genesis ---------------------------------------------------------------------------------


def default_task_record(spec: bytes, state_hash: bytes = ZERO_HASH) -> TaskRecord:
    """The chain's default public task: no owner, no bounty, id H("default-task", spec)."""
    return TaskRecord(
        task_id=TaskId(tagged_hash("default-task", spec)),
        spec=spec,
        owner=ZERO_ADDRESS,
        bounty=0,
        paid=0,
        units_total=parse_spec(spec).units_total,
        units_done=0,
        state_hash=state_hash,
        created_height=0,
        completed_height=0,
        status=TASK_OPEN,
    )


def genesis_state(
    chain_id: bytes, allocations: Mapping[bytes, int], default_task: TaskRecord
) -> LedgerState:
    accounts = {}
    for address, balance in allocations.items():
        if len(address) != ADDRESS_SIZE:
            raise ValueError(
                f"genesis allocation to {address.hex()}: an address is {ADDRESS_SIZE} bytes"
            )
        accounts[address] = Account(balance=balance, nonce=0)
        accounts[address].to_bytes()  # range check of the balance
    return LedgerState(chain_id, accounts, {default_task.task_id: default_task})


# --- undo data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountUndo(Record):
    address: Annotated[bytes, Bytes(ADDRESS_SIZE)]
    before: Annotated[Account | None, Maybe(Nested(Account))]  # None: the account did not exist


@dataclass(frozen=True)
class TaskUndo(Record):
    task_id: Annotated[bytes, Bytes(HASH_SIZE)]
    before: Annotated[TaskRecord | None, Maybe(Nested(TaskRecord))]


@dataclass(frozen=True)
class RewardUndo(Record):
    height: Annotated[int, U64]
    before: Annotated[PendingReward | None, Maybe(Nested(PendingReward))]


MAX_REWARD_UNDOS = (
    200_002  # matured + own + every record a fraud proof touches (maturity at most 100_000)
)


@dataclass(frozen=True)
class Undo(Record):
    """Previous values of every key a block touched, sorted by key.

    It depends only on the state and the block's transactions and claims, not on the header's
    state_root or signature, so a miner may keep the undo of its draft block.
    """

    accounts: Annotated[tuple[AccountUndo, ...], ListOf(Nested(AccountUndo), 2 * MAX_TXS + 2)]
    tasks: Annotated[tuple[TaskUndo, ...], ListOf(Nested(TaskUndo), MAX_TXS + MAX_CLAIMS)]
    rewards: Annotated[tuple[RewardUndo, ...], ListOf(Nested(RewardUndo), MAX_REWARD_UNDOS)]
    miner_reward: Annotated[
        int, U64
    ]  # subsidy + fees + bounty shares this block earns its miner, for histories
    burned: Annotated[int, U64] = 0  # forfeited by this block's fraud proofs and paid to nobody


# --- the state transition --------------------------------------------------------------------


class _Changes:
    """New values written during one block, read through to the old state; never escapes
    apply_block."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self.accounts: dict[bytes, Account] = {}
        self.tasks: dict[bytes, TaskRecord] = {}
        self.rewards: dict[int, PendingReward | None] = {}  # None: paid out (removed)

    def account(self, address: bytes) -> Account:
        found = self.accounts.get(address)
        return found if found is not None else self.state.account(address)

    def task(self, task_id: bytes) -> TaskRecord | None:
        found = self.tasks.get(task_id)
        return found if found is not None else self.state.tasks.get(task_id)

    def reward(self, height: int) -> PendingReward | None:
        if height in self.rewards:
            return self.rewards[height]  # None: paid out or forfeited in this block
        return self.state.rewards.get(height)


def apply_block(
    state: LedgerState,
    block: Block,
    subsidy: int,
    maturity: int = 0,
    *,
    verify_signatures: bool = True,
    check_structure: bool = True,
    headers: Callable[[bytes], BlockHeader | None] | None = None,
    prover_share_pct: int = 0,
    share_rewards: ShareRewards = NO_SHARE_REWARDS,
) -> tuple[LedgerState, Undo]:
    """The state after `block`, and its undo record; raises StateError naming the broken rule.

    `maturity` is the number of blocks after which a block's reward becomes spendable (0: at
    once, in the balance of the block's own state).

    `verify_signatures=False` is only for a caller that has already verified every signature of
    this very block (a batch check), and `check_structure=False` only for one that has already
    run `check_block_structure` on it (consensus does, before re-execution); the ledger rules are
    always applied.

    `headers` looks up the blocks that fraud proofs name (a block with a fraud proof and no
    lookup is refused); `prover_share_pct` is the percentage of a forfeit (bounty share aside)
    paid to the prover. The re-execution that shows the fraud is the caller's (consensus) check.

    Share claims (`block.shares`) are credited after the winner's claim, in block order; each
    earns `share_rewards.per_share` per share less `fee`, which goes to the block's miner, and
    the bounty of its credited units. The task's state becomes the header's `task_state` (the
    merge, checked by consensus by re-execution).
    """
    if type(subsidy) is not int or not 0 <= subsidy <= U64_MAX:
        raise ValueError(f"subsidy {subsidy!r} is not a u64")
    if check_structure:
        try:
            check_block_structure(block)
        except BlockStructureError as exc:
            raise StateError(f"structure: {exc.reason}") from None
    if type(maturity) is not int or maturity < 0:
        raise ValueError(f"maturity {maturity!r} is not a non-negative integer")
    height = block.header.height
    changes = _Changes(state)
    if maturity and height > maturity:
        _mature(changes, height - maturity)
    if type(prover_share_pct) is not int or not 0 <= prover_share_pct <= 100:
        raise ValueError(f"prover_share_pct {prover_share_pct!r} is not a percentage")
    fees = 0
    frauds: list[tuple[int, Transaction, int]] = []  # (tx index, tx, guilty height)
    for i, tx in enumerate(block.txs):
        _apply_tx(changes, i, tx, height, verify_signatures)
        fees += tx.fee
        if isinstance(tx.payload, FraudProof):
            guilty = _fraud_height(changes, i, tx.payload, headers, height, maturity)
            if any(g == guilty for _, _, g in frauds):
                raise StateError(
                    f"tx {i}: duplicate fraud proof: this block already proves block "
                    f"{guilty} guilty"
                )
            frauds.append((i, tx, guilty))
    shares = 0
    before: TaskProgress | None = None
    task_id = ZERO_HASH
    end_state = block.header.task_state
    for j, claim in enumerate(block.header.work):
        task = changes.task(claim.task_id)
        if j == 0 and task is not None:
            before, task_id = progress_of(task), claim.task_id
        shares += _apply_claim(changes, j, claim.task_id, claim.unit_count, end_state, height)
    claim_rewards = _apply_share_claims(changes, block, height, share_rewards)
    included = sum(len(c.shares) for c in block.shares)
    reward = subsidy + fees + shares + included * share_rewards.fee
    if reward > U64_MAX:
        raise StateError("miner reward overflows u64")
    if maturity:
        changes.rewards[height] = PendingReward(
            height,
            block.header.payout,
            reward,
            work_id(block.header),
            task_id,
            shares,
            1,
            before,
            tuple(claim_rewards),
        )
    else:
        _credit(changes, block.header.payout, reward, "miner reward")
        for i, c in enumerate(claim_rewards):
            _credit(changes, c.payout, c.amount, f"share claim {i}")
    burned = 0
    for i, tx, guilty in frauds:
        burned += _apply_fraud(changes, i, tx, guilty, prover_share_pct)
    return _commit(state, changes, reward, burned)


def credited_units(task: TaskRecord, unit_counts: list[int]) -> list[int]:
    """Units of each claim (winner first, then share claims in block order) that count toward
    the task: all of them for an open-ended task, else up to what is left, in that order."""
    if not task.is_open:
        return [0] * len(unit_counts)
    if not task.units_total:
        return list(unit_counts)
    left = task.units_total - task.units_done
    out = []
    for n in unit_counts:
        out.append(min(n, left))
        left -= out[-1]
    return out


def _apply_share_claims(
    changes: _Changes, block: Block, height: int, rewards: ShareRewards
) -> list[ClaimReward]:
    """Credit each share claim's units to the task (after the winner's) and price its reward."""
    out: list[ClaimReward] = []
    if block.shares and rewards.fee > rewards.per_share:
        raise StateError("share fee exceeds the reward per share")
    for i, claim in enumerate(block.shares):
        task = changes.task(claim.task_id)
        if task is None:
            raise StateError(f"share claim {i}: unknown task {claim.task_id.hex()}")
        bounty = 0
        if task.is_open:  # a task the winner completed takes no more units
            j = len(block.header.work) + i  # claim 1, 2, ...: the numbering of fraud proofs
            bounty = _apply_claim(
                changes, j, claim.task_id, len(claim.leaves), block.header.task_state, height
            )
        amount = len(claim.shares) * (rewards.per_share - rewards.fee) + bounty
        if amount > U64_MAX:
            raise StateError(f"share claim {i}: reward overflows u64")
        out.append(ClaimReward(claim.payout, amount, bounty))
    return out


def fraud_target(
    state: LedgerState, proof: FraudProof, header: BlockHeader | None, height: int, maturity: int
) -> PendingReward:
    """The immature reward a fraud proof in a block at `height` would forfeit; StateError when the
    named block is unknown, not this chain's, outside the fraud window or already proven guilty."""
    return _fraud_record(state.rewards.get, proof, header, height, maturity)


def _fraud_height(
    changes: _Changes, i: int, proof: FraudProof, headers, height: int, maturity: int
) -> int:
    header = headers(proof.block_hash) if headers is not None else None
    try:
        record = _fraud_record(changes.reward, proof, header, height, maturity)
    except StateError as exc:
        raise StateError(f"tx {i}: {exc.reason}") from None
    return record.height


def _fraud_record(
    get_reward, proof: FraudProof, header: BlockHeader | None, height: int, maturity: int
) -> PendingReward:
    name = proof.block_hash.hex()[:16]
    if not maturity:
        raise StateError("fraud proof: this chain has no fraud window (reward maturity 0)")
    if header is None or header.hash != proof.block_hash:
        raise StateError(f"fraud proof: block {name} is unknown")
    if not height - maturity < header.height < height:
        raise StateError(
            f"fraud proof: block {name} at height {header.height} is outside the fraud window "
            f"(heights {max(1, height - maturity + 1)} .. {height - 1})"
        )
    winner_claim = proof.claim_index < len(header.work)
    if winner_claim and proof.unit_index >= header.work[proof.claim_index].unit_count:
        raise StateError(
            f"fraud proof: claim {proof.claim_index} of block {name} has no unit {proof.unit_index}"
        )
    record = get_reward(header.height)
    if record is None or record.work_id != work_id(header):
        if record is None:
            raise StateError(
                f"fraud proof: block {name}'s reward is already forfeited (proven guilty) "
                "or not this chain's"
            )
        raise StateError(f"fraud proof: block {name} is not on this chain")
    # Claim 0 is the winner's; claims 1.. are the block's share claims (their units: consensus).
    if proof.claim_index > len(record.claims):
        raise StateError(f"fraud proof: block {name} has no claim {proof.claim_index}")
    c = proof.claim_index
    if record.forfeited if c == 0 else record.claims[c - 1].forfeited:
        raise StateError(f"fraud proof: claim {c} of block {name} is already proven guilty")
    return record


def _uncredited(record: PendingReward) -> PendingReward:
    """The record with its units no longer counting: every bounty share returns to escrow; the
    miner and the claims keep the rest of what they earned."""
    claims = tuple(replace(c, amount=c.amount - c.share, share=0) for c in record.claims)
    return replace(record, amount=record.amount - record.share, share=0, credited=0, claims=claims)


def _apply_fraud(
    changes: _Changes, i: int, tx: Transaction, guilty: int, prover_share_pct: int
) -> int:
    """Forfeit the guilty claim's reward (the block miner's for claim 0, else that share claim's),
    rewind the task if the block's units still count; return what is burned."""
    record = changes.reward(guilty)
    if record is None:  # proven twice in one block: refused above, so unreachable
        raise StateError(f"tx {i}: block {guilty}'s reward is already forfeited")
    if record.credited and record.task_before is not None:
        task_before = record.task_before
        task = changes.task(record.task_id)
        if task is None:
            raise StateError(f"tx {i}: the guilty block's task {record.task_id.hex()} is missing")
        returned = record.bounty
        record = _uncredited(record)
        for h in sorted(k for k in {*changes.state.rewards, *changes.rewards} if k > guilty):
            later = changes.reward(h)
            if later is None or not later.credited or later.task_id != record.task_id:
                continue
            returned += later.bounty
            changes.rewards[h] = _uncredited(later)
        if task.paid - returned != task_before.paid:
            raise StateError(
                f"tx {i}: task {record.task_id.hex()} escrow does not balance "
                f"(paid {task.paid}, returned {returned}, before {task_before.paid})"
            )
        changes.tasks[record.task_id] = with_progress(task, task_before)
    c = tx.payload.claim_index if isinstance(tx.payload, FraudProof) else 0
    if c == 0:
        rest = record.amount
        # Without share claims the record goes (as before shares); with them, the claims stay.
        changes.rewards[guilty] = replace(record, amount=0, forfeited=1) if record.claims else None
    else:
        claims = list(record.claims)
        rest = claims[c - 1].amount
        claims[c - 1] = replace(claims[c - 1], amount=0, forfeited=1)
        changes.rewards[guilty] = replace(record, claims=tuple(claims))
    prize = rest * prover_share_pct // 100
    _credit(changes, tx.sender, prize, f"tx {i}: prover")
    return rest - prize


def _mature(changes: _Changes, height: int) -> None:
    """Pay out the reward of the block at `height`: it is spendable from this block on."""
    pending = changes.state.rewards.get(height)
    if pending is None:
        return  # forfeited, or a block of a chain that started with maturity off
    changes.rewards[height] = None
    _credit(changes, pending.payout, pending.amount, f"matured reward of block {height}")
    for i, claim in enumerate(pending.claims):
        who = f"matured reward of block {height} claim {i + 1}"
        _credit(changes, claim.payout, claim.amount, who)


def _apply_tx(
    changes: _Changes, i: int, tx: Transaction, height: int, verify_signatures: bool
) -> None:
    try:
        check_tx(tx, changes.state.chain_id, verify_signature=verify_signatures)
    except TxError as exc:
        raise StateError(f"tx {i}: {exc.reason}") from None
    sender = changes.account(tx.sender)
    if tx.nonce != sender.nonce:
        raise StateError(f"tx {i}: nonce {tx.nonce}, expected {sender.nonce}")
    if sender.nonce == U64_MAX:
        raise StateError(f"tx {i}: sender nonce overflows u64")
    if tx.cost > sender.balance:
        raise StateError(f"tx {i}: cost {tx.cost} exceeds the sender's balance {sender.balance}")
    changes.accounts[tx.sender] = Account(balance=sender.balance - tx.cost, nonce=sender.nonce + 1)
    payload = tx.payload
    if isinstance(payload, Transfer):
        _credit(changes, payload.to, payload.amount, f"tx {i}: recipient")
    elif isinstance(payload, SubmitTask):
        _create_task(changes, i, tx, payload, height)


def _create_task(
    changes: _Changes, i: int, tx: Transaction, payload: SubmitTask, height: int
) -> None:
    """The bounty left the sender with the cost; it stays in the task record as escrow."""
    if changes.task(tx.txid) is not None:
        raise StateError(f"tx {i}: task {tx.txid.hex()} already exists")
    changes.tasks[tx.txid] = TaskRecord(
        task_id=TaskId(tx.txid),  # a task is named by the transaction that submitted it
        spec=payload.spec,
        owner=tx.sender,
        bounty=payload.bounty,
        paid=0,
        units_total=task_units(payload.spec),
        units_done=0,
        state_hash=ZERO_HASH,
        created_height=height,
        completed_height=0,
        status=TASK_OPEN,
    )


def _apply_claim(
    changes: _Changes, j: int, task_id: bytes, unit_count: int, output_hash: bytes, height: int
) -> int:
    """Advance the task by `unit_count` units; return the bounty share it pays out of escrow."""
    task = changes.task(task_id)
    if task is None:
        raise StateError(f"claim {j}: unknown task {task_id.hex()}")
    if not task.is_open:
        raise StateError(f"claim {j}: task {task_id.hex()} is already done")
    units_done = task.units_done + unit_count
    if units_done > U64_MAX:
        raise StateError(f"claim {j}: units_done overflows u64")
    share, paid, status, completed = 0, task.paid, TASK_OPEN, 0
    if task.units_total:
        credited = min(unit_count, task.units_total - task.units_done)
        if task.units_done + credited == task.units_total:
            share, status, completed = task.bounty - task.paid, TASK_DONE, height
        else:
            share = task.bounty * credited // task.units_total
        paid += share
    changes.tasks[task_id] = TaskRecord(
        task_id=task.task_id,
        spec=task.spec,
        owner=task.owner,
        bounty=task.bounty,
        paid=paid,
        units_total=task.units_total,
        units_done=units_done,
        state_hash=output_hash,
        created_height=task.created_height,
        completed_height=completed,
        status=status,
    )
    return share


def _credit(changes: _Changes, address: bytes, amount: int, who: str) -> None:
    account = changes.account(address)
    if account.balance + amount > U64_MAX:
        raise StateError(f"{who} balance overflows u64")
    changes.accounts[address] = Account(balance=account.balance + amount, nonce=account.nonce)


def _commit(
    state: LedgerState, changes: _Changes, miner_reward: int, burned: int = 0
) -> tuple[LedgerState, Undo]:
    undo = Undo(
        accounts=tuple(AccountUndo(a, state.accounts.get(a)) for a in sorted(changes.accounts)),
        tasks=tuple(TaskUndo(t, state.tasks.get(t)) for t in sorted(changes.tasks)),
        rewards=tuple(RewardUndo(h, state.rewards.get(h)) for h in sorted(changes.rewards)),
        miner_reward=miner_reward,
        burned=burned,
    )
    return state.child(changes.accounts, changes.tasks, changes.rewards), undo


def undo_block(state: LedgerState, undo: Undo) -> LedgerState:
    """The state before the block whose undo record this is (applied to the state after it)."""
    return undo_blocks(state, [undo])


def undo_blocks(state: LedgerState, undos: Iterable[Undo]) -> LedgerState:
    """The state before several blocks, their undo records newest first (only touched keys)."""
    accounts: dict[bytes, Account | None] = {}
    tasks: dict[bytes, TaskRecord | None] = {}
    rewards: dict[int, PendingReward | None] = {}
    for undo in undos:
        accounts.update((u.address, u.before) for u in undo.accounts)
        tasks.update((u.task_id, u.before) for u in undo.tasks)
        rewards.update((u.height, u.before) for u in undo.rewards)
    return state.child(accounts, tasks, rewards)
