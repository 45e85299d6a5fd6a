"""Writing results: points.csv and points.json (deterministic), timings.json (wall time and
memory)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from consensus.sim.runner import PointResult


def results_document(name: str, data: dict, results: list[PointResult]) -> dict:
    """Everything the run computed, in point order; no wall-clock figures, so reruns match byte
    for byte."""
    return {
        "experiment": name,
        "config": data,
        "sweep": list(results[0].values) if results else [],
        "points": [
            {"index": r.index, "values": r.values, "metrics": r.metrics, "details": r.details}
            for r in results
        ],
    }


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def csv_columns(results: list[PointResult]) -> list[str]:
    swept: list[str] = []
    metrics: list[str] = []
    for r in results:
        for k in r.values:
            if k not in swept:
                swept.append(k)
        for k in r.metrics:
            if k not in metrics:
                metrics.append(k)
    return ["index", *swept, *metrics]


def write_outputs(
    out: Path, name: str, data: dict, results: list[PointResult], total_wall_s: float, workers: int
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "points.json",
        "csv": out / "points.csv",
        "timings": out / "timings.json",
    }
    paths["json"].write_text(to_json(results_document(name, data, results)) + "\n")
    columns = csv_columns(results)
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in results:
            row = {"index": r.index, **r.values, **r.metrics}
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    timings = {
        "total_wall_s": round(total_wall_s, 3),
        "workers": workers,
        "points": [
            {"index": r.index, "wall_s": round(r.wall_s, 3), "peak_rss_mb": round(r.peak_rss_mb, 1)}
            for r in results
        ],
    }
    paths["timings"].write_text(json.dumps(timings, indent=1) + "\n")
    return paths


SUMMARY_METRICS = {
    "selfish": [
        "relative_revenue",
        "relative_revenue_stderr",
        "theory_relative_revenue",
        "honest_stale_rate",
    ],
    "fabricator": [
        "detection_rate",
        "detection_rate_stderr",
        "expected_detection",
        "theory_detection",
        "relative_revenue",
    ],
    "withholder": ["relative_revenue", "adversary_work_share", "stale_rate", "growth_vs_target"],
    "flooder": [
        "flood_verify_seconds",
        "verify_seconds_honest",
        "flood_max_wait_s",
        "honest_stale_rate",
    ],
    "reroller": [
        "reroller_ratio",
        "reroller_ratio_stderr",
        "reroller_ratio_expected",
        "theory_reroller_ratio",
        "reroller_ratio_rerolled",
        "reroll_acceptance",
        "theory_reroll_acceptance",
        "rerolled_blocks",
        "reroller_blocks",
        "reroller_units_run",
    ],
    "poisoner": [
        "auditors",
        "poison_reward",
        "poison_reward_stderr",
        "theory_poison_reward",
        "poison_survival",
        "theory_poison_survival",
        "poison_spot_pass",
        "theory_poison_spot_pass",
        "poison_survival_blocks",
        "audit_coverage",
        "audit_to_mining",
        "poison_main",
    ],
    "none": [
        "fork_rate",
        "theory_fork_rate",
        "stale_rate",
        "theory_stale_rate",
        "useful_fraction",
        "verify_over_block_work",
        "verify_over_own_mining",
        "share_included_per_block",
        "block_bytes_mean",
        "reward_cv_small",
        "reward_cv_small_no_shares",
        "agreement_s",
    ],
}


def summary_table(results: list[PointResult], kind: str) -> str:
    keys = list(results[0].values) if results else []
    metrics = [
        m
        for m in SUMMARY_METRICS.get(kind, SUMMARY_METRICS["none"])
        if any(m in r.metrics for r in results)
    ]
    metrics += ["height", "duration_s"]
    header = ["#", *keys, *metrics]
    rows = []
    for r in results:
        cells = (
            [str(r.index)]
            + [_fmt(r.values.get(k)) for k in keys]
            + [_fmt(r.metrics.get(m)) for m in metrics]
        )
        rows.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
