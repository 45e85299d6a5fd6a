"""Mining in-process with the real kernels at small sizes, restart, grinding, stolen traces."""

from dataclasses import replace

import pytest
from consensus_kit import FUNDED, FUNDED_KEY, small_params

from chain.address import address_of
from chain.block import Block, sign_header
from chain.keys import PrivateKey
from chain.storage import ChainStore
from chain.tx import make_transfer
from consensus.chainstate import ChainState, Outcome, WrongNetwork
from consensus.validation import Reason


def test_mined_blocks_connect_and_survive_a_restart(make_node, tmp_path):
    node = make_node()
    blocks = node.mine(6)
    assert node.chain.tip.height == 6
    assert node.chain.tip.hash == blocks[-1].hash
    root = node.chain.state.root
    # each block paid its miner the subsidy; the last `reward_maturity` (3) of them are not
    # spendable yet
    state = node.chain.state
    assert state.account(node.address).balance == 3 * node.params.block_reward
    assert [r.height for r in state.immature(node.address)] == [4, 5, 6]
    assert sum(r.amount for r in state.immature(node.address)) == 3 * node.params.block_reward
    path = node.store.path
    node.store.close()
    reopened = ChainState(ChainStore(path), node.params)
    assert reopened.tip.hash == blocks[-1].hash and reopened.state.root == root
    reopened.store.close()


def test_a_store_of_another_network_is_refused(make_node):
    node = make_node()
    path = node.store.path
    node.store.close()
    with pytest.raises(WrongNetwork):
        ChainState(ChainStore(path), small_params(network="othernet"))


def test_transfer_is_mined_and_paid(make_node):
    node = make_node()
    to = address_of(PrivateKey.from_bytes(b"\x07" * 32).public_key())
    tx = make_transfer(FUNDED_KEY, node.chain.chain_id, 0, 10, to, 12345)
    node.mempool.add(tx, node.chain.state, node.chain.chain_id)
    (block,) = node.mine(1)
    assert [t.txid for t in block.txs] == [tx.txid]
    assert node.chain.state.account(to).balance == 12345
    assert node.chain.state.account(FUNDED).nonce == 1
    assert len(node.mempool) == 0
    assert node.chain.state.account(node.address).balance == 0  # the reward matures 3 blocks later
    assert [r.amount for r in node.chain.state.immature(node.address)] == [
        node.params.block_reward + 10
    ]
    node.mine(3)
    assert node.chain.state.account(node.address).balance == node.params.block_reward + 10


def _resign(block: Block, key: PrivateKey, **changes) -> Block:
    header = sign_header(replace(block.header, **changes), key)
    return Block(header, block.txs, block.proofs)


def test_tampered_blocks_are_rejected_with_distinct_reasons(make_node):
    node, verifier = make_node(), make_node()
    node.clock.tick()
    verifier.clock.tick()
    block = node.miner.mine_block()
    proof = block.proofs[0]
    # a block whose winning leaf lies about the output
    last = proof.leaves[-1]
    bad_leaf = type(last)(last.input_hash, last.output_hash, bytes(32), last.commitment)
    leaves = (*proof.leaves[:-1], bad_leaf)
    from useful_work.trace import trace_root

    claim = replace(block.header.work[0], trace_root=trace_root(leaves))
    header = sign_header(replace(block.header, work=(claim,)), node.key)
    forged = Block(header, block.txs, (replace(proof, leaves=leaves),))
    result = verifier.chain.process_block(forged)
    # Its ticket changed: above the target, or other openings are needed, or the winner fails.
    assert result.outcome in (Outcome.INVALID, Outcome.BAD_MESSAGE)
    assert result.reason in (
        Reason.TICKET_ABOVE_TARGET,
        Reason.BODY_MISMATCH,
        Reason.BAD_WINNING_UNIT,
    )
    # a bad signature is the sender's fault, not the block's: nothing is marked
    unsigned = Block(replace(block.header, signature=bytes(64)), block.txs, block.proofs)
    result = verifier.chain.process_block(unsigned)
    assert (result.outcome, result.reason) == (Outcome.BAD_MESSAGE, Reason.BAD_SIGNATURE)
    assert verifier.chain.entry(block.hash) is None
    # wrong target
    wrong_target = _resign(block, node.key, target=block.header.target - 1)
    assert verifier.chain.process_block(wrong_target).reason is Reason.BAD_TARGET
    # the honest block is still accepted after all that
    assert verifier.chain.process_block(block).outcome is Outcome.NEW_TIP


def test_a_key_that_runs_out_of_units_starts_a_new_attempt_which_verifies(make_node):
    params = small_params(max_units_per_block=4)  # 12 units expected: most first attempts run dry
    node = make_node(params, key=PrivateKey.from_bytes(b"attempts".ljust(32, b"-")))
    blocks = node.mine(
        4
    )  # asserts every block becomes the new tip: re-executed with its attempt's seeds
    attempts = [b.header.work[0].attempt for b in blocks]
    assert max(attempts) > 0, attempts
    assert all(b.header.work[0].unit_count <= 4 for b in blocks)
    # the attempt is bound by re-execution: the same trace claimed under another attempt fails
    block = next(b for b in blocks if b.header.work[0].attempt > 0)
    claim = replace(block.header.work[0], attempt=block.header.work[0].attempt + 1)
    relabelled = Block(
        sign_header(replace(block.header, work=(claim,)), node.key), block.txs, block.proofs
    )
    other = make_node(params)
    for b in blocks[: blocks.index(block)]:
        other.chain.process_block(b)
    other.clock.now = node.clock.now
    # the ticket does not cover the attempt, so the same openings are needed: re-execution decides
    assert other.chain.process_block(relabelled).reason in (
        Reason.BAD_WINNING_UNIT,
        Reason.BAD_SPOT_CHECK,
    )
