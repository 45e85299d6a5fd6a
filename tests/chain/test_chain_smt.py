"""The state tree: incremental roots equal from-scratch roots, proofs verify and tampered ones fail,
and a store's tree after random blocks and reorgs is exactly the tree of its state."""

from __future__ import annotations

import random
import tempfile

import chain_kit as kit
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.smt import (
    EMPTY,
    Node,
    Position,
    Proof,
    TreeView,
    branch_hash,
    build_nodes,
    leaf_hash,
    leaves,
    position_key,
    prove,
    root_of,
    update,
    verify,
)
from chain.state import LedgerState, apply_block, state_leaves, state_root, undo_block
from chain.state_view import account_key, value_hash
from chain.storage import ChainStore
from useful_work.hashing import tagged_hash

KEYS = kit.make_keys(5, "smt")
G = kit.make_genesis(KEYS)


class MemoryNodes:
    def __init__(self) -> None:
        self.nodes: dict[Position, Node] = {}

    def node(self, position: Position) -> Node | None:
        return self.nodes.get(position)

    def write(self, writes: dict[Position, Node | None]) -> None:
        for pos, node in writes.items():
            if node is None:
                self.nodes.pop(pos, None)
            else:
                self.nodes[pos] = node


def key(i: int) -> bytes:
    return tagged_hash("k", i.to_bytes(4, "big"))


def test_node_hashes_are_the_tagged_hashes():
    a, b = tagged_hash("a"), tagged_hash("b")
    assert leaf_hash(a, b) == tagged_hash("smt-leaf", a, b) and branch_hash(a, b) == tagged_hash(
        "smt-branch", a, b
    )


def test_the_empty_tree_and_one_leaf():
    assert root_of({}) == EMPTY and TreeView(MemoryNodes()).root == EMPTY
    tree = TreeView(MemoryNodes()).updated({key(1): b"\x01" * 32})
    assert tree.root == root_of({key(1): b"\x01" * 32}) != EMPTY
    assert (
        tree.updated({key(1): None}).root == EMPTY
        and tree.updated({key(1): None}).writes[(0, 0)] is None
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=12),
        min_size=1,
        max_size=25,
    )
)
def test_incremental_updates_equal_a_from_scratch_tree(batches):
    """After any sequence of batched sets and removals: the same root and the same stored nodes
    as the tree built from scratch (no stale node is left behind), and every key proves."""
    source, truth = MemoryNodes(), {}
    for n, batch in enumerate(batches):
        changes = {
            key(i): None if remove else tagged_hash("v", bytes([n, i])) for i, remove in batch
        }
        source.write(update(source, changes))
        for k, v in changes.items():
            if v is None:
                truth.pop(k, None)
            else:
                truth[k] = v
        root = root_of(truth)
        assert TreeView(source).root == root
        assert source.nodes == {p: nd for p, nd in build_nodes(truth).items() if nd is not None}
        assert {leaf.key: leaf.value_hash for leaf in leaves(source)} == truth
    root = root_of(truth)
    for i in range(41):
        assert verify(root, key(i), truth.get(key(i)), prove(source, key(i)))


def tampered(proof: Proof, rng: random.Random) -> list[Proof]:
    out = []
    if proof.siblings:
        s = list(proof.siblings)
        j = rng.randrange(len(s))
        s[j] = bytes([s[j][0] ^ 1]) + s[j][1:]
        out.append(Proof(tuple(s), proof.leaf_key, proof.leaf_value))
        out.append(Proof(proof.siblings[:-1], proof.leaf_key, proof.leaf_value))
    out.append(Proof(proof.siblings + (EMPTY,), proof.leaf_key, proof.leaf_value))
    if proof.leaf_value is not None:
        out.append(Proof(proof.siblings, proof.leaf_key, tagged_hash("forged")))
        out.append(Proof(proof.siblings, None, None))
    return out


def test_proofs_of_presence_and_absence_verify_and_tampered_ones_fail():
    rng = random.Random(7)
    source, truth = (
        MemoryNodes(),
        {key(i): tagged_hash("v", i.to_bytes(2, "big")) for i in range(0, 300, 2)},
    )
    source.write(update(source, truth))
    root = root_of(truth)
    for i in range(60):
        k = key(i)
        proof = prove(source, k)
        assert verify(root, k, truth.get(k), proof)
        assert Proof.from_bytes(proof.to_bytes()) == proof
        if k in truth:
            assert not verify(root, k, None, proof)  # a present key cannot be shown absent
            assert not verify(root, k, tagged_hash("forged"), proof)  # nor holding another value
            assert not verify(root, key(i + 1), truth[k], proof)  # nor be another key's
        else:
            assert not verify(root, k, tagged_hash("forged"), proof)  # an absent key holds nothing
        for bad in tampered(proof, rng):
            assert not verify(root, k, truth.get(k), bad)
        assert not verify(tagged_hash("another root"), k, truth.get(k), proof)


def test_ledger_roots_follow_blocks_and_undo_without_a_rebuild():
    state, parent = G.state, G.block.header
    assert G.state.root == state_root(G.state)
    for n in range(6):
        block, new_state, undo = kit.deterministic_block(11, state, parent, KEYS, 10)
        assert new_state.root == state_root(new_state) == block.header.state_root
        assert undo_block(new_state, undo).root == state.root
        proof = new_state.prove_account(kit.addr(KEYS[n % 5]))
        account = new_state.account(kit.addr(KEYS[n % 5]))
        assert verify(
            new_state.root,
            account_key(kit.addr(KEYS[n % 5])),
            value_hash(account.to_bytes()),
            proof,
        )
        state, parent = new_state, block.header


def stored_nodes(store: ChainStore) -> dict[bytes, bytes]:
    return {k[1:]: v for k, v in store.db.iterator(prefix=b"z")}


def expected_nodes(state: LedgerState) -> dict[bytes, bytes]:
    from chain.smt import encode_node

    return {
        position_key(p): encode_node(n)
        for p, n in build_nodes(state_leaves(state)).items()
        if n is not None
    }


@settings(max_examples=8, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4)), min_size=1, max_size=6),
    st.integers(0, 10**6),
)
def test_store_tree_equals_a_recomputation_after_random_blocks_and_reorgs(moves, seed):
    """Each move disconnects some blocks and connects new ones (another branch): the store's root
    is the from-scratch root of the replayed state, and its nodes are exactly that tree's."""
    with tempfile.TemporaryDirectory() as tmp:
        store = ChainStore(tmp + "/db")
        store.init_genesis(G.block, G.state, chain_work=1)
        chain = [(G.block, G.state)]
        for m, (back, forward) in enumerate(moves):
            for _ in range(min(back, len(chain) - 1)):
                store.disconnect_tip()
                chain.pop()
            for _ in range(forward):
                parent, state = chain[-1]
                block, new_state, undo = kit.deterministic_block(
                    seed + m, store.state(), parent.header, KEYS, 8
                )
                store.connect_block(block, undo, new_state, chain_work=block.header.height + 1)
                chain.append((block, new_state))
            # replay from genesis, from scratch, with plain maps: no tree shared with the store
            replay = G.state
            for block, _ in chain[1:]:
                replay, _ = apply_block(replay, block, kit.SUBSIDY)
                replay = LedgerState(
                    replay.chain_id, dict(replay.accounts), dict(replay.tasks), dict(replay.rewards)
                )
            assert store.state().root == state_root(replay) == chain[-1][0].header.state_root
            assert stored_nodes(store) == expected_nodes(replay)
        store.close()
