import os

import pytest

from consensus.params import ConsensusParams, ParamsError, load_params
from consensus.targets import block_work, next_target
from consensus.tickets import challenged_units, ticket


def test_presets_load():
    dev, test = load_params("devnet"), load_params("testnet")
    assert dev.block_interval_ms < test.block_interval_ms
    assert dev.network == "devnet" and test.network == "testnet"


def test_sharenet_is_devnet_with_shares_and_longer_blocks():
    """The sharenet preset starts from devnet (`base = "devnet"` in a preset file) and changes
    what `pouw bench shares` needs: 30 s blocks, 12 shares a block, maturity 5, a small task."""
    dev, share = load_params("devnet"), load_params("sharenet")
    assert share.network == "sharenet" and share.block_interval_ms == 30_000
    assert (share.shares_per_block, share.spot_checks, share.reward_maturity) == (12, 3, 5)
    assert share.max_share_claims == 64 and share.initial_units_per_block == 3600
    assert share.default_task.kind == "train" and share.default_task.units == 0
    assert (share.default_task.batch_size, share.default_task.steps_per_unit) == (8, 1)
    # Inherited from devnet: the task market and the reward.
    assert share.max_unit_cost == dev.max_unit_cost and share.block_reward == dev.block_reward
    assert share.default_task.lr_micro == 25_000 and dev.default_task.lr_micro == 50_000


@pytest.mark.parametrize(
    "text, key",
    [
        ("spot_checks = -1", "spot_checks"),
        ("no_such_key = 1", "no_such_key"),
        ('block_interval_ms = "fast"', "block_interval_ms"),
        ("[default_task]\nlr_micro = 0", "lr_micro"),
        ("[default_task]\nwidth = 3", "default_task.width"),
        ('[[allocations]]\naddress = "pwnotanaddress"\namount = 5', "allocations"),
        ('base = "mainnet"', "base"),
    ],
)
def test_bad_parameter_files_name_the_key(tmp_path, text, key):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=key):
        params = load_params(path)
        from consensus.genesis import build_genesis

        build_genesis(params)  # allocations are parsed when genesis is built


def test_toml_overlays_a_preset(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        'base = "testnet"\nspot_checks = 2\n[default_task]\nkind = "render"\nimages_per_unit = 4\n'
    )
    p = load_params(path)
    assert p.spot_checks == 2 and p.block_interval_ms == load_params("testnet").block_interval_ms
    assert p.default_task.kind == "render" and p.default_task.images_per_unit == 4


def test_retarget_follows_solve_times():
    p = ConsensusParams()
    t0 = p.initial_target
    assert next_target(p, 0, t0, 0, 0) == t0  # block 1 starts at the initial target
    assert (
        next_target(p, 1, t0, 10**12, 0) == t0
    )  # and so does block 2: the genesis time is no solve time
    on_time = next_target(p, 5, t0, 10_000 + p.block_interval_ms, 10_000)
    assert on_time == t0
    slow = next_target(p, 5, t0, 10_000 + p.block_interval_ms + p.retarget_half_life_ms, 10_000)
    assert abs(slow - 2 * t0) <= t0 // 1000  # one half-life late: twice as easy
    fast = next_target(p, 5, t0, 10_000 + p.block_interval_ms - p.retarget_half_life_ms, 10_000)
    assert abs(fast - t0 // 2) <= t0 // 1000
    assert next_target(p, 5, p.max_target, 10**12, 0) == p.max_target  # clamped


def test_retarget_telescopes():
    """n blocks at any solve times give the target an absolute rule would give (to rounding)."""
    p = ConsensusParams()
    target, t = p.initial_target, 0
    import random

    rng = random.Random(5)
    for h in range(2, 201):
        t_next = t + rng.randint(0, 2 * p.block_interval_ms)
        target = next_target(p, h, target, t_next, t)
        t = t_next
    elapsed = t - 0
    ideal = p.initial_target * 2 ** (
        (elapsed - 199 * p.block_interval_ms) / p.retarget_half_life_ms
    )
    assert abs(target / ideal - 1) < 199 * 1.5e-4  # the cubic 2^x errs by under 0.013% a block


def test_chain_work_grows_as_target_shrinks():
    assert block_work(2**255) < block_work(2**200) < block_work(2**100)
    assert block_work((1 << 256) - 1) == 1


def test_challenged_units_are_distinct_in_range_and_seeded_by_the_ticket():
    for n in (1, 2, 5, 6, 50, 1000):
        t = ticket(os.urandom(32), os.urandom(20), os.urandom(32))
        picked = challenged_units(t, n, 4)
        assert picked == challenged_units(t, n, 4)
        assert len(picked) == min(4, n - 1) and len(set(picked)) == len(picked)
        assert all(0 <= u < n - 1 for u in picked)


def test_share_spot_checks_load_from_toml_and_a_bad_value_names_the_key(tmp_path):
    assert ConsensusParams().share_spot_checks == 1 == load_params("devnet").share_spot_checks
    path = tmp_path / "p.toml"
    path.write_text('base = "devnet"\nshares_per_block = 12\nshare_spot_checks = 3\n')
    p = load_params(path)
    assert p.share_spot_checks == 3 and p.spot_checks == load_params("devnet").spot_checks
    for text, error in (
        ("share_spot_checks = 65", r"^share_spot_checks: 65 out of range 0 \.\. 64$"),
        ("share_spot_checks = -1", r"^share_spot_checks: -1 out of range 0 \.\. 64$"),
        ('share_spot_checks = "one"', r"^share_spot_checks: must be an integer, got str$"),
    ):
        path.write_text(text)
        with pytest.raises(ParamsError, match=error):
            load_params(path)
