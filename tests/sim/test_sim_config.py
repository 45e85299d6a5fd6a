"""Experiment files: chain parameters through params_from_dict, errors that name the key, sweeps."""

import pytest
from sim_kit import REPO, small_data

from consensus.sim.config import (
    ExperimentError,
    expand,
    get_path,
    load_experiment_data,
    parse_experiment,
    parse_override,
    set_path,
)


def _error(data) -> str:
    with pytest.raises(ExperimentError) as info:
        parse_experiment(data)
    return str(info.value)


def test_any_consensus_parameter_passes_through_and_bad_ones_name_the_key():
    exp = parse_experiment(small_data(chain__spot_checks=7, chain__block_interval_ms=2000))
    assert exp.chain.spot_checks == 7 and exp.chain.block_interval_ms == 2000
    assert _error(small_data(chain__bogus=1)).startswith("chain.bogus: unknown consensus parameter")
    assert _error(small_data(chain__spot_checks=99)).startswith(
        "chain.spot_checks: 99 out of range"
    )
    assert _error(small_data(chain__default_task={"kind": "render", "colour": 1})).startswith(
        "chain.default_task.colour"
    )


def test_chain_may_start_from_a_preset():
    exp = parse_experiment(small_data(chain__base="testnet"))
    assert exp.chain.network == "testnet"


def test_initial_difficulty_follows_the_miners_unless_set():
    exp = parse_experiment(small_data())
    assert (
        exp.auto_initial_units and exp.chain.initial_units_per_block == 20 * 10 * 5
    )  # units/s * seconds
    fixed = parse_experiment(small_data(chain__initial_units_per_block=77))
    assert not fixed.auto_initial_units and fixed.chain.initial_units_per_block == 77


@pytest.mark.parametrize(
    "change, message",
    [
        ({"network__topology": "star"}, "network.topology: must be one of"),
        ({"network__latency_ms": [5, 1]}, "network.latency_ms: range"),
        ({"network__nodes": 5}, "network.nodes: 5 is fewer than the 20 miners"),
        (
            {"network__degree": 5, "network__nodes": 31},
            "network.degree: nodes * degree must be even",
        ),
        ({"adversary__kind": "ddos"}, "adversary.kind: must be one of"),
        ({"adversary__kind": "selfish", "adversary__shares": 0.3}, "adversary.shares: unknown key"),
        ({"adversary__kind": "selfish"}, "adversary.share: a selfish mines"),
        (
            {"adversary__kind": "fabricator", "adversary__share": 0.1, "adversary__fabricate": 1.0},
            "adversary.fabricate: must be in (0, 1)",
        ),
        ({"run__mode": "fast"}, "run.mode: must be one of"),
        ({"run__blocks": 0}, "run.blocks: 0 is below the minimum 1"),
        ({"work__unit_seconds": "quick"}, "work.unit_seconds: must be a number"),
    ],
)
def test_bad_values_name_their_key(change, message):
    assert message in _error(small_data(**change))


def test_unknown_sections_and_events():
    data = small_data()
    data["netwrok"] = {}
    assert _error(data).startswith("netwrok: unknown section")
    data = small_data()
    data["events"] = [{"kind": "partition", "at_s": 10, "heal_s": 5}]
    assert _error(data).startswith("events.0.heal_s: 5.0 must be after at_s")


def test_real_mode_takes_only_the_fabricator():
    data = small_data(
        run__mode="real", network__nodes=20, adversary__kind="selfish", adversary__share=0.2
    )
    assert "modelled" in _error(data)


def test_sweep_product_zip_and_per_point_seeds():
    data = small_data()
    data["sweep"] = {"adversary.share": [0.1, 0.2, 0.3], "adversary.gamma": [0.0, 0.5]}
    data["adversary"] = {"kind": "selfish", "share": 0.1}
    points = expand(data)
    assert len(points) == 6
    assert [p.experiment.adversary.share for p in points[:2]] == [0.1, 0.1]
    assert {p.experiment.run.seed for p in points} == {1}
    data["run"]["vary_seed"] = True
    assert [p.experiment.run.seed for p in expand(data)] == [1, 2, 3, 4, 5, 6]
    data["sweep"] = {"zip": True, "adversary.share": [0.1, 0.2], "adversary.gamma": [0.0, 0.5]}
    points = expand(data)
    assert [(p.experiment.adversary.share, p.experiment.adversary.gamma) for p in points] == [
        (0.1, 0.0),
        (0.2, 0.5),
    ]


def test_sweep_errors_name_the_point():
    data = small_data()
    data["sweep"] = {"chain.spot_checks": [2, 100]}
    with pytest.raises(ExperimentError) as info:
        expand(data)
    assert "chain.spot_checks: 100 out of range" in str(info.value) and "sweep point 1" in str(
        info.value
    )
    data["sweep"] = {"spot_checks": [2]}
    with pytest.raises(ExperimentError, match="must be a dotted key"):
        expand(data)


def test_dotted_paths_and_overrides():
    data = small_data()
    set_path(data, "miners.0.unit_rate", 3.5)
    set_path(data, "chain.default_task.image_size", 16)
    assert get_path(data, "miners.0.unit_rate") == 3.5
    assert data["chain"]["default_task"] == {"image_size": 16}
    with pytest.raises(ExperimentError, match="miners.3"):
        set_path(data, "miners.3.count", 1)
    assert parse_override("run.blocks=500") == ("run.blocks", 500)
    assert parse_override("network.topology=ring") == ("network.topology", "ring")
    assert parse_override("network.latency_ms=[1, 2]") == ("network.latency_ms", [1, 2])


def test_every_shipped_experiment_parses():
    files = sorted((REPO / "experiments").glob("*.toml"))
    kinds = set()
    for path in files:
        points = expand(load_experiment_data(path), path.stem)
        kinds.add(points[0].experiment.adversary.kind)
    assert {"selfish", "fabricator", "withholder", "flooder", "none"} <= kinds
