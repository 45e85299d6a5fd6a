"""Task cost limits: no one buys, for a small fee, units that stall every verifier.

The attack: a submit-task of the largest spec (about 10^11 operations a unit, tens of seconds
each on a CPU) at today's minimum of 1 per unit. It is refused at the mempool, by an honest
miner, and in a block that a miner with looser rules made.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from consensus_kit import FUNDED, FUNDED_KEY

from chain.mempool import TxRejected
from chain.tx import make_submit_task
from consensus.chainstate import Outcome
from consensus.market import minimum_bounty, unit_price
from consensus.params import ParamsError, load_params, params_from_dict
from consensus.validation import Reason
from useful_work.specs import TrainSpec, encode_spec, unit_cost

LARGEST = TrainSpec(
    units=1_000_000,
    objective="light-direction",
    batch_size=256,
    steps_per_unit=64,
    image_size=64,
    min_objects=6,
    min_lights=3,
)
UNDER = TrainSpec(units=10, batch_size=64, steps_per_unit=3)  # 579,174,912 operations a unit
OVER = TrainSpec(units=10, batch_size=64, steps_per_unit=4)  # 772,233,216


def submit(chain, spec, bounty, nonce=0):
    return make_submit_task(FUNDED_KEY, chain.chain_id, nonce, 100, encode_spec(spec), bounty)


def test_the_limit_and_the_price_at_devnet_defaults(params):
    assert unit_cost(LARGEST) == 187_270_266_880 > params.max_unit_cost == 600_000_000
    assert unit_cost(UNDER) <= params.max_unit_cost < unit_cost(OVER)
    assert unit_price(1, 100_000_000, 50_000_000) == 1  # cheaper than the reference: the base price
    assert unit_price(1, 100_000_000, 100_000_001) == 2  # rounded up
    assert unit_price(3, 100_000_000, unit_cost(UNDER)) == 18
    assert minimum_bounty(params, UNDER) == 10 * 6


def test_the_largest_spec_for_a_tiny_bounty_is_refused_at_the_mempool(make_node):
    node = make_node()
    with pytest.raises(
        TxRejected,
        match=r"unit cost 187,270,266,880 operations exceeds this network's limit of 600,000,000",
    ):
        node.chain.add_transaction(submit(node.chain, LARGEST, 1_000_000))
    with pytest.raises(TxRejected, match="unit cost 772,233,216 operations exceeds"):
        node.chain.add_transaction(submit(node.chain, OVER, 10**8))
    assert len(node.mempool) == 0


def test_a_bounty_under_the_cost_scaled_minimum_is_refused(make_node):
    node = make_node()
    with pytest.raises(
        TxRejected,
        match=r"bounty 59 is below the minimum of 6 per unit for 10 units \(60 in all; unit cost "
        r"579,174,912",
    ):
        node.chain.add_transaction(submit(node.chain, UNDER, 59))


def test_a_spec_just_under_the_limit_with_the_minimum_bounty_is_mined(make_node):
    node = make_node()
    tx = submit(node.chain, UNDER, minimum_bounty(node.params, UNDER))
    node.chain.add_transaction(tx)
    (block,) = node.mine(1)
    assert tx in block.txs and node.chain.state.tasks[tx.txid].bounty == 60


def test_a_block_carrying_an_over_limit_task_is_invalid(make_node, params):
    """A miner running looser market rules (same genesis) mines the task; honest nodes refuse its
    block."""
    honest = make_node()
    loose = make_node(replace(params, max_unit_cost=1 << 40, reference_unit_cost=1 << 40))
    assert loose.chain.genesis.block.hash == honest.chain.genesis.block.hash
    tx = submit(loose.chain, LARGEST, 1_000_000)
    loose.chain.add_transaction(tx)
    (block,) = loose.mine(1)
    assert tx in block.txs
    honest.clock.tick()
    result = honest.chain.process_block(block)
    assert result.outcome is Outcome.INVALID and result.reason is Reason.BAD_MARKET_RULE
    assert (
        "unit cost 187,270,266,880 operations exceeds this network's limit of 600,000,000"
        in result.detail
    )
    assert (
        honest.chain.tip.height == 0 and honest.chain.state.account(FUNDED).balance == 1_000_000_000
    )


def test_a_default_task_over_the_limit_is_refused_naming_the_numbers():
    with pytest.raises(
        ParamsError,
        match="default_task: unit cost 5,601,865,728 operations exceeds max_unit_cost 600,000,000",
    ):
        params_from_dict({"default_task": {"batch_size": 256, "steps_per_unit": 8}})
    raised = params_from_dict(
        {"max_unit_cost": 10**10, "default_task": {"batch_size": 256, "steps_per_unit": 8}}
    )
    assert unit_cost(raised.default_task) <= raised.max_unit_cost
    with pytest.raises(ParamsError, match="max_unit_cost: 0 out of range"):
        params_from_dict({"max_unit_cost": 0})


def test_presets_and_the_readme_example_load(tmp_path):
    for name in ("devnet", "testnet"):
        p = load_params(name)
        assert (
            2 * unit_cost(p.default_task)
            <= p.max_unit_cost
            <= 4 * unit_cost(p.default_task)
            < unit_cost(LARGEST)
        )
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = re.search(r"```toml\n(# mynet\.toml\n.*?)```", readme, re.S)
    assert example, "README.md has no mynet.toml example"
    path = tmp_path / "mynet.toml"
    path.write_text(example.group(1))
    p = load_params(path)
    assert unit_cost(p.default_task) <= p.max_unit_cost
