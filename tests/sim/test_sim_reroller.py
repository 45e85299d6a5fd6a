"""The re-roller (consensus.attacks.RerollMiner) in both work modes: after chained seeds its
accepted blocks per unit it runs are no better than honest mining, "chained" about 1 - k/(n-1) of
it, and a fabricated winner ("last") is never accepted."""

import json
import math

import numpy as np
import pytest
from sim_kit import REPO, real_data, run_metrics, small_data

from consensus.sim import config, theory
from consensus.sim.config import ExperimentError, parse_experiment
from consensus.sim.metrics import main_chain
from consensus.sim.reroll import STRATEGIES, RerollAttempts, rerolled_block


def _reroller(
    strategy: str, prefix: int, k: int, blocks: int, seed: int, share: float = 0.3
) -> dict:
    data = small_data(blocks=blocks, seed=seed, chain__spot_checks=k)
    data["adversary"] = {
        "kind": "reroller",
        "share": share,
        "reroll_strategy": strategy,
        "honest_prefix": prefix,
    }
    return data


def _found_per_unit(record) -> tuple[float, float]:
    """Blocks the re-roller found (accepted or refused) per unit it ran, and the honest miners'
    per unit."""
    log, pop = record.blocks, record.population
    miner = np.array(log.miner)
    adv = int((miner == pop.adversary).sum())
    honest = int(((miner >= 0) & (miner != pop.adversary)).sum())
    return adv / record.units_run[pop.adversary], honest / record.units_run[pop.honest].sum()


# --- configuration and mechanism -------------------------------------------------------------


def test_strategies_are_the_attacks_own():
    from consensus.attacks import REROLL_STRATEGIES

    assert set(config.REROLL_STRATEGIES) == set(STRATEGIES) == set(REROLL_STRATEGIES)


def test_reroller_settings_and_errors_name_the_key():
    exp = parse_experiment(_reroller("last", 4, 2, 100, 1))
    assert (exp.adversary.kind, exp.adversary.reroll_strategy, exp.adversary.honest_prefix) == (
        "reroller",
        "last",
        4,
    )
    assert exp.adversary_rate > 0
    defaults = small_data()
    defaults["adversary"] = {"kind": "reroller", "share": 0.2}
    exp = parse_experiment(defaults)
    assert (exp.adversary.reroll_strategy, exp.adversary.honest_prefix) == ("chained", 8)

    def error(data) -> str:
        with pytest.raises(ExperimentError) as info:
            parse_experiment(data)
        return str(info.value)

    bad = _reroller("sideways", 4, 2, 100, 1)
    assert error(bad).startswith("adversary.reroll_strategy: must be one of last, chained")
    bad = _reroller("chained", 4, 2, 100, 1, share=0.0)
    assert error(bad).startswith("adversary.share: a reroller mines")
    bad = _reroller("chained", 99, 2, 100, 1)
    bad["chain"]["max_units_per_block"] = 100
    assert error(bad).startswith("adversary.honest_prefix: 99 leaves no room")
    assert error(_reroller("chained", -1, 2, 100, 1)).startswith(
        "adversary.honest_prefix: -1 is below the minimum"
    )
    real = real_data(4, 1, adversary={"kind": "reroller", "share": 0.5, "honest_prefix": 2})
    assert parse_experiment(real).run.mode == "real"
    real["adversary"] = {"kind": "selfish", "share": 0.3}
    assert "real mode: none, fabricator, reroller" in error(real)


def test_refusals_come_from_the_real_challenge_rule():
    from consensus.tickets import challenged_units

    rng = np.random.default_rng(7)
    draws = 600
    caught = sum(
        rerolled_block(rng, "chained", 8, 4, challenged_units).caught for _ in range(draws)
    )
    p = 4 / 9  # the fabricated leaf is one of the 9 non-winning units, 4 are challenged
    assert abs(caught / draws - p) < 4 * math.sqrt(p * (1 - p) / draws)
    block = rerolled_block(rng, "chained", 8, 4, challenged_units)
    assert block.claimed == 10 and block.verify_units == 5  # the winner and the 4 challenged units
    # with n - 1 <= k every unit is checked, with k = 0 none, and a fabricated winner always fails
    assert all(rerolled_block(rng, "chained", 3, 4, challenged_units).caught for _ in range(20))
    assert not any(rerolled_block(rng, "chained", 3, 0, challenged_units).caught for _ in range(20))
    last = rerolled_block(rng, "last", 8, 4, challenged_units)
    assert last.caught and last.claimed == 9 and last.verify_units == 1


def test_attempts_count_prefix_roll_and_idle_time():
    rr = RerollAttempts("chained", prefix=3, rate=2.0)
    rr.begin(tip=0, start=0.0)
    rr.go_idle(5.0)  # 10 units: 3 in the prefix, 7 re-rolls
    assert (rr.prefix_units, rr.roll_units, rr.idle) == (3.0, 7.0, True)
    rr.begin(tip=1, start=7.0)  # idle for 2 s, then a new attempt
    rr.finish(8.0)  # 2 units, both in the prefix
    assert (rr.prefix_units, rr.roll_units, rr.idle_s, rr.units_run) == (5.0, 7.0, 2.0, 12.0)
    with pytest.raises(ValueError, match="reroll strategy"):
        RerollAttempts("sideways", 3, 1.0)


def test_reroll_closed_forms():
    assert theory.reroll_acceptance("chained", 4, 10) == pytest.approx(1 - 4 / 9)
    assert theory.reroll_acceptance("chained", 4, 5) == 0.0  # 4 non-winning units, all challenged
    assert theory.reroll_acceptance("chained", 0, 3) == 1.0
    assert theory.reroll_acceptance("last", 0, 10) == 0.0
    # Before version 2: a re-roll cost hashes, so the gain is about a*T while that is below U/(h+1)
    # ...
    a = 1 - 4 / 9
    per_unit, per_time = theory.reroll_gain_pre_v2(10.0, 1e6, 8, 4)
    assert per_unit == pytest.approx(1e6 / 9) and per_time == pytest.approx(a * 10, rel=1e-3)
    # ... and U/(h+1) (one block per prefix and winner) once hashing is fast enough
    assert theory.reroll_gain_pre_v2(1e9, 1000, 8, 4)[1] == pytest.approx(1000 / 9, rel=1e-3)
    assert theory.reroll_gain_pre_v2(1e9, 1000, 3, 4) == (0.0, 0.0)


def test_pre_v2_table_uses_the_closed_form():
    from consensus.sim.pre_v2 import table

    rows = table(1000, 4, [8, 16], unit_s=0.05, tries={8: 1e-5, 16: 2e-5})
    assert [r["tries_per_unit"] for r in rows] == pytest.approx([5000, 2500])
    assert rows[0]["gain_per_unit"] == pytest.approx(1000 / 9)
    assert rows[1]["gain_per_time"] == pytest.approx(
        theory.reroll_gain_pre_v2(2500, 1000, 16, 4)[1]
    )


# --- modelled mode ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix, k", [(8, 4), (4, 2)])
def test_chained_reroller_earns_about_one_minus_k_over_n_minus_1_of_honest_mining(prefix, k):
    m, record, _ = run_metrics(_reroller("chained", prefix, k, blocks=1500, seed=prefix))
    a = 1 - k / (prefix + 1)
    assert m["theory_reroll_acceptance"] == pytest.approx(a)
    n = m["rerolled_blocks"]
    assert n > 300
    assert abs(m["reroll_acceptance"] - a) < 4 * math.sqrt(a * (1 - a) / n) + 0.01, m
    # each ticket costs one unit: blocks found (accepted or refused) per unit as an honest miner's
    adv_rate, honest_rate = _found_per_unit(record)
    found = int((np.array(record.blocks.miner) == record.population.adversary).sum())
    assert abs(adv_rate / honest_rate - 1) < 4 / math.sqrt(found), (adv_rate, honest_rate)
    # accepted blocks per unit: no better than honest, about a of it (the prefix earns like honest
    # work)
    ratio, sigma = m["reroller_ratio"], m["reroller_ratio_stderr"]
    assert ratio < 1 - 4 * sigma  # strictly below honest mining: 1 - a is 0.4 or more here
    assert abs(ratio - m["theory_reroller_ratio"]) < 4 * sigma + 0.02, m
    # against what honest mining of the same units on the same tips wins on average
    assert (
        abs(m["reroller_ratio_expected"] - m["theory_reroller_ratio"])
        < 4 * m["reroller_ratio_expected_stderr"] + 0.01
    ), m
    assert m["reroller_prefix_share"] < 0.05 and abs(ratio - a) < 4 * sigma + 0.05
    # refused blocks never reach the best chain; accepted re-rolled ones hold the prefix, the leaf
    # and the winner
    log = record.blocks
    on_main = main_chain(log.parent, record.best_tip)[1:].tolist()
    assert not any(log.rejected[b] for b in on_main)
    assert all(log.units[b] == prefix + 2 for b in range(1, len(log)) if log.rerolled[b])


def test_last_reroller_never_gets_a_fabricated_winner_accepted():
    m, record, _ = run_metrics(_reroller("last", 16, 4, blocks=800, seed=3))
    assert m["rerolled_blocks"] > 500 and m["rerolled_refused"] == m["rerolled_blocks"]
    assert (
        m["reroll_acceptance"] == 0
        and m["reroller_ratio_rerolled"] == 0
        and m["reroller_blocks_rerolled"] == 0
    )
    # its tickets cost no unit: it runs only its prefixes, and what it earns is their honest wins
    assert record.extras["reroll_roll_units"] == 0 and m["reroller_hashes"] > 0
    assert record.extras["reroll_prefix_units"] == pytest.approx(m["reroller_units_run"], abs=1)
    assert m["reroller_units_run"] <= 16 * len(record.blocks)  # at most one prefix per tip
    assert m["reroller_ratio"] < 1 + 3 * m["reroller_ratio_stderr"]
    assert (
        m["reroller_ratio_expected"] < 1 + 3 * m["reroller_ratio_expected_stderr"]
        and m["theory_reroller_ratio"] == 1.0
    )
    assert m["relative_revenue"] < 0.05 < m["adversary_work_share"]


def test_same_seed_same_reroller_run():
    data = _reroller("chained", 8, 4, blocks=200, seed=9)
    first, again = run_metrics(data)[0], run_metrics(data)[0]
    assert first == again
    data["run"]["seed"] = 10
    assert run_metrics(data)[0] != first


def test_without_spot_checks_a_reroll_still_costs_a_unit():
    m, _, _ = run_metrics(_reroller("chained", 8, 0, blocks=1000, seed=5))
    assert m["reroll_acceptance"] == 1.0 and m["rerolled_refused"] == 0
    assert abs(m["reroller_ratio"] - 1) < 4 * m["reroller_ratio_stderr"], m


def test_a_prefix_the_spot_checks_cover_earns_only_its_honest_wins():
    m, _, _ = run_metrics(_reroller("chained", 2, 4, blocks=800, seed=6))
    assert m["rerolled_blocks"] > 100 and m["reroll_acceptance"] == 0
    assert m["reroller_ratio"] < 0.05


def test_cli_runs_the_reroller_experiment_and_draws_the_ratio(tmp_path, capsys):
    from p2p.cli.main import main

    out = tmp_path / "out"
    source = REPO / "experiments" / "reroller.toml"
    code = main(
        [
            "sim",
            "run",
            str(source),
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            "--set",
            "run.blocks=150",
            "--set",
            'sweep."adversary.honest_prefix"=[4, 16]',
        ]
    )
    assert code == 0
    doc = json.loads((out / "points.json").read_text())
    assert len(doc["points"]) == 4
    header = (out / "points.csv").read_text().splitlines()[0].split(",")
    assert {
        "reroller_ratio",
        "reroller_ratio_rerolled",
        "reroll_acceptance",
        "theory_reroll_acceptance",
        "honest_blocks_per_unit",
    } <= set(header)
    pngs = {p.name for p in out.glob("*.png")}
    assert {
        "reroller_ratio_vs_adversary_honest_prefix.png",
        "reroll_acceptance_vs_adversary_honest_prefix.png",
    } <= pngs
    assert "reroller_ratio" in capsys.readouterr().out


# --- real mode -------------------------------------------------------------------------------


def _real(strategy: str, seed: int, blocks: int = 6) -> dict:
    data = real_data(
        blocks=blocks,
        seed=seed,
        adversary={
            "kind": "reroller",
            "share": 0.5,
            "reroll_strategy": strategy,
            "honest_prefix": 2,
            "peers": 2,
        },
        honest_miners=2,
    )
    data["chain"]["initial_units_per_block"] = 8
    return data


def _real_checks(m, record) -> None:
    # the real validation refuses exactly the blocks the challenge rule says it re-executes the
    # fabricated leaf of
    assert m["rerolled_blocks"] >= 1
    assert m["rerolled_refused"] == m["rerolled_refused_predicted"]
    assert record.extras["tips_agree"]
    log = record.blocks
    on_main = main_chain(log.parent, record.best_tip)[1:].tolist()
    assert not any(log.rejected[b] for b in on_main)


def test_real_chained_reroller_pays_a_unit_per_ticket_and_is_refused_by_the_challenges():
    m, record, _ = run_metrics(_real("chained", seed=2))
    _real_checks(m, record)
    # RerollMiner's own counters: every re-rolled ticket it tried ran one unit
    assert record.extras["reroll_tickets"] == record.extras["reroll_roll_units_computed"] > 0
    assert m["reroller_ratio_rerolled"] <= 1 + 3 * m["reroller_ratio_rerolled_stderr"]
    assert m["reroller_ratio_expected"] <= 1 + 3 * max(
        m["reroller_ratio_expected_stderr"], 1 / m["reroller_expected_blocks"]
    )


def test_real_last_reroller_is_never_accepted():
    m, record, _ = run_metrics(_real("last", seed=2))
    _real_checks(m, record)
    assert m["rerolled_refused"] == m["rerolled_blocks"] and m["reroller_ratio_rerolled"] == 0
    assert record.extras["reroll_roll_units_computed"] == 0 < record.extras["reroll_tickets"]


# --- long runs -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["chained", "last"])
def test_no_prefix_makes_rerolling_pay(strategy):
    for prefix in (0, 1, 4, 8, 32, 128, 512):
        m, _, _ = run_metrics(_reroller(strategy, prefix, 4, blocks=3000, seed=40 + prefix))
        if m.get("reroller_ratio") is None:
            assert (
                m["reroller_units_run"] == 0 and m["reroller_blocks"] == 0
            )  # "last" with no prefix runs nothing
            continue
        sigma = m["reroller_ratio_stderr"]
        assert m["reroller_ratio"] < 1 + 3 * max(sigma, 0.02), (prefix, m)
        assert (
            abs(m["reroller_ratio"] - m["theory_reroller_ratio"]) < 4 * max(sigma, 0.01) + 0.02
        ), (prefix, m)


@pytest.mark.slow
def test_real_chained_reroller_over_more_blocks():
    m, record, _ = run_metrics(_real("chained", seed=1, blocks=20))
    _real_checks(m, record)
    assert m["rerolled_blocks"] >= 5
    assert m["reroller_ratio"] < 1 + 3 * m["reroller_ratio_stderr"]
    assert (
        abs(m["reroller_ratio_expected"] - m["theory_reroller_ratio"])
        < 4 * m["reroller_ratio_expected_stderr"] + 0.1
    )
    assert abs(m["reroll_acceptance"] - 2 / 3) < 4 * math.sqrt(2 / 9 / m["rerolled_blocks"]) + 0.05
