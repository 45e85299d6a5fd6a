"""Fork choice: the heavier branch wins, the state equals a replay, dropped transactions return."""

from consensus_kit import FUNDED_KEY

from chain.address import address_of
from chain.keys import PrivateKey
from chain.tx import make_transfer
from consensus.chainstate import Outcome


def _feed(node, blocks):
    return [node.chain.process_block(b) for b in blocks]


def test_heavier_branch_replaces_the_tip_and_state_equals_a_replay(make_node):
    a, b, replay = make_node(), make_node(), make_node()
    to = address_of(PrivateKey.from_bytes(b"\x09" * 32).public_key())
    tx = make_transfer(FUNDED_KEY, a.chain.chain_id, 0, 5, to, 777)
    a.mempool.add(tx, a.chain.state, a.chain.chain_id)
    a_blocks = a.mine(2)
    assert tx.txid in {t.txid for t in a_blocks[0].txs}
    b_blocks = b.mine(4)  # same clock schedule: equal targets, so more blocks = more work

    results = _feed(a, b_blocks)
    assert results[-1].outcome is Outcome.NEW_TIP
    assert a.chain.tip.hash == b.chain.tip.hash
    disconnected = [blk.hash for r in results for blk in r.disconnected]
    assert disconnected == [a_blocks[1].hash, a_blocks[0].hash]
    # the transfer of the dropped branch is back in the mempool, valid on the new tip
    assert tx.txid in a.mempool
    assert a.chain.state.account(to).balance == 0

    _feed(replay, b_blocks)
    assert a.chain.state.root == b.chain.state.root == replay.chain.state.root
    # and the blocks of the losing branch are kept as a side branch
    assert a.chain.entry(a_blocks[1].hash) is not None
    assert not a.chain.on_best_chain(a_blocks[1].hash)


def test_blocks_out_of_order_are_held_as_orphans_then_connected(make_node):
    a, b = make_node(), make_node()
    blocks = a.mine(4)
    results = _feed(b, list(reversed(blocks)))
    assert [r.outcome for r in results[:3]] == [Outcome.ORPHAN] * 3
    assert results[3].outcome is Outcome.NEW_TIP
    assert b.chain.tip.hash == blocks[-1].hash
    assert b.chain.state.root == a.chain.state.root


def test_an_invalid_block_marks_its_descendants_invalid(make_node):
    from dataclasses import replace

    from chain.block import Block, sign_header

    a, b = make_node(), make_node()
    blocks = a.mine(3)
    bad_header = sign_header(replace(blocks[0].header, state_root=bytes(32)), a.key)
    bad = Block(bad_header, blocks[0].txs, blocks[0].proofs)
    r = b.chain.process_block(bad)
    assert r.outcome is Outcome.INVALID and r.reason.value == "bad-state-root"
    assert [(h, why.split(":")[0]) for h, why in r.invalidated] == [(bad.hash, "bad-state-root")]
    # a child of the invalid block (re-parented by its miner) is invalid too
    child = Block(
        sign_header(replace(blocks[1].header, prev_hash=bad.hash), a.key),
        blocks[1].txs,
        blocks[1].proofs,
    )
    r2 = b.chain.process_block(child)
    assert r2.outcome is Outcome.INVALID
    # the honest chain is still accepted
    assert _feed(b, blocks)[-1].outcome is Outcome.NEW_TIP


def test_a_restart_reads_the_candidates_not_the_whole_block_index(make_node, tmp_path):
    from chain.storage import ChainStore
    from consensus.chainstate import ChainState, Limits

    a, b = make_node(), make_node()
    a_blocks = a.mine(2)
    b_blocks = b.mine(4)
    for block in b_blocks:
        assert a.chain.process_header(block.header).outcome is Outcome.HEADER
    for block in b_blocks[1:]:  # bodies stored, the branch not usable: its first body is missing
        assert a.chain.process_block(block).outcome is Outcome.SIDE
    assert a.chain.tip.hash == a_blocks[-1].hash
    path = a.store.path
    a.store.close()

    store = ChainStore(path)
    limits = Limits(index_cache_entries=4, warm_entries=1)
    chain = ChainState(store, a.params, clock=a.clock, limits=limits)
    try:
        # The heavier stored blocks come back as candidates from the work index; the rest of the
        # tree is read on demand, through a cache that stays within its bound.
        assert set(chain.candidates) == {blk.hash for blk in b_blocks[2:]}  # more work than a's
        assert len(chain.entries.cache) <= 4 and not chain.entries.memory
        assert chain.on_best_chain(a_blocks[0].hash) and chain.entry(a_blocks[0].hash) is not None
        result = chain.process_block(b_blocks[0])
        assert result.outcome is Outcome.NEW_TIP and chain.tip.hash == b_blocks[-1].hash
        assert [blk.hash for blk in result.disconnected] == [h.hash for h in a_blocks[::-1]]
        assert len(chain.entries.cache) <= 4
    finally:
        store.close()
        a.store = ChainStore(path)  # the fixture closes it
