"""The task market: a paid task is worked on first, pays its bounty per unit, completes, keeps
its result."""

import pytest
from consensus_kit import FUNDED, FUNDED_KEY

from chain.mempool import TxRejected
from chain.tx import make_submit_task
from consensus.market import active_task
from useful_work.specs import RenderSpec, encode_spec


def test_submitted_task_is_worked_on_pays_out_and_completes(make_node):
    node = make_node()
    spec = encode_spec(RenderSpec(units=30, images_per_unit=2, image_size=16, max_objects=2))
    bounty = 3_000_000
    tx = make_submit_task(FUNDED_KEY, node.chain.chain_id, 0, 100, spec, bounty)
    node.mempool.add(tx, node.chain.state, node.chain.chain_id)
    node.mine(1)
    task = node.chain.state.tasks[tx.txid]
    assert active_task(node.chain.state).task_id == tx.txid
    assert node.chain.state.account(FUNDED).balance == 1_000_000_000 - bounty - 100
    paid_before = node.chain.state.account(node.address).balance
    mined = 0
    while node.chain.state.tasks[tx.txid].is_open:
        node.mine(1)
        mined += 1
        assert mined < 50
    task = node.chain.state.tasks[tx.txid]
    assert task.units_done >= 30 and task.paid == bounty and task.completed_height > 0
    node.mine(node.params.reward_maturity)  # the rewards of blocks 1 .. mined + 1 mature
    earned = node.chain.state.account(node.address).balance - paid_before
    assert (
        earned == (mined + 1) * node.params.block_reward + bounty + 100
    )  # block 1 also took the fee
    # the default task is active again, and the task's blocks are indexed for its result
    assert active_task(node.chain.state).task_id != tx.txid
    worked = node.store.blocks_for_task(tx.txid)
    assert len(worked) == mined
    assert (
        sum(node.chain.get_block(h).header.work[0].unit_count for _, h in worked) == task.units_done
    )


def test_a_spec_that_cannot_run_is_refused_at_submission(make_node):
    node = make_node()
    bad = b"\x81\xa4kind\xa5paint"  # {"kind": "paint"}
    tx = make_submit_task(FUNDED_KEY, node.chain.chain_id, 0, 100, bad, 1000)
    with pytest.raises(TxRejected, match="spec"):
        node.mempool.add(tx, node.chain.state, node.chain.chain_id)
