"""A miner that fabricates a fraction f of its units is caught at the rate 1 - (1 - f)^k."""

import math
from dataclasses import replace

import pytest
from consensus_kit import small_params

from chain.block import Block, Opening, WorkClaim, WorkProof, sign_header
from chain.keys import PrivateKey
from consensus.miner import Miner
from consensus.validation import InvalidBlock, Reason, check_work, required_openings
from useful_work.hashing import tagged_hash
from useful_work.trace import Leaf, state_hash, trace_root


def _detection_run(make_node, f: float, k: int, blocks: int):
    """Many cheaters (one key each) mine on the same tip; honest verification judges each block."""
    params = small_params(spot_checks=k, initial_units_per_block=12)
    node = make_node(params)
    node.clock.tick()
    state = node.chain.state
    rejected, expected = 0, 0.0
    for i in range(blocks):
        key = PrivateKey.from_bytes(
            tagged_hash("cheater", bytes([k]), str(f).encode(), i.to_bytes(4, "big"))
        )
        cheat = Miner(node.chain, key, clock=node.clock, fabricate=f)
        block = cheat.mine_block()
        n = block.header.work[0].unit_count
        expected += 1 - (1 - f) ** min(k, n - 1)
        try:
            check_work(params, block, state)
        except InvalidBlock as exc:
            assert exc.reason is Reason.BAD_SPOT_CHECK  # never the winner: it is always honest
            rejected += 1
    return rejected, expected


@pytest.mark.parametrize("f, k", [(0.2, 2), (0.1, 4), (0.3, 4)])
def test_rejection_rate_matches_one_minus_one_minus_f_to_the_k(make_node, f, k):
    blocks = 50
    rejected, expected = _detection_run(make_node, f, k, blocks)
    p = expected / blocks  # 1 - (1-f)^k, corrected for the few blocks with fewer than k+1 units
    sigma = math.sqrt(p * (1 - p) / blocks)
    assert abs(rejected / blocks - p) < 4 * sigma + 0.02, (rejected, blocks, p, 1 - (1 - f) ** k)


@pytest.mark.slow
@pytest.mark.parametrize("f, k", [(0.05, 8), (0.1, 4), (0.5, 2)])
def test_rejection_rate_large_sample(make_node, f, k):
    blocks = 400
    rejected, expected = _detection_run(make_node, f, k, blocks)
    p = expected / blocks
    assert abs(rejected / blocks - p) < 4 * math.sqrt(p * (1 - p) / blocks) + 0.01


def test_a_block_with_a_fabricated_winning_unit_is_always_rejected(make_node):
    params = small_params(initial_units_per_block=1)  # every ticket wins: the winner is unit 0
    node = make_node(params)
    node.clock.tick()
    honest = node.miner.mine_block()
    start = honest.proofs[0].openings[0].state
    seed_leaf = honest.proofs[0].leaves[0]
    # fabricate the only unit: copy the input state, invent a digest
    fake = Leaf(
        seed_leaf.input_hash, state_hash(start), tagged_hash("made up"), seed_leaf.commitment
    )
    claim = WorkClaim(honest.header.work[0].task_id, 1, trace_root([fake]))
    header = replace(honest.header, work=(claim,))
    proof = WorkProof((fake,), tuple(Opening(u, start) for u in required_openings(params, header)))
    forged = Block(sign_header(header, node.key), honest.txs, (proof,))
    with pytest.raises(InvalidBlock) as info:
        check_work(params, forged, node.chain.state)
    assert info.value.reason is Reason.BAD_WINNING_UNIT
