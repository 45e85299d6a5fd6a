"""LevelDB storage: atomic connect and disconnect, reopening, reorgs, corrupt records, and
SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import chain_kit as kit
import pytest
from crash_writer import CRASH_KEYS, blob_of

from chain.history import account_events, tx_locations
from chain.smt import build_nodes, encode_node, position_key
from chain.state import apply_block, state_leaves, state_root, undo_block
from chain.storage import (
    STATUS_BODY,
    STATUS_HEADER,
    STATUS_INVALID,
    STATUS_VALID,
    ChainStore,
    CorruptRecord,
    StoreError,
)
from useful_work.trace import state_hash

KEYS = kit.make_keys(6, "storage")
G = kit.make_genesis(KEYS)
WRITER = Path(__file__).parent / "crash_writer.py"


def grow(state, parent, count, seed, tx_count=12):
    """`count` deterministic blocks on parent: [(block, state, undo), ...]."""
    out = []
    for _ in range(count):
        block, state, undo = kit.deterministic_block(seed, state, parent, KEYS, tx_count)
        out.append((block, state, undo))
        parent = block.header
    return out


@pytest.fixture
def store(tmp_path):
    s = ChainStore(str(tmp_path / "db"))
    s.init_genesis(G.block, G.state, chain_work=1)
    yield s
    s.close()


def connect_all(store, steps):
    for block, state, undo in steps:
        store.connect_block(block, undo, state, chain_work=block.header.height + 1)


def test_genesis_and_reopen(tmp_path):
    path = str(tmp_path / "db")
    with ChainStore(path) as s:
        assert not s.is_initialised()
        s.init_genesis(G.block, G.state, chain_work=1, blobs=[b"initial state"])
        with pytest.raises(StoreError, match="not empty"):
            s.init_genesis(G.block, G.state, chain_work=1)
    with ChainStore(path) as s:
        assert s.is_initialised() and s.tip() == G.block.hash == s.genesis_hash
        assert s.chain_id == kit.CHAIN_ID and s.hash_at(0) == G.block.hash
        assert s.load_state() == G.state
        assert s.get_blob(state_hash(b"initial state")) == b"initial state"
        assert s.tip_entry().status == STATUS_VALID and s.tip_entry().chain_work == 1


def test_connect_reopen_and_read_back(store, tmp_path):
    steps = grow(G.state, G.block.header, 6, seed=1)
    connect_all(store, steps)
    last_block, last_state, last_undo = steps[-1]
    assert store.tip() == last_block.hash
    assert store.load_state().root == last_state.root == last_block.header.state_root
    store.close()
    with ChainStore(str(tmp_path / "db")) as s:
        assert s.load_state() == last_state
        for height, (block, _, undo) in enumerate(steps, start=1):
            assert s.hash_at(height) == block.hash
            assert s.get_block(block.hash) == block and s.get_header(block.hash) == block.header
            assert s.get_undo(block.hash) == undo
        entry = s.tip_entry()
        assert (entry.height, entry.chain_work, entry.prev_hash) == (6, 7, steps[-2][0].hash)
        for task_id in last_state.tasks:
            worked = [b for b, _, _ in steps if any(c.task_id == task_id for c in b.header.work)]
            expected = [(b.header.height, b.hash) for b in worked]
            assert s.blocks_for_task(task_id) == expected
        assert s.account(kit.addr(KEYS[0])) == last_state.account(kit.addr(KEYS[0]))


def test_disconnect_restores_the_previous_state(store):
    steps = grow(G.state, G.block.header, 4, seed=2)
    connect_all(store, steps)
    state = steps[-1][1]
    for i in range(3, -1, -1):
        block, undo = store.disconnect_tip()
        assert block == steps[i][0] and undo == steps[i][2]
        state = undo_block(state, undo)
        previous = steps[i - 1][1] if i else G.state
        assert state == previous and store.load_state() == previous
        assert store.hash_at(i + 1) is None and store.get_undo(block.hash) is None
        assert store.blocks_for_task(G.default_task.task_id) == [
            (b.header.height, b.hash)
            for b, _, _ in steps[:i]
            if b.header.work[0].task_id == G.default_task.task_id
        ]
    assert store.tip() == G.block.hash
    with pytest.raises(StoreError, match="genesis"):
        store.disconnect_tip()
    connect_all(store, steps)  # the same blocks connect again (their index entries stay valid)
    assert store.load_state() == steps[-1][1]


def test_reorg_to_another_branch_equals_a_replay(store):
    main = grow(G.state, G.block.header, 5, seed=3)
    connect_all(store, main)
    fork_point = main[1]
    side = grow(fork_point[1], fork_point[0].header, 5, seed=4)
    state = main[-1][1]
    for _ in range(3):
        _, undo = store.disconnect_tip()
        state = undo_block(state, undo)
    assert state == fork_point[1]
    connect_all(store, side)
    replay = G.state
    for height in range(1, 8):
        replay, _ = apply_block(replay, store.get_block(store.hash_at(height)), kit.SUBSIDY)
    assert store.load_state().root == replay.root == side[-1][1].root
    assert store.get_index(main[-1][0].hash).status == STATUS_VALID  # still known, no longer best


def test_connect_is_all_or_nothing(store):
    steps = grow(G.state, G.block.header, 2, seed=5)
    connect_all(store, steps[:1])
    block, state, undo = steps[1]

    def failing_blobs():
        yield b"one blob"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        store.connect_block(block, undo, state, chain_work=3, blobs=failing_blobs())
    assert store.tip() == steps[0][0].hash
    assert store.load_state() == steps[0][1]
    assert store.get_block(block.hash) is None and store.get_undo(block.hash) is None
    assert store.get_blob(state_hash(b"one blob")) is None and store.hash_at(2) is None
    store.connect_block(block, undo, state, chain_work=3, blobs=[b"one blob"])
    assert store.get_blob(state_hash(b"one blob")) == b"one blob"


def test_refusals(store):
    (b1, s1, u1), (b2, s2, u2) = grow(G.state, G.block.header, 2, seed=6)
    with pytest.raises(StoreError, match="does not extend the tip"):
        store.connect_block(b2, u2, s2, chain_work=3)
    with pytest.raises(StoreError, match="not indexed and no chain work"):
        store.connect_block(b1, u1, s1)
    store.put_block(b1, chain_work=2)
    store.connect_block(b1, u1, s1)  # chain work from the index entry
    assert store.tip_entry().chain_work == 2


def test_block_index_statuses(store):
    (b1, _, _), (b2, _, _) = grow(G.state, G.block.header, 2, seed=7)
    assert store.put_header(b1.header, chain_work=2).status == STATUS_HEADER
    assert store.get_header(b1.hash) == b1.header and not store.has_block(b1.hash)
    assert store.put_block(b1, chain_work=2).status == STATUS_BODY and store.has_block(b1.hash)
    store.put_block(b2, chain_work=3)
    invalid = store.set_status(
        b2.hash, STATUS_INVALID, "claim 0: trace_root does not match the leaves"
    )
    assert store.get_index(b2.hash) == invalid and invalid.reason.startswith("claim 0")
    assert store.put_header(b2.header, chain_work=3).status == STATUS_INVALID  # known: unchanged
    assert {e.hash for e in store.index_entries()} == {G.block.hash, b1.hash, b2.hash}
    with pytest.raises(StoreError):
        store.set_status(b"\x00" * 32, STATUS_VALID)


def test_corrupt_records_are_reported_by_key(store, tmp_path):
    address = kit.addr(KEYS[0])
    store.db.put(b"a" + address, b"\x92\x01")  # an Account missing its nonce
    with pytest.raises(
        CorruptRecord, match=rf"account {address.hex()}: Account.nonce: truncated input"
    ):
        store.load_state().account(address)
    with pytest.raises(CorruptRecord, match=rf"account {address.hex()}"):
        store.account(address)
    store.db.put(b"i" + G.block.hash, b"\xc1")
    with pytest.raises(CorruptRecord, match=rf"index entry {G.block.hash.hex()}: IndexEntry"):
        store.tip_entry()
    store.db.put(b"mformat", b"99")
    store.close()
    with pytest.raises(StoreError, match="store format"):
        ChainStore(str(tmp_path / "db"))


def test_blobs_are_content_addressed(store):
    key = store.put_blob(b"weights and momentum")
    assert key == state_hash(b"weights and momentum")
    assert store.get_blob(key) == b"weights and momentum" and store.get_blob(b"\x00" * 32) is None


# --- killed in the middle of writing --------------------------------------------------------------


def check_against_replay(path: str, seed: int, tx_count: int) -> int:
    """The store's state equals a replay from genesis of its best chain, and that chain is the
    seed's; its state tree is exactly the replayed state's; its transaction index and account
    histories are exactly the best chain's (none left of disconnected blocks)."""
    genesis = kit.make_genesis(CRASH_KEYS)
    with ChainStore(path) as s:
        if not s.is_initialised():
            return 0
        tip = s.tip_entry()
        state, parent = genesis.state, genesis.block.header
        assert s.hash_at(0) == genesis.block.hash
        locations, events = {}, {}
        for height in range(1, tip.height + 1):
            stored = s.get_block(s.hash_at(height))
            expected, _, _ = kit.deterministic_block(seed, state, parent, CRASH_KEYS, tx_count)
            assert stored == expected, f"block at height {height} is not the chain's"
            state, undo = apply_block(state, stored, kit.SUBSIDY)
            locations.update(tx_locations(stored))
            for address, _, event in account_events(stored, undo.miner_reward):
                events.setdefault(address, []).append(event)
            assert stored.header.state_root == state.root
            assert s.get_blob(state_hash(blob_of(stored.hash))) == blob_of(stored.hash)
            parent = stored.header
        assert tip.hash == s.tip() == parent.hash
        assert s.hash_at(tip.height + 1) is None
        assert tip.height == 0 or s.get_undo(tip.hash) is not None
        assert s.load_state().root == state.root == state_root(state)
        tree = {k[1:]: v for k, v in s.db.iterator(prefix=b"z")}
        assert tree == {
            position_key(p): encode_node(n)
            for p, n in build_nodes(state_leaves(state)).items()
            if n is not None
        }
        assert {txid: s.tx_location(txid) for txid in s.txids()} == locations
        for address, items in events.items():
            assert s.history(address, 0, 10**6) == (len(items), items[::-1])
        assert sum(1 for _ in s.db.iterator(prefix=b"e")) == sum(len(v) for v in events.values())
        return tip.height


def run_kills(tmp_path, rounds: int, seed: int) -> list[int]:
    path = str(tmp_path / "crashdb")
    tx_count = 20
    rng = random.Random(seed)
    heights = []
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for _ in range(rounds):
        child = subprocess.Popen(
            [sys.executable, str(WRITER), path, str(seed), str(tx_count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            ready = child.stdout.readline()
            assert ready.startswith("ready"), child.stderr.read()
            for _ in range(
                rng.randint(0, 12)
            ):  # let it write a while, then kill at a random moment
                child.stdout.readline()
            time.sleep(rng.random() * 0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        heights.append(check_against_replay(path, seed, tx_count))
    return heights


def test_sigkill_while_connecting_leaves_a_consistent_store(tmp_path):
    heights = run_kills(tmp_path, rounds=5, seed=11)
    assert max(heights) > 0


@pytest.mark.slow
def test_sigkill_soak(tmp_path):
    heights = run_kills(tmp_path, rounds=40, seed=12)
    assert max(heights) > 10


def test_pruning_keeps_headers_txs_leaves_and_the_reorg_horizon(store):
    steps = grow(G.state, G.block.header, 10, seed=21)
    connect_all(store, steps)
    assert store.prune(keep=4) == 6 and store.pruned_height() == 6 and store.prune(keep=4) == 0
    for height, (block, _, _undo) in enumerate(steps, start=1):
        stored = store.get_block(block.hash)
        assert stored.header == block.header and stored.txs == block.txs
        assert [p.leaves for p in stored.proofs] == [p.leaves for p in block.proofs]
        pruned = height <= 6
        assert store.is_pruned(block.hash) == pruned
        assert (stored.proofs[0].openings == ()) if pruned else (stored == block)
        assert (store.get_undo(block.hash) is None) == pruned
    for _ in range(4):  # a reorg within the horizon: the kept undo records bring the state back
        store.disconnect_tip()
    assert store.state() == steps[5][1] and store.tip() == steps[5][0].hash
    with pytest.raises(StoreError, match="pruned"):
        store.disconnect_tip()
    connect_all(store, steps[6:])
    assert store.state() == steps[-1][1]
    assert store.history(kit.addr(KEYS[0]), 0, 1000)[0] > 0


def test_work_index_names_the_stored_blocks_off_the_best_chain(store, tmp_path):
    (b1, s1, u1), (b2, s2, u2) = grow(G.state, G.block.header, 2, seed=11)
    store.put_block(b1, chain_work=2)
    store.put_block(b2, chain_work=3)
    assert [e.hash for e in store.entries_above(1)] == [b1.hash, b2.hash]  # by work
    assert [e.hash for e in store.entries_above(2)] == [b2.hash]
    store.connect_block(b1, u1, s1)
    assert [e.hash for e in store.entries_above(0)] == [b2.hash]  # b1 is on the best chain
    store.disconnect_tip()
    assert [e.hash for e in store.entries_above(1)] == [b1.hash, b2.hash]  # off it again
    # A store written before the work index gets it built once at open.
    for key in list(store.db.iterator(prefix=b"W", include_value=False)):
        store.db.delete(key)
    store.db.delete(b"mwork-index")
    store.close()
    reopened = ChainStore(str(tmp_path / "db"))
    assert [e.hash for e in reopened.entries_above(1)] == [b1.hash, b2.hash]
    reopened.close()


def test_a_block_is_stored_from_the_bytes_it_arrived_as(store):
    from chain.block import Block
    from chain.encoding import DecodeError

    ((b1, s1, u1),) = grow(G.state, G.block.header, 1, seed=12)
    raw = b1.to_bytes()
    decoded = Block.from_bytes(raw)  # strict: only the canonical encoding decodes
    assert decoded.to_bytes() == raw
    assert raw[0] & 0xF0 == 0x90  # a fixarray header
    with pytest.raises(DecodeError):
        wide = b"\xdc" + (raw[0] & 0x0F).to_bytes(2, "big") + raw[1:]  # same array, wider header
        Block.from_bytes(wide)
    store.put_block(decoded, chain_work=2, encoded=raw)
    assert store.db.get(b"b" + b1.hash) == raw
    store.connect_block(decoded, u1, s1, body_stored=True)
    assert store.get_block(b1.hash) == b1 and store.tip() == b1.hash
