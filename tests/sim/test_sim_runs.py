"""Whole experiments: determinism, the worker pool, output files, the `pouw sim` command line."""

import json

from sim_kit import REPO, small_data

from consensus.sim.output import results_document, to_json
from consensus.sim.runner import run_experiment


def _sweep_data() -> dict:
    data = small_data(blocks=120, seed=4)
    data["adversary"] = {"kind": "withholder", "share": 0.2, "withhold": 0.5}
    data["events"] = [{"kind": "partition", "at_s": 200, "heal_s": 300}]
    data["sweep"] = {"adversary.withhold": [0.0, 0.5, 1.0]}
    return data


def test_same_seed_same_json_and_another_seed_differs():
    data = _sweep_data()
    first = to_json(
        results_document("t", data, run_experiment(data, "t", workers=1, progress=False))
    )
    again = to_json(
        results_document("t", data, run_experiment(data, "t", workers=1, progress=False))
    )
    assert first == again
    data["run"]["seed"] = 5
    other = to_json(
        results_document("t", data, run_experiment(data, "t", workers=1, progress=False))
    )
    assert other != first


def test_worker_processes_give_the_serial_results():
    data = _sweep_data()
    serial = run_experiment(data, "t", workers=1, progress=False)
    pooled = run_experiment(data, "t", workers=2, progress=False)
    assert [r.metrics for r in serial] == [r.metrics for r in pooled]
    assert [r.index for r in pooled] == [0, 1, 2]


def _cli(argv: list[str]) -> int:
    from p2p.cli.main import main

    return main(argv)


def test_cli_runs_an_experiment_file_and_writes_csv_json_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    source = REPO / "experiments" / "fabricator.toml"
    code = _cli(
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
            'sweep."chain.spot_checks"=[4]',
            "--set",
            'sweep."adversary.fabricate"=[0.2, 0.5]',
        ]
    )
    assert code == 0
    doc = json.loads((out / "points.json").read_text())
    assert len(doc["points"]) == 2 and doc["points"][0]["values"] == {
        "adversary.fabricate": 0.2,
        "chain.spot_checks": 4,
    }
    header = (out / "points.csv").read_text().splitlines()[0].split(",")
    assert {"adversary.fabricate", "detection_rate", "stale_rate", "useful_fraction"} <= set(header)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "detection_rate_vs_adversary_fabricate.png" in pngs and "overview_0.png" in pngs
    assert "detection_rate" in capsys.readouterr().out


def test_cli_json_output_and_errors(tmp_path, capsys):
    source = REPO / "experiments" / "stale_rate.toml"
    assert (
        _cli(
            [
                "sim",
                "run",
                str(source),
                "--out",
                str(tmp_path),
                "--json",
                "--no-plots",
                "--no-progress",
                "--set",
                "run.blocks=60",
                "--set",
                'sweep."network.latency_ms"=[500]',
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["points"][0]["metrics"]["height"] == 60
    assert _cli(["sim", "run", str(source), "--set", "chain.spot_check=3", "--no-progress"]) == 2
    assert "chain.spot_check: unknown consensus parameter" in capsys.readouterr().err
    assert _cli(["sim", "check", str(tmp_path / "missing.toml")]) == 2
    assert "no such experiment file" in capsys.readouterr().err
    assert _cli(["sim", "check", str(REPO / "experiments" / "selfish.toml")]) == 0
    assert "16 point(s)" in capsys.readouterr().out
