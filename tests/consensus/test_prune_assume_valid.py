"""Pruning and assume-valid in the chain-state manager, with real mined blocks.

A pruned node reorganises within its horizon and refuses a heavier branch that forks below it
(its undo records are gone), with the tip left where it was. Assume-valid connects the named
block's ancestry without re-executing units, yet keeps the task state the next unit needs."""

from __future__ import annotations

import logging
from dataclasses import replace

from consensus.chainstate import ChainState, Outcome


def _feed(node, blocks):
    return [node.chain.process_block(b) for b in blocks]


def test_a_pruned_node_reorgs_within_its_horizon_and_refuses_below_it(make_node):
    a, short, deep = make_node(), make_node(), make_node()
    common = a.mine(2)
    _feed(short, common)
    _feed(deep, common[:1])
    a.chain.prune_keep = 4
    mined = a.mine(6)  # heights 3 .. 8; blocks up to height 4 pruned
    assert a.store.pruned_height() == 4
    # a heavier branch forking at height 6 (within the horizon) is followed
    assert a.chain.get_block(mined[0].hash).proofs[0].openings == ()  # pruned: not servable
    _feed(short, mined[:4])
    short.clock.now = a.clock.now  # the same schedule from here: equal targets
    branch = short.mine(4)  # heights 7 .. 10 on the fork at 6
    results = _feed(a, branch)
    assert results[-1].outcome is Outcome.NEW_TIP and a.chain.tip.hash == branch[-1].hash
    assert a.chain.state.root == short.chain.state.root
    # a heavier branch forking at height 1 (below the pruned height) is not followed
    tip = a.chain.tip.hash
    deep.clock.now = common[0].header.time_ms
    deep_branch = deep.mine(12)
    assert deep.chain.tip.chain_work > a.chain.tip.chain_work  # it would win on work alone
    results = _feed(a, deep_branch)
    assert a.chain.tip.hash == tip and all(r.outcome is not Outcome.NEW_TIP for r in results)
    assert a.chain.state.root == short.chain.state.root


def test_assume_valid_skips_reexecution_below_the_named_block_and_keeps_the_task_state(make_node):
    miner = make_node()
    blocks = miner.mine(6)
    syncing = make_node()
    syncing.chain = ChainState(
        syncing.store, syncing.params, clock=syncing.clock, assume_valid=blocks[3].hash
    )
    for block in blocks:
        assert syncing.chain.process_header(block.header).outcome is Outcome.HEADER
    assert all(r.outcome is Outcome.NEW_TIP for r in _feed(syncing, blocks))
    assert syncing.chain.assumed_connects == 4 and syncing.chain.tip.hash == blocks[-1].hash
    assert syncing.chain.state.root == miner.chain.state.root
    # the named block's winner was re-run: its output state is stored, as for the tip's
    for block in (blocks[3], blocks[5]):
        output = block.proofs[0].leaves[-1].output_hash
        assert syncing.store.get_blob(output) is not None
    assert syncing.store.get_blob(blocks[1].proofs[0].leaves[-1].output_hash) is None
    assert syncing.chain.task_state() == miner.chain.task_state()


def _syncing(make_node, params, assume_valid):
    node = make_node(params)
    node.chain = ChainState(node.store, params, clock=node.clock, assume_valid=assume_valid)
    return node


def test_assume_valid_needs_the_named_block_on_the_best_header_chain(make_node, caplog):
    """A peer serving a lighter branch that holds the assume-valid block (while heavier headers
    are known), or a branch that does not hold it, gets every block fully validated."""
    heavy, light = make_node(), make_node()
    a_blocks, b_blocks = heavy.mine(5), light.mine(3)
    named = b_blocks[1].hash  # on the lighter branch only

    control = _syncing(make_node, heavy.params, named)  # knows only the lighter branch
    for block in b_blocks:
        control.chain.process_header(block.header)
    _feed(control, b_blocks)
    assert control.chain.assumed_connects == 2  # b_blocks[0] and the named block

    syncing = _syncing(make_node, heavy.params, named)
    for block in a_blocks + b_blocks:  # the heavier headers are known too
        syncing.chain.process_header(block.header)
    with caplog.at_level(logging.INFO, logger="pouw.chainstate"):
        assert all(r.outcome is Outcome.NEW_TIP for r in _feed(syncing, b_blocks))
        assert syncing.chain.assumed_connects == 0
        assert "not on the best header chain" in caplog.text
        assert "fully validated" in caplog.text
        # the heavier branch, which does not hold the named block, is fully validated too
        assert _feed(syncing, a_blocks)[-1].outcome is Outcome.NEW_TIP
    assert syncing.chain.assumed_connects == 0 and syncing.chain.tip.hash == a_blocks[-1].hash


def test_assume_valid_needs_the_stated_minimum_chain_work(make_node, caplog):
    miner = make_node()
    blocks = miner.mine(4)
    work = miner.chain.tip.chain_work
    named = blocks[2].hash
    short = _syncing(make_node, replace(miner.params, assume_valid_min_work=work + 1), named)
    enough = _syncing(make_node, replace(miner.params, assume_valid_min_work=work), named)
    for node in (short, enough):
        for block in blocks:
            node.chain.process_header(block.header)
    with caplog.at_level(logging.INFO, logger="pouw.chainstate"):
        assert all(r.outcome is Outcome.NEW_TIP for r in _feed(short, blocks))
    assert short.chain.assumed_connects == 0 and "under the minimum" in caplog.text
    assert all(r.outcome is Outcome.NEW_TIP for r in _feed(enough, blocks))
    assert enough.chain.assumed_connects == 3
    assert short.chain.state.root == enough.chain.state.root == miner.chain.state.root
